"""Cache the frozen base's feature maps so fine-tuning the top blocks never re-runs the bottom.

On 2 CPU cores the bottom of MobileNetV2 (up to `FEATURE_CUT_LAYER`) is about 90% of a forward
pass. Its weights never change during training, so each training image is pushed through it once
per augmented view, and the maps are stored as float16 `.npy` files keyed by everything that
determines them (images, split, views, augmentation, crop, seed, the bottom's weights, input
size).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from hematovision_core.augment import augment
from hematovision_core.localize import apply_crop
from hematovision_core.preprocessing import load_image, resize_for_model, scale_pixels

log = logging.getLogger(__name__)


def cache_key(**parts) -> str:
    """A file name for cached feature maps (and training checkpoints): a checksum of what made
    them (manifest, weights, crop, views...). The explorer's caches are named by
    `split_predictions.split_key`."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def weights_checksum(model) -> str:
    """Identifies the frozen bottom's weights (ImageNet, or another model's via --init-from)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight).tobytes())
    return digest.hexdigest()[:20]


def plain_view(image: Image.Image, crop: str, input_size: int) -> np.ndarray:
    """The image as inference sees it: cropped, resized, uint8 (input_size, input_size, 3)."""
    return resize_for_model(apply_crop(image, crop), input_size)


def augmented_view(image: Image.Image, profile: str, crop: str, rng: np.random.Generator,
                   input_size: int, plain: np.ndarray | None = None) -> np.ndarray:
    """One random training view, uint8 (input_size, input_size, 3).

    A smear is augmented whole and cropped afterwards, the way a rotated or shifted field reaches
    the model at inference (the localiser then has to find the cell in it); a single-cell image
    is augmented at model size, from `plain` (its `plain_view`) where the caller has it.
    """
    if profile == "smear":
        field = augment(np.asarray(image), profile, rng)
        return plain_view(Image.fromarray(field), crop, input_size)
    plain = plain_view(image, crop, input_size) if plain is None else plain
    return augment(plain, profile, rng)


def compute_feature_maps(bottom, paths, views: int, profile: str | None, seed: int,
                         input_size: int, crop: str = "none", batch_size: int = 32,
                         desc: str = "features") -> np.ndarray:
    """Push every image (and `views` augmented copies of it) through the frozen bottom.

    Args:
        profile: augmentation profile ("cell" or "smear"); None means view 0 is the image as is.
    Returns:
        float16 array (len(paths), views, H, W, C).
    """
    forward = tf.function(lambda x: bottom(x, training=False), reduce_retracing=True)
    rng = np.random.default_rng(seed)
    shape = tuple(bottom.output.shape[1:])
    out = np.zeros((len(paths), views) + shape, dtype=np.float16)
    pending, slots = [], []

    def flush():
        maps = forward(tf.constant(np.stack(pending))).numpy()
        for (i, v), m in zip(slots, maps):
            out[i, v] = m
        pending.clear(), slots.clear()

    for index, path in enumerate(tqdm(paths, desc=desc, unit="img", mininterval=5)):
        image = load_image(path)
        plain = plain_view(image, crop, input_size)
        for view in range(views):
            pixels = plain if profile is None or view == 0 else \
                augmented_view(image, profile, crop, rng, input_size, plain)
            pending.append(scale_pixels(pixels))
            slots.append((index, view))
            if len(pending) == batch_size:
                flush()
    if pending:
        flush()
    return out


def cached_feature_maps(cache_dir: Path, key_parts: dict, **kwargs) -> np.ndarray:
    """`compute_feature_maps`, read from / written to `cache_dir/<key>.npy`."""
    path = Path(cache_dir) / f"{cache_key(**key_parts)}.npy"
    if path.exists():
        log.info("Reusing cached feature maps %s", path)
        return np.load(path, mmap_mode="r")
    maps = compute_feature_maps(**kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), maps)
    path.with_suffix(".tmp.npy").rename(path)
    return maps
