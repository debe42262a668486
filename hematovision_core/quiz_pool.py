"""The images a quiz may ask about, and the model's answers on them, cached on disk.

Questions come only from images the model did not train on: the validation and test rows of the
model's split manifest (`split.csv` in its folder), or a folder it never saw (`folder_pool`).

The "typical" and "hard" difficulties need the model's prediction on every candidate. Classifying
the whole PBC pool (about 4,600 images) takes a minute on a laptop CPU, so `predicted_pool` works on
a fixed, class-stratified sample of at most `PREDICTION_SAMPLE_PER_CLASS` images per class (about
1,200 for PBC, some 15 seconds once), classified in batches and saved after every batch under
`<cache_dir>/quiz_pool/`. The cache file is keyed by the model's sha256, the manifest's sha256
and the sample's file paths (hence the data folder and the sample size), so a retrained model or
a new split never reuses stale answers, and a page closed half-way resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hematovision_core.data import discover, manifest_checksum, read_manifest
from hematovision_core.model_io import dataset_name, manifest_path

QUIZ_SPLITS = ("val", "test")  # never "train": students must not be asked about training images
PREDICTION_SAMPLE_PER_CLASS = 150
PREDICTION_BATCH = 32
CACHE_FOLDER = "quiz_pool"
DEFAULT_DATASET = "pbc"

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclass(frozen=True)
class Candidate:
    image_id: str  # path relative to the data folder, posix ("pbc/basophil/BA_1.jpg"): stored
    path: Path  # where the image is on this machine
    truth: str  # true class name, as in the model's classes
    predicted: str | None = None  # the model's answer; None until classified
    confidence: float | None = None  # calibrated probability of `predicted`
    second: str | None = None  # the model's second choice
    second_probability: float | None = None

    @property
    def model_correct(self) -> bool | None:
        """Whether the model's answer is the truth (None before it is classified)."""
        return None if self.predicted is None else self.predicted == self.truth


def manifest_pool(model_folder: str | Path, metadata: dict, data_dir: str | Path) -> list[Candidate]:
    """Validation and test images of the model's split manifest that exist on this machine."""
    manifest = manifest_path(model_folder, metadata)
    if manifest is None:
        return []
    dataset = dataset_name(metadata) or DEFAULT_DATASET
    root = Path(data_dir) / dataset
    classes = set(metadata["classes"])
    pool = []
    for record in read_manifest(manifest, root):
        if record.split not in QUIZ_SPLITS or record.label not in classes:
            continue
        if record.path.is_file():
            relative = Path(record.path).relative_to(root).as_posix()
            pool.append(Candidate(f"{dataset}/{relative}", Path(record.path), record.label))
    return sorted(pool, key=lambda c: c.image_id)


def folder_pool(root: str | Path, data_dir: str | Path, classes: Sequence[str]) -> list[Candidate]:
    """Every image of a folder the model never saw, in the model's classes."""
    root, data_dir = Path(root).resolve(), Path(data_dir).resolve()
    dataset = discover(root, verify=False)
    pool = []
    for record in dataset.records:
        if record.label in classes:
            image_id = (record.path.relative_to(data_dir).as_posix()
                        if record.path.is_relative_to(data_dir) else record.path.as_posix())
            pool.append(Candidate(image_id, record.path, record.label))
    return sorted(pool, key=lambda c: c.image_id)


def image_path(data_dir: str | Path, image_id: str) -> Path | None:
    """The file of a stored image id, or None if it is not a file inside the data folder."""
    relative = Path(image_id)
    if relative.is_absolute() or ".." in relative.parts:  # ids come from the database: stay inside
        return None
    path = Path(data_dir) / relative
    return path if path.is_file() else None


def stratified_sample(pool: Sequence[Candidate], per_class: int, seed: int = 0) -> list[Candidate]:
    """At most `per_class` candidates of each class, the same ones every time."""
    by_class: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(pool, key=lambda c: c.image_id):
        by_class[candidate.truth].append(candidate)
    rng = np.random.RandomState(seed)
    sample = []
    for label in sorted(by_class):
        items = by_class[label]
        if len(items) > per_class:
            keep = sorted(rng.choice(len(items), per_class, replace=False))
            items = [items[i] for i in keep]
        sample += items
    return sorted(sample, key=lambda c: c.image_id)


def with_prediction(candidate: Candidate, probabilities: np.ndarray, classes: Sequence[str]) -> Candidate:
    """A copy of `candidate` carrying the model's answer, confidence and second choice."""
    order = np.argsort(-np.asarray(probabilities))
    first, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    return replace(candidate, predicted=classes[first], confidence=float(probabilities[first]),
                   second=classes[second], second_probability=float(probabilities[second]))


def predict_candidates(classifier, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Classify a few candidates now (no cache); for the one question on screen."""
    if not candidates:
        return []
    batch = np.stack([classifier.prepare(c.path) for c in candidates])
    probabilities = classifier.probabilities(batch)  # (N, num_classes)
    return [with_prediction(c, p, classifier.classes) for c, p in zip(candidates, probabilities)]


def cache_file(cache_dir: str | Path, model_sha256: str, manifest_sha256: str,
               sample: Sequence[Candidate]) -> Path:
    """Where the predictions for one model, split and sample (files on this machine) are kept."""
    digest = hashlib.sha256(model_sha256.encode())
    digest.update(manifest_sha256.encode())
    for candidate in sample:  # the sample's resolved paths name the data folder and sample size
        digest.update(str(Path(candidate.path).resolve()).encode() + b"\n")
    return Path(cache_dir) / CACHE_FOLDER / f"{digest.hexdigest()[:20]}.json"


def _pixels_or_none(classifier, path: Path) -> np.ndarray | None:
    """The preprocessed image, or None for a file that is not a readable image."""
    from hematovision_core.preprocessing import ImageError

    try:
        return classifier.prepare(path)
    except (ImageError, OSError):
        return None


def _read_cache(path: Path, classes: Sequence[str]) -> dict[str, list[float] | None]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if payload.get("classes") != list(classes):
        return {}
    return payload.get("probabilities", {})


def _write_cache(path: Path, classes: Sequence[str],
                 probabilities: dict[str, list[float] | None]) -> None:
    """Write atomically, so a reader (another session) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"classes": list(classes), "probabilities": probabilities})
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        f.write(payload)
    os.replace(temporary, path)


def predicted_pool(classifier, pool: Sequence[Candidate], cache_dir: str | Path,
                   per_class: int = PREDICTION_SAMPLE_PER_CLASS, progress: Progress | None = None,
                   batch_size: int = PREDICTION_BATCH) -> list[Candidate]:
    """The stratified sample of `pool`, each with the model's prediction (computed once, cached)."""
    if not pool:
        return []
    sample = stratified_sample(pool, per_class)
    metadata, classes = classifier.metadata, classifier.classes
    manifest = manifest_path(classifier.folder, metadata) if classifier.folder else None
    manifest_sha = manifest_checksum(manifest) if manifest else "no-manifest"
    path = cache_file(cache_dir, metadata.get("model_sha256", classifier.name), manifest_sha, sample)
    cached = _read_cache(path, classes)
    missing = [c for c in sample if c.image_id not in cached]
    done = len(sample) - len(missing)
    for start in range(0, len(missing), batch_size):
        chunk = missing[start:start + batch_size]
        pixels = [_pixels_or_none(classifier, c.path) for c in chunk]
        readable = [(c, p) for c, p in zip(chunk, pixels) if p is not None]
        if readable:
            batch = np.stack([p for _, p in readable])  # (n, size, size, 3) in [-1, 1]
            for (candidate, _), row in zip(readable, classifier.probabilities(batch)):
                cached[candidate.image_id] = [round(float(p), 6) for p in row]
        for candidate, p in zip(chunk, pixels):
            if p is None:
                cached[candidate.image_id] = None  # unreadable: remembered, never asked
        _write_cache(path, classes, cached)  # after every batch: a closed tab loses little
        done += len(chunk)
        if progress:
            progress(done, len(sample))
    return [with_prediction(c, np.array(cached[c.image_id]), classes) for c in sample
            if cached[c.image_id] is not None]


@dataclass(frozen=True, eq=False)
class ModelView:
    candidate: Candidate  # with the model's prediction filled in
    image: np.ndarray  # uint8 (size, size, 3): the image as the model saw it
    overlay: np.ndarray  # uint8 (size, size, 3): Grad-CAM of the model's answer over `image`


def model_view(classifier, candidate: Candidate, opacity: float = 0.45) -> ModelView:
    """The model's answer on one image and where it looked (Grad-CAM of its chosen class)."""
    from hematovision_core.gradcam import compute_heatmap, overlay
    from hematovision_core.preprocessing import resize_for_model, scale_pixels

    # uint8 (S, S, 3), cropped as the model was trained (smear models look at the white cell)
    pixels = resize_for_model(classifier.view(candidate.path), classifier.input_size)
    scaled = scale_pixels(pixels)  # float32 (S, S, 3) in [-1, 1]
    probabilities = classifier.probabilities(scaled[None])[0]  # (num_classes,)
    predicted = with_prediction(candidate, probabilities, classifier.classes)
    heatmap = compute_heatmap(classifier, scaled, classifier.classes.index(predicted.predicted))
    return ModelView(predicted, pixels, overlay(pixels, heatmap, opacity=opacity))
