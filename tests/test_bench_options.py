"""`python -m benchmarks.engine --model M --app --explorer` times model M on every part (the
app and explorer timings used to pick pbc-8class whatever `--model` said). No timing runs here."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchmarks.app
import benchmarks.engine
import benchmarks.explorer

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_app_and_explorer_timings_use_the_model_asked_for(monkeypatch):
    asked = {}
    monkeypatch.setattr(benchmarks.engine, "run_core_benchmarks",
                        lambda model, data, repeats: asked.setdefault("core", model.name) and {})
    monkeypatch.setattr(benchmarks.app, "run_app_benchmarks",
                        lambda models_dir, data_dir=None, model_name=None:
                        asked.setdefault("app", model_name) and {})
    monkeypatch.setattr(benchmarks.explorer, "run_explorer_benchmarks",
                        lambda models_dir, data_dir, limit=None, model_name=None:
                        asked.setdefault("explorer", model_name) and {})
    benchmarks.engine.main(["--model", str(MODELS / "blood-cells-4class"), "--app", "--explorer"])
    assert asked == {"core": "blood-cells-4class", "app": "blood-cells-4class",
                     "explorer": "blood-cells-4class"}


def test_the_named_model_folder_is_the_one_timed():
    assert benchmarks.app._model_folder(MODELS, "blood-cells-4class").name == "blood-cells-4class"
    assert benchmarks.explorer.pick_model(MODELS, "blood-cells-4class").name == \
        "blood-cells-4class"
    assert benchmarks.explorer.pick_model(MODELS).name == "pbc-8class"  # the default is kept
    with pytest.raises(ValueError, match="no-such-model"):
        benchmarks.explorer.pick_model(MODELS, "no-such-model")
