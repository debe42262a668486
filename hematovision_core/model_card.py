"""The facts a model card shows, from a model folder's record (`model_io.ModelFolder`) and its
history.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hematovision_core.model_io import HISTORY_FILE, ModelFolder


def read_history(folder: str | Path) -> dict | None:
    """history.json of a model folder, or None when it is absent or unreadable."""
    path = Path(folder) / HISTORY_FILE
    try:
        history = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return history if isinstance(history, dict) and history.get("epochs") else None


def split_sizes(model: ModelFolder) -> dict[str, int]:
    """Images per split (train, val, test) from model.json's data counts."""
    return {split: int(sum(per_class.values())) for split, per_class in model.split_counts.items()}


def headline_metrics(model: ModelFolder) -> pd.DataFrame:
    """One row per evaluated split: images, accuracy, macro-F1, balanced accuracy, top-2, ECE."""
    rows = []
    # Short names: a long one was cut in a narrow table; the caption under it says the rest.
    for split, label in (("validation", "validation"), ("test", "internal test"),
                         ("cross_validation", "cross-validation"),
                         ("augmented_test", "test, rotated copies")):
        figures = model.metrics.get(split)
        if figures:
            rows.append({"split": label, "images": figures.get("n"),
                         "accuracy": figures.get("accuracy"), "macro-F1": figures.get("macro_f1"),
                         "balanced accuracy": figures.get("balanced_accuracy"),
                         "top-2 accuracy": figures.get("top2_accuracy"),
                         "calibration error (ECE)": figures.get("ece")})
    return pd.DataFrame(rows)


MISSING = "–"  # what a table shows for a figure not recorded (Streamlit would print "None")


def as_text(table: pd.DataFrame, percent: tuple[str, ...] = (),
            decimals: dict[str, int] | None = None) -> pd.DataFrame:
    """The table as readable strings: `percent` columns as "98.2%", `decimals` columns with that
    many digits, other numbers as integers with thousands separators, and a dash for a missing
    figure. Columns with no figure at all are left out."""
    decimals = decimals or {}
    shown = table.dropna(axis="columns", how="all").copy()

    def text(value, column: str) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return MISSING
        if isinstance(value, str):
            return value
        if column in percent:
            return f"{value:.1%}"
        if column in decimals:
            return f"{value:.{decimals[column]}f}"
        return f"{int(value):,}"

    for column in shown.columns:
        shown[column] = [text(value, column) for value in shown[column]]
    return shown


def per_class_table(model: ModelFolder, split: str = "test") -> pd.DataFrame:
    """Precision, recall, F1 and support per class on one split, in model order."""
    figures = model.metrics.get(split) or {}
    per_class = figures.get("per_class") or {}
    train_counts = model.split_counts.get("train") or {}
    rows = []
    for cls, name in zip(model.classes, model.display_names):
        scores = per_class.get(cls)
        if scores is None:
            continue
        rows.append({"class": name, "precision": scores.get("precision"),
                     "recall": scores.get("recall"), "F1": scores.get("f1"),
                     f"{split} images": scores.get("support"),
                     "training images": train_counts.get(cls)})
    return pd.DataFrame(rows)


def confusion(model: ModelFolder, split: str = "test") -> list[list[int]] | None:
    """The confusion matrix (rows true, columns predicted) of a split, if recorded."""
    return (model.metrics.get(split) or {}).get("confusion_matrix")


def version_line(model: ModelFolder) -> str:
    """Model name, short checksum and library versions, for reports and captions."""
    libraries = ", ".join(f"{name} {version}" for name, version
                          in model.library_versions.items())
    line = f"{model.name} (sha256 {model.model_sha256[:12]})"
    return f"{line}; {libraries}" if libraries else line
