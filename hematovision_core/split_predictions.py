"""Predictions and pooled features for a whole split, computed once per model and data, on disk.

One forward pass gives both the logits (for predictions) and the 1280-d pooled features (for the
map). Images are decoded in background threads while ONNX Runtime runs the previous batch. The
result lives in `<cache_dir>/explorer/<key>/`, where the key covers the model file's checksum,
the data folder, the split and the checksum of the list of images, so a cache made by another
model or another data folder is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hematovision_core.calibration import apply_temperature
from hematovision_core.feature_map import pca_2d

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the files below change meaning
ARRAYS_FILE = "predictions.npz"
FEATURES_FILE = "features.npy"
META_FILE = "meta.json"
BATCH_SIZE = 16  # on CPU larger batches are no faster, and 64 images at 224 px cost ~0.7 GB more
DECODE_THREADS = 2

ProgressCallback = Callable[[int, int], None]  # (images done, images in total)


@dataclass(frozen=True)
class SplitSource:
    """The images of one split of one data folder, and what identifies them."""

    root: Path  # dataset folder, resolved
    split: str  # "train", "val", "test" or "all"
    paths: tuple[str, ...]  # image paths relative to root (posix)
    labels: tuple[str, ...]  # lower-case class names, one per path
    fingerprint: str  # checksum of the manifest or of the folder listing


@dataclass(frozen=True, eq=False)
class SplitPredictions:
    """The model's view of a split; arrays are row-aligned with `paths`."""

    root: Path
    split: str
    paths: tuple[str, ...]  # images that decoded (relative to root)
    labels: tuple[str, ...]
    classes: tuple[str, ...]  # the model's classes, column order of `probabilities`
    logits: np.ndarray  # (N, num_classes) float32
    probabilities: np.ndarray  # (N, num_classes) float32, calibrated with the model's temperature
    coords: np.ndarray  # (N, 2) float32: PCA of the pooled features
    explained_variance: tuple[float, float]  # share of feature variance on each map axis
    skipped: tuple[str, ...]  # paths that could not be decoded
    folder: Path  # the cache folder these came from

    def features(self) -> np.ndarray:
        """Pooled features (N, 1280) float16, memory-mapped from the cache."""
        return np.load(self.folder / FEATURES_FILE, mmap_mode="r")


def split_key(classifier, source: SplitSource) -> tuple[str, dict]:
    """(key, parts): a checksum of what determines a split's results (model, data, split,
    images), naming its cache folder; `parts` is kept in meta.json and checked on reading."""
    parts = {
        "version": CACHE_VERSION,
        "model_sha256": classifier.model_folder.model_sha256,
        "crop": classifier.crop,  # what part of each image the model sees
        "tta": classifier.tta,  # and in how many orientations
        "root": str(Path(source.root).resolve()),
        "split": source.split,
        "fingerprint": source.fingerprint,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24], parts


def cache_folder(cache_dir: Path, classifier, source: SplitSource) -> Path:
    key, _ = split_key(classifier, source)
    return Path(cache_dir) / "explorer" / key


def load_cached(cache_dir: Path, classifier, source: SplitSource) -> SplitPredictions | None:
    """The cached results for this model, data folder and split, or None if there are none."""
    folder = cache_folder(cache_dir, classifier, source)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        _, parts = split_key(classifier, source)
        if meta.get("key_parts") != parts:  # belt and braces: never trust a key collision
            return None
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            logits = arrays["logits"]
            coords = arrays["coords"]
    except (OSError, ValueError, KeyError) as error:
        log.warning("Ignoring an unreadable explorer cache %s: %s", folder, error)
        return None
    return SplitPredictions(
        root=Path(source.root), split=source.split, paths=tuple(meta["paths"]),
        labels=tuple(meta["labels"]), classes=tuple(meta["classes"]), logits=logits,
        probabilities=apply_temperature(logits, classifier.temperature), coords=coords,
        explained_variance=tuple(meta["explained_variance"]), skipped=tuple(meta["skipped"]),
        folder=folder,
    )


def run_model(classifier, paths: Sequence[Path], progress: ProgressCallback | None = None,
              batch_size: int = BATCH_SIZE):
    """Pooled features and logits for image files (`Classifier.infer`), decoding the next batch
    in background threads while one runs.

    Returns:
        (features (M, 1280) float16, logits (M, C) float32, kept (M,) indices into `paths`).
    """
    inference = classifier.infer(paths, features=True, batch_size=batch_size,
                                 decode_threads=DECODE_THREADS, progress=progress)
    for index, reason in inference.skipped:
        log.warning("Skipping %s: %s", paths[index], reason)
    return (inference.pooled.astype(np.float16), inference.logits.astype(np.float32),
            inference.kept)


def compute(cache_dir: Path, classifier, source: SplitSource,
            progress: ProgressCallback | None = None) -> SplitPredictions:
    """Run the model over a split, fit the 2-D map, and write everything to the cache."""
    started = time.perf_counter()
    root = Path(source.root)
    features, logits, kept = run_model(classifier, [root / p for p in source.paths], progress)
    feature_map = pca_2d(features)
    kept_set = set(kept.tolist())
    paths = [source.paths[i] for i in kept]
    labels = [source.labels[i] for i in kept]
    skipped = [p for i, p in enumerate(source.paths) if i not in kept_set]
    _, parts = split_key(classifier, source)
    meta = {"key_parts": parts, "classes": list(classifier.classes), "paths": paths,
            "labels": labels, "skipped": skipped,
            "explained_variance": [float(v) for v in feature_map.explained_variance],
            "seconds": round(time.perf_counter() - started, 2)}

    # Write into a temporary folder and rename it, so a half-written cache is never read.
    folder = cache_folder(cache_dir, classifier, source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A unique name: another thread, process or replica may be writing the same split.
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".partial-"))
    try:
        np.savez(partial / ARRAYS_FILE, logits=logits, coords=feature_map.coords)
        np.save(partial / FEATURES_FILE, features)
        (partial / META_FILE).write_text(json.dumps(meta))
        try:
            partial.rename(folder)
        except OSError:
            # Another session finished the same split first: its results are the same, and
            # replacing them could pull files from under one of its readers. Keep them.
            if not (folder / META_FILE).is_file():
                raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    cached = load_cached(cache_dir, classifier, source)
    if cached is None:
        raise ValueError(f"Could not read back the explorer cache written to {folder}")
    return cached


def predictions_for(cache_dir: Path, classifier, source: SplitSource,
                    progress: ProgressCallback | None = None) -> SplitPredictions:
    """Cached results if this model has seen this split of this data folder, else compute them."""
    return load_cached(cache_dir, classifier, source) or compute(cache_dir, classifier, source,
                                                                 progress)
