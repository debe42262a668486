"""Settings read from `HEMATOVISION_*` environment variables, in one place.

Tests build a `Settings` from a plain dict instead of touching the process environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    data_dir: Path  # dataset root: <root>/<class>/* or <root>/<split>/<class>/*
    models_dir: Path  # one sub-folder per trained model (model.keras + model.json)
    var_dir: Path  # git-ignored runtime state: caches, the quiz database
    database: str  # quiz answers: a SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...) or a SQLite file path
    instructor_password: str | None  # None turns the instructor view off

    @property
    def cache_dir(self) -> Path:
        return self.var_dir / "cache"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables (or any mapping, for tests)."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("HEMATOVISION_VAR", REPO_ROOT / "var"))
        return cls(
            data_dir=Path(env.get("HEMATOVISION_DATA", REPO_ROOT / "data")),
            models_dir=Path(env.get("HEMATOVISION_MODELS", REPO_ROOT / "models")),
            var_dir=var_dir,
            database=str(env.get("HEMATOVISION_DB") or f"sqlite:///{var_dir / 'quiz.sqlite3'}"),
            instructor_password=env.get("HEMATOVISION_INSTRUCTOR_PASSWORD") or None,
        )

