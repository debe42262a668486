"""The Transfer Learning Lab's features: which images, from which network, cached on disk.

Three feature sources are compared: MobileNetV2 with ImageNet weights (what transfer learning
starts from), the same network with random weights (what it would start from without ImageNet)
and the project's fine-tuned model (where it ended). Each gives one pooled 1280-d vector per
image; the lab trains only a linear head on top, so all the difference between the curves comes
from the features.

ImageNet and random features need TensorFlow. This module imports it only inside the functions
that run the network (`keras_pooled`, `inside_the_network`), which run in the CLI or in a worker
process (`lab_pool`), never in the dashboard's process. The fine-tuned model's features come
from its ONNX export (`onnx_pooled`), in any process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hematovision_core.data import discover
from hematovision_core.localize import apply_crop
from hematovision_core.preprocessing import (INPUT_SIZE, ImageError, load_image, resize_for_model,
                                             scale_pixels)

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cached files change meaning
POOL_WIDTH = 1280  # MobileNetV2's last block, globally average pooled
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
RANDOM_SEED = 1234  # the random-weights network: one fixed draw, so its curve is reproducible
SOURCES = ("imagenet", "random", "finetuned")
SOURCE_NAMES = {"imagenet": "ImageNet weights (frozen)", "random": "random weights (frozen)",
                "finetuned": "fine-tuned model (frozen)"}

Progress = Callable[[int, int], None]  # (images done, images in total)
# A chunk of image files -> (pooled features (M, 1280) float32, usable (M,) bool)
PooledBackend = Callable[[Sequence[Path]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class LabImages:
    """The labelled images a lab session uses, and what identifies that list."""

    root: Path  # the dataset folder, resolved
    paths: tuple[str, ...]  # relative to root (posix), grouped by class
    labels: tuple[str, ...]  # lower-case class names, one per path
    classes: tuple[str, ...]  # sorted
    capped_at: int | None  # images kept per class (a seeded sample), None for all
    fingerprint: str  # checksum of the paths, sizes and modification times


@dataclass(frozen=True)
class FeatureSource:
    """Which network gives the features. Picklable: it travels to the worker process."""

    name: str  # one of SOURCES
    weights: str = ""  # imagenet: the .h5 file ("" lets Keras find or download it);
    #                    finetuned: the model folder; random: unused
    seed: int = RANDOM_SEED  # random: the initialiser's seed
    input_size: int = INPUT_SIZE
    version: str = ""  # finetuned: the model file's checksum and its test-time augmentation

    def identity(self) -> dict:
        """What determines this source's features, for cache keys (no TensorFlow needed)."""
        if self.name == "imagenet":
            return {"name": self.name, "weights": _file_mark(self.weights) if self.weights
                    else "keras-download", "input_size": self.input_size}
        if self.name == "random":
            # Keras' initialisers give other numbers in another version: part of the key.
            return {"name": self.name, "seed": self.seed, "input_size": self.input_size,
                    "keras": _version("keras")}
        if self.name == "finetuned":
            return {"name": self.name, "version": self.version, "input_size": self.input_size,
                    "folder": str(Path(self.weights).resolve())}
        raise ValueError(f"Unknown feature source {self.name!r}; choose one of {SOURCES}")


@dataclass(frozen=True, eq=False)
class LabFeatures:
    """One source's pooled features for the usable images of a `LabImages`, row-aligned."""

    source: str
    features: np.ndarray  # (N, 1280) float32
    paths: tuple[str, ...]  # relative to the image root
    labels: tuple[str, ...]
    skipped: tuple[str, ...]  # files that could not be decoded


def _version(package: str) -> str:
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return "unknown"


def _file_mark(path: str | Path) -> list:
    path = Path(path)
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


# The offline copy beside the repository (`../shared/weights/`, see README "Data"): found there
# too, so `python -m hematovision_core.transfer_lab --data DIR ...` runs as written on a machine
# where nobody has put the file into a Keras home.
SHARED_WEIGHTS = Path(__file__).resolve().parent.parent.parent / "shared" / "weights" / WEIGHTS_FILE


def keras_home_weights() -> Path | None:
    """The ImageNet weights file where Keras looks first ($KERAS_HOME/models/, else
    ~/.keras/models/, else /tmp/.keras/models/), else the shared offline copy; None when absent."""
    homes = [os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"), "/tmp/.keras"]
    for candidate in [Path(home) / "models" / WEIGHTS_FILE for home in homes] + [SHARED_WEIGHTS]:
        if candidate.is_file():
            return candidate
    return None


def imagenet_source(weights: str | Path | None = None) -> FeatureSource:
    """The ImageNet source, its weights given by path or found as Keras would find them."""
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"No ImageNet weights file at {weights}")
        return FeatureSource("imagenet", str(Path(weights).resolve()))
    found = keras_home_weights()
    return FeatureSource("imagenet", str(found) if found else "")


def finetuned_source(folder: str | Path, metadata: dict) -> FeatureSource:
    """The fine-tuned model of a folder as a source (`metadata`: its checked model.json)."""
    version = f"{metadata.get('model_sha256', '')}:{metadata.get('tta', 'none')}"
    return FeatureSource("finetuned", str(Path(folder).resolve()), RANDOM_SEED,
                         int(metadata.get("input_size", INPUT_SIZE)), version)


def list_lab_images(root: str | Path, per_class: int | None = None, seed: int = 0) -> LabImages:
    """The images of a folder of class folders (split folders are merged), optionally a seeded
    sample of `per_class` per class so a first feature pass stays short."""
    dataset = discover(root, verify=False)  # undecodable files are skipped when decoded
    by_class: dict[str, list[str]] = defaultdict(list)
    for record in dataset.records:
        by_class[record.label].append(Path(record.path).relative_to(dataset.root).as_posix())
    if len(by_class) < 2:
        raise ValueError(f"{root} needs at least 2 class folders of images, found "
                         f"{len(by_class)}.")
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for label in sorted(by_class):
        files = sorted(by_class[label])
        if per_class is not None and len(files) > per_class:
            files = sorted(rng.choice(files, per_class, replace=False).tolist())
        paths += files
        labels += [label] * len(files)
    digest = hashlib.sha256()
    for relative in paths:
        stat = (dataset.root / relative).stat()
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return LabImages(dataset.root, tuple(paths), tuple(labels), tuple(sorted(by_class)),
                     per_class, digest.hexdigest()[:24])


# --- decoding and the forward passes --------------------------------------------------------------

def decode_view(path: Path, crop: str, size: int) -> np.ndarray | None:
    """One image as the network sees it, uint8 (size, size, 3); None if it cannot be read."""
    try:
        return resize_for_model(apply_crop(load_image(path), crop), size)
    except (ImageError, OSError) as error:
        log.warning("Skipping %s: %s", path, error)
        return None


def _decode_chunk(paths: Sequence[Path], crop: str, size: int):
    views = [decode_view(Path(p), crop, size) for p in paths]
    usable = np.array([v is not None for v in views], dtype=bool)
    return views, usable


def build_network(source: FeatureSource):
    """The Keras MobileNetV2 of a source, without a head (TensorFlow: worker or CLI only)."""
    import keras

    size = source.input_size
    if source.name == "finetuned":
        from hematovision_core.model_io import MODEL_FILE

        return keras.models.load_model(Path(source.weights) / MODEL_FILE, compile=False)
    if source.name == "random":
        keras.utils.set_random_seed(source.seed)
        weights = None
    else:
        weights = source.weights or "imagenet"
    try:
        return keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                              weights=weights, alpha=1.0)
    except Exception as error:  # offline without the file: Keras' download fails
        raise FileNotFoundError(
            "MobileNetV2's ImageNet weights are not available: put "
            f"{WEIGHTS_FILE} in $KERAS_HOME/models/ (default ~/.keras/models/) or pass its "
            f"path ({error})") from error


def pooling_model(network):
    """image -> pooled last-block features (N, 1280), from a network built by `build_network`,
    as one compiled function (`reduce_retracing`: a short last batch does not recompile it)."""
    import keras
    import tensorflow as tf

    from hematovision_core.model import LAST_CONV_LAYER

    last = network.get_layer(LAST_CONV_LAYER).output  # (N, 7, 7, 1280)
    pooled = keras.layers.GlobalAveragePooling2D(name="lab_pool")(last)  # (N, 1280)
    model = keras.Model(network.input, pooled)
    forward = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    return lambda batch: forward(tf.constant(batch)).numpy()


def keras_pooled(model, paths: Sequence[Path], crop: str, size: int,
                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of image files through a `pooling_model` (a batch -> (b, 1280) function).

    Returns (features (M, 1280) float32 with zero rows for unusable files, usable (M,) bool).
    """
    views, usable = _decode_chunk(paths, crop, size)
    out = np.zeros((len(paths), POOL_WIDTH), np.float32)
    rows = np.flatnonzero(usable)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = scale_pixels(np.stack([views[i] for i in chunk]))  # (b, size, size, 3) in [-1, 1]
        out[chunk] = np.asarray(model(batch), np.float32)
    return out, usable


def onnx_pooled(classifier, paths: Sequence[Path], batch_size: int = 16
                ) -> tuple[np.ndarray, np.ndarray]:
    """The fine-tuned model's pooled features (`head_pool`) from its ONNX export, cropped and
    test-time augmented as the model classifies. Same return as `keras_pooled`."""
    views, usable = _decode_chunk(paths, classifier.crop, classifier.input_size)
    out = np.zeros((len(paths), POOL_WIDTH), np.float32)
    rows = np.flatnonzero(usable)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = scale_pixels(np.stack([views[i] for i in chunk]))
        out[chunk] = classifier.forward(batch).pooled
    return out, usable


# --- the cache ------------------------------------------------------------------------------------

def cache_path(cache_dir: Path, source: FeatureSource, images: LabImages, crop: str) -> Path:
    """`<cache_dir>/transfer_lab/<key>.npz`, the key covering source, images and crop."""
    parts = {"version": CACHE_VERSION, "source": source.identity(), "root": str(images.root),
             "fingerprint": images.fingerprint, "crop": crop}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir) / "transfer_lab" / f"{source.name}-{key}.npz"


def load_cached(cache_dir: Path, source: FeatureSource, images: LabImages,
                crop: str) -> LabFeatures | None:
    """The cached features of these images from this source, or None if not computed yet."""
    path = cache_path(cache_dir, source, images, crop)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return LabFeatures(source.name, arrays["features"].astype(np.float32),
                               tuple(arrays["paths"].tolist()), tuple(arrays["labels"].tolist()),
                               tuple(arrays["skipped"].tolist()))
    except (OSError, ValueError, KeyError) as error:
        log.warning("Ignoring an unreadable feature cache %s: %s", path, error)
        return None


def save(cache_dir: Path, source: FeatureSource, images: LabImages, crop: str,
         features: LabFeatures) -> Path:
    """Write features to the cache atomically (a unique temporary file, then a rename)."""
    path = cache_path(cache_dir, source, images, crop)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(handle)
    try:
        np.savez(temporary, features=features.features.astype(np.float32),
                 paths=np.array(features.paths, dtype=str),
                 labels=np.array(features.labels, dtype=str),
                 skipped=np.array(features.skipped, dtype=str))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def compute(images: LabImages, source: FeatureSource, backend: PooledBackend,
            progress: Progress | None = None, chunk: int = 64) -> LabFeatures:
    """Run `backend` over the images in chunks (progress after each) and keep the usable ones."""
    total = len(images.paths)
    parts, usable = [], []
    for start in range(0, total, chunk):
        files = [images.root / p for p in images.paths[start:start + chunk]]
        features, ok = backend(files)  # (m, 1280), (m,)
        parts.append(features)
        usable.append(ok)
        if progress is not None:
            progress(min(start + chunk, total), total)
    features = np.concatenate(parts) if parts else np.zeros((0, POOL_WIDTH), np.float32)
    ok = np.concatenate(usable) if usable else np.zeros(0, bool)
    pick = lambda values: tuple(v for v, keep in zip(values, ok) if keep)  # noqa: E731
    skipped = tuple(p for p, keep in zip(images.paths, ok) if not keep)
    return LabFeatures(source.name, features[ok], pick(images.paths), pick(images.labels),
                       skipped)


def cached_features(cache_dir: Path, source: FeatureSource, images: LabImages, crop: str,
                    backend: PooledBackend, progress: Progress | None = None) -> LabFeatures:
    """Features from the cache, or computed once with `backend` and cached."""
    found = load_cached(cache_dir, source, images, crop)
    if found is not None:
        return found
    features = compute(images, source, backend, progress)
    save(cache_dir, source, images, crop, features)
    return features
