"""The dataset explorer's logic: which images a split holds, and which of them a filter shows.

Splits come from the model's split manifest when the data folder is the one the model was trained
on; any other folder is explored as a whole ("all"). Everything here is plain Python, NumPy and
pandas, fast enough to run on every page run.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from hematovision_core.data import (IMAGE_EXTENSIONS, class_folders, normalize_class,
                                    normalize_split)
from hematovision_core.split_predictions import SplitPredictions, SplitSource

ALL = "all"  # the split name for every image of a folder
SPLIT_ORDER = ("test", "val", "train", ALL)  # the held-out split first: where errors matter
OUTCOMES = ("all", "correct", "wrong")
DOMAINS = ("all", "in", "out")  # every image, those like the training images, those unlike
PAGE_SIZE = 24


@dataclass(frozen=True)
class Filters:
    true_label: str | None = None  # None: any class
    predicted_label: str | None = None
    outcome: str = "all"  # one of OUTCOMES
    confidence: tuple[float, float] = (0.0, 1.0)  # inclusive range of the top probability
    domain: str = "all"  # one of DOMAINS: the out-of-domain guard's verdict

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        low, high = self.confidence
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"confidence must be a range inside [0, 1], got {self.confidence}")


@dataclass(frozen=True)
class Page:
    items: tuple  # the items on this page
    number: int  # 1-based, clamped into range
    count: int  # number of pages (at least 1)
    total: int  # number of items over all pages


# ----------------------------------------------------------------------------- data folders


def list_datasets(data_dir: Path) -> list[str]:
    """Dataset folders under `data_dir` as paths relative to it ("pbc", "blood-cells/TRAIN").

    A dataset is a folder of class folders; a folder of split folders (TRAIN, TEST, ...) offers
    each split folder as a dataset. "." means `data_dir` itself is a folder of class folders.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    if class_folders(data_dir) and not any(
        normalize_split(p.name) for p in data_dir.iterdir() if p.is_dir()
    ):
        return ["."]
    found = []
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        if class_folders(folder):
            found.append(folder.name)
            continue
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if class_folders(sub):
                found.append(f"{folder.name}/{sub.name}")
    return found


def is_models_own(classifier, dataset: str) -> bool:
    """True when `dataset` is the folder the model was trained on and its manifest is at hand."""
    model = classifier.model_folder
    return model.dataset == dataset and model.manifest is not None


def split_options(classifier, dataset: str) -> list[str]:
    """Splits to offer: the manifest's (test first) for the model's own data, then "all"."""
    if not is_models_own(classifier, dataset):
        return [ALL]
    present = {row[2] for row in _read_manifest_rows(classifier.model_folder.manifest)}
    return [split for split in SPLIT_ORDER if split in present] + [ALL]


def _read_manifest_rows(path: Path) -> tuple[tuple[str, str, str], ...]:
    """(relative path, label, split) rows of a split manifest."""
    stat = os.stat(path)
    return _manifest_rows(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _manifest_rows(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str, str], ...]:
    # Keyed by modification time and size too: every page run asks, the file rarely changes.
    with open(path, newline="") as f:
        return tuple((row["path"], normalize_class(row["label"]), row["split"])
                     for row in csv.DictReader(f))


def _scan(folder: str, prefix: str, label: str, paths: list, labels: list, lines: list) -> None:
    """Add the image files under `folder` (recursively, sorted) with their size and mtime."""
    with os.scandir(folder) as found:
        entries = sorted(found, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            _scan(entry.path, f"{prefix}{entry.name}/", label, paths, labels, lines)
        elif entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
            stat = entry.stat()
            relative = prefix + entry.name
            paths.append(relative)
            labels.append(label)
            lines.append(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}")


def list_images(root: Path) -> tuple[list[str], list[str], str]:
    """Every image under `root/<class>/` (recursively): (relative paths, labels, fingerprint).

    The fingerprint covers names, sizes and modification times, so any change in the folder
    gives new predictions rather than stale ones. About 0.1 s for the 15k PBC images.
    """
    paths: list[str] = []
    labels: list[str] = []
    lines: list[str] = []
    for class_dir in sorted(p for p in Path(root).iterdir()
                            if p.is_dir() and not p.name.startswith(".")):
        _scan(str(class_dir), f"{class_dir.name}/", normalize_class(class_dir.name), paths, labels,
              lines)
    return paths, labels, hashlib.sha256("\n".join(lines).encode()).hexdigest()


def split_source(data_dir: Path, classifier, dataset: str, split: str) -> SplitSource:
    """The images of one split: from the model's manifest, or the whole folder for "all".

    Raises:
        FileNotFoundError: the dataset folder does not exist.
        ValueError: the split is not offered for this model and dataset.
    """
    root = (Path(data_dir) / dataset).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"No dataset folder at {root}")
    if split == ALL:
        paths, labels, fingerprint = list_images(root)
        return SplitSource(root, ALL, tuple(paths), tuple(labels), fingerprint)
    if split not in split_options(classifier, dataset):
        raise ValueError(f"Split {split!r} is not offered for {dataset}")
    manifest = classifier.model_folder.manifest
    rows = [row for row in _read_manifest_rows(manifest) if row[2] == split]
    fingerprint = hashlib.sha256(manifest.read_bytes()).hexdigest()
    return SplitSource(root, split, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                       fingerprint)


def class_distribution(classifier, data_dir: Path, dataset: str,
                       source: SplitSource) -> pd.DataFrame:
    """Images per class (rows) and split (columns): every manifest split for the model's own
    data, else the one split shown."""
    if source.split != ALL and is_models_own(classifier, dataset):
        rows = _read_manifest_rows(classifier.model_folder.manifest)
        counts = Counter((label, split) for _, label, split in rows)
    else:
        counts = Counter((label, source.split) for label in source.labels)
    labels = sorted({label for label, _ in counts})
    present = {split for _, split in counts}
    splits = [s for s in SPLIT_ORDER[::-1] if s in present]  # train, val, test, all
    return pd.DataFrame({split: [counts.get((label, split), 0) for label in labels]
                         for split in splits}, index=pd.Index(labels), dtype=int)


# ----------------------------------------------------------------------------- predictions


def domain_scores(predictions: SplitPredictions, guard) -> np.ndarray | None:
    """The out-of-domain guard's (N,) scores from the cached logits and pooled features (no
    model call), or None for a model without a guard."""
    if guard is None:
        return None
    return guard.scores(predictions.logits, np.asarray(predictions.features(), np.float32))


def prediction_table(predictions: SplitPredictions, ood_flags: np.ndarray | None = None,
                     ) -> pd.DataFrame:
    """One row per image: path, label, predicted, confidence, correct, known, out_of_domain,
    x, y.

    `known` says the true label is one of the model's classes (it cannot be right otherwise);
    `out_of_domain` is the guard's verdict (`ood_flags`, None for a model without a guard);
    the index is the row number in `predictions`, which the map's points carry.
    """
    classes = np.array(predictions.classes)
    probabilities = predictions.probabilities
    top = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)
    labels = np.array(predictions.labels, dtype=object)
    predicted = classes[top] if len(top) else np.array([], dtype=object)
    known = np.isin(labels, classes)
    return pd.DataFrame({
        "path": list(predictions.paths),
        "label": labels,
        "predicted": predicted,
        "confidence": probabilities.max(axis=1) if len(probabilities) else np.zeros(0),
        "correct": labels == predicted,
        "known": known,
        "out_of_domain": (np.asarray(ood_flags, bool) if ood_flags is not None
                          else np.full(len(labels), None, dtype=object)),
        "x": predictions.coords[:, 0],
        "y": predictions.coords[:, 1],
    })


def apply_filters(table: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """Rows matching every filter, in their original order."""
    keep = np.ones(len(table), dtype=bool)
    if filters.true_label is not None:
        keep &= (table["label"] == filters.true_label).to_numpy()
    if filters.predicted_label is not None:
        keep &= (table["predicted"] == filters.predicted_label).to_numpy()
    if filters.outcome == "correct":
        keep &= table["correct"].to_numpy()
    elif filters.outcome == "wrong":
        keep &= ~table["correct"].to_numpy()
    if filters.domain != "all":
        flagged = table["out_of_domain"].to_numpy() == True  # noqa: E712 (None: no guard)
        keep &= flagged if filters.domain == "out" else ~flagged
    low, high = filters.confidence
    confidence = table["confidence"].to_numpy()
    keep &= (confidence >= low - 1e-9) & (confidence <= high + 1e-9)
    return table[keep]


def confusion_table(table: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Counts with true labels as rows and predicted classes as columns.

    Rows are the model's classes, then any other label found in the data (which the model
    cannot predict); columns are the model's classes.
    """
    extra = sorted(set(table["label"]) - set(classes))
    rows = list(classes) + extra
    counts = pd.crosstab(table["label"], table["predicted"]) if len(table) else pd.DataFrame()
    return counts.reindex(index=rows, columns=list(classes), fill_value=0).fillna(0).astype(int)


def cell_rows(table: pd.DataFrame, true_label: str, predicted_label: str) -> pd.DataFrame:
    """Exactly the images counted in one confusion-matrix cell."""
    return apply_filters(table, Filters(true_label=true_label, predicted_label=predicted_label))


def most_confident_mistakes(table: pd.DataFrame, count: int = 6) -> pd.DataFrame:
    """Wrong answers with the highest confidence (images of a class the model knows)."""
    wrong = table[table["known"] & ~table["correct"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(count)


def least_confident_correct(table: pd.DataFrame, count: int = 6) -> pd.DataFrame:
    """Right answers with the lowest confidence."""
    right = table[table["correct"]]
    return right.sort_values("confidence", ascending=True, kind="stable").head(count)


# ----------------------------------------------------------------------------- gallery


def page_of(items: Sequence, number: int, size: int = PAGE_SIZE) -> Page:
    """One page of `items`; `number` is 1-based and clamped to the pages that exist."""
    if size < 1:
        raise ValueError(f"page size must be at least 1, got {size}")
    total = len(items)
    count = max(1, -(-total // size))
    number = min(max(1, int(number)), count)
    start = (number - 1) * size
    return Page(tuple(items[start:start + size]), number, count, total)


def paths_of_class(source: SplitSource, label: str) -> list[str]:
    """Relative paths of one class's images in a split, in folder order."""
    return [path for path, own in zip(source.paths, source.labels) if own == label]


def display_name(classifier, label: str) -> str:
    """The model's display name for a class, or the label title-cased if the model lacks it."""
    if label in classifier.classes:
        return classifier.display_names[classifier.classes.index(label)]
    return label.replace("_", " ").title()
