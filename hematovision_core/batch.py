"""Classify a set of files in memory: one result per good file, one message per bad one.

The Classify page hands over (name, bytes) pairs from uploads, the camera or the data folder and
shows what comes back; nothing here touches the disk, so uploads are never written anywhere.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from hematovision_core.csv_safety import to_csv
from hematovision_core.data import IMAGE_EXTENSIONS, ImageRecord, discover, read_manifest
from hematovision_core.predict import Prediction
from hematovision_core.model_io import ModelFolder
from hematovision_core.ood import NOTICE
from hematovision_core.preprocessing import scale_pixels

UNCERTAIN_BELOW = 0.60  # top calibrated probability under this: the model is unsure
UNCERTAIN_MARGIN = 0.15  # or the top two within this of each other: a coin toss between them
DISPLAY_MAX_SIDE = 640  # the copy kept for display and overlays, in pixels (long side)


@dataclass(frozen=True)
class ImageResult:
    name: str  # the file name as the user gave it (shown, never used as a path)
    digest: str  # sha1 of the file's bytes: the cache key for its heatmaps
    image_rgb: np.ndarray  # (h, w, 3) uint8 copy of what the model saw (its crop, if it crops),
    # long side <= DISPLAY_MAX_SIDE: heatmaps are overlaid on it
    pixels: np.ndarray  # (size, size, 3) float32 in [-1, 1]: what the model saw
    prediction: Prediction
    uncertainty: str | None  # a sentence naming both candidates, or None when confident
    true_label: str | None = None  # known for examples drawn from the data folder
    # (h, w, num_classes) float32 from the same forward pass: the last-block heatmap of any
    # class costs no second pass (`Classifier.heatmap`)
    class_maps: np.ndarray | None = None

    @property
    def uncertain(self) -> bool:
        return self.uncertainty is not None


@dataclass(frozen=True)
class ImageFailure:
    name: str
    message: str  # user-facing, from the ImageError


def bytes_digest(data: bytes) -> str:
    """sha1 hex digest of a file's bytes (uploads: never a path; see `data.file_digest`)."""
    return hashlib.sha1(data).hexdigest()


def uncertainty(prediction: Prediction, display_names: Sequence[str],
                below: float = UNCERTAIN_BELOW, margin: float = UNCERTAIN_MARGIN) -> str | None:
    """A notice naming the two candidates when the top probability is low or the top two close."""
    (first, p_first), (second, p_second) = prediction.top(2)
    if p_first >= below and p_first - p_second >= margin:
        return None
    # With calibrated probabilities a close pair always has a low top score; say which it is.
    reason = "the top two are close" if p_first - p_second < margin else "low confidence"
    return (f"Uncertain ({reason}): {display_names[first]} ({p_first:.0%}) or "
            f"{display_names[second]} ({p_second:.0%}). Check the morphology yourself.")


def _display_copy(image: Image.Image) -> np.ndarray:
    image = image.copy()
    image.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def refuse_other_types(files: Sequence[tuple[str, bytes]],
                       extensions: Sequence[str] = IMAGE_EXTENSIONS,
                       ) -> tuple[list[tuple[str, bytes]], list[ImageFailure]]:
    """Split uploads into (files named with an image extension, one failure per other file).

    The uploader offers only these types, but a crafted request can send any name; Streamlit's
    own check would reject the whole upload, so the page turns it off and checks here, per file.
    """
    allowed = tuple(extension.lower() for extension in extensions)
    kept, refused = [], []
    for name, data in files:
        if name.lower().endswith(allowed) and "\0" not in name:
            kept.append((name, data))
        else:
            refused.append(ImageFailure(name, "This file type is not accepted; upload "
                                              + ", ".join(allowed) + " images."))
    return kept, refused


def classify_files(classifier, files: Sequence[tuple[str, bytes]],
                   true_labels: Sequence[str | None] | None = None,
                   ) -> tuple[list[ImageResult], list[ImageFailure]]:
    """Decode, check and classify (name, bytes) pairs in one batch; bad files become failures.

    Results and failures each keep the input order.
    """
    true_labels = list(true_labels) if true_labels is not None else [None] * len(files)
    if len(true_labels) != len(files):
        raise ValueError("true_labels must have one entry per file")
    if not files:
        return [], []
    # RGB, EXIF applied, cropped as in training (smear models look at the white cell), with the
    # class maps of the same forward pass and the out-of-domain scores.
    inference = classifier.infer([bytes(data) for _, data in files], inputs=True)
    failures = [ImageFailure(files[index][0], reason) for index, reason in inference.skipped]
    predictions = classifier.predictions_from_probabilities(inference.probabilities,
                                                            inference.ood_scores)
    results = []
    for row, index in enumerate(inference.kept):
        name, data = files[index]
        prediction = predictions[row]
        results.append(ImageResult(
            name, bytes_digest(data), _display_copy(inference.views[row]),
            scale_pixels(inference.inputs[row]), prediction,
            uncertainty(prediction, classifier.display_names), true_labels[index],
            inference.class_maps[row]))
    return results, failures


def results_rows(results: Sequence[ImageResult], display_names: Sequence[str]) -> list[dict]:
    """One plain row per result: file, prediction, confidence, uncertain, runner-up, and
    whether the image is unlike the model's training images (with a sentence saying so)."""
    rows = []
    guarded = any(result.prediction.out_of_domain is not None for result in results)
    for result in results:
        (_, _), (second, p_second) = result.prediction.top(2)
        row = {
            "file": result.name,
            "prediction": result.prediction.display_name,
            "confidence": round(result.prediction.confidence, 4),
            "uncertain": result.uncertain,
            "runner_up": display_names[second],
            "runner_up_probability": round(p_second, 4),
        }
        if guarded:  # a model without a guard has no verdict: no column, rather than "False"
            row.update(out_of_domain=bool(result.prediction.out_of_domain),
                       ood_score=round(float(result.prediction.ood_score), 2),
                       note=NOTICE if result.prediction.out_of_domain else "")
        if any(r.true_label for r in results):
            row["true_label"] = result.true_label or ""
        rows.append(row)
    return rows


def results_csv(results: Sequence[ImageResult], display_names: Sequence[str]) -> bytes:
    """The results table as UTF-8 CSV bytes (formula-safe), one row per good file plus a header."""
    # File names are the user's: csv_safety keeps a name like "=HYPERLINK(...).png" inert.
    return to_csv(results_rows(results, display_names))


def differential(results: Sequence[ImageResult], display_names: Sequence[str]) -> dict[str, float]:
    """Share of each class among the results (display name -> fraction), in model order."""
    counts = np.bincount([r.prediction.class_index for r in results],
                         minlength=len(display_names))
    total = max(int(counts.sum()), 1)
    return {name: float(count) / total for name, count in zip(display_names, counts)}


def dataset_folder(data_dir: str | Path, model: ModelFolder) -> Path:
    """Where the model's dataset lives on this machine: <data_dir>/<model.json's data.dataset>."""
    return Path(data_dir) / (model.dataset or "pbc")


def example_records(model: ModelFolder, data_dir: str | Path) -> list[ImageRecord]:
    """Labelled images to draw examples from: the model's test split when its manifest is here
    (images it never trained on), else every image found in the dataset folder."""
    root = dataset_folder(data_dir, model)
    if not root.is_dir():
        return []
    if model.manifest is not None:
        test = [r for r in read_manifest(model.manifest, root) if r.split == "test"]
        present = [r for r in test if r.path.is_file()]
        if present:
            return present
    classes = set(model.classes)
    return [r for r in discover(root, verify=False).records
            if r.path.suffix.lower() in IMAGE_EXTENSIONS and (not classes or r.label in classes)]


def draw_example(records: Sequence[ImageRecord], seed: int | None = None) -> ImageRecord:
    """One record at random (reproducible with `seed`)."""
    if not records:
        raise ValueError("No example images to draw from")
    return random.Random(seed).choice(list(records))
