"""Training-time augmentation, fit to each kind of dataset.

- "cell": single-cell crops (PBC). A white cell has no orientation, so any of the 8 flips and
  90-degree rotations of the square is as real as the original; add mild colour jitter for
  differences in staining and illumination.
- "smear": whole-field smears (blood-cells). The labelled cell can be anywhere, so rotate by any
  angle, shift, shear and flip, as the public dataset's own augmentations did.

All functions take and return uint8 (H, W, 3) arrays, before `scale_pixels`.
"""

from __future__ import annotations

import cv2
import numpy as np

PROFILES = ("cell", "smear")


def dihedral(pixels: np.ndarray, index: int) -> np.ndarray:
    """One of the 8 symmetries of the square: index 0 is the identity, 4-7 are flipped."""
    out = np.rot90(pixels, k=index % 4)
    if index >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def colour_jitter(pixels: np.ndarray, rng: np.random.Generator, strength: float = 0.08):
    """Mild brightness, contrast and saturation changes (each within +-strength)."""
    x = pixels.astype(np.float32)
    brightness, contrast, saturation = 1 + rng.uniform(-strength, strength, size=3)
    mean = x.mean()
    x = (x - mean) * contrast + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * saturation + grey
    x = x * brightness
    return np.clip(x, 0, 255).astype(np.uint8)


# How an affine warp fills the corners it uncovers: datasets' own augmentations differ (Keras
# fills with the nearest pixel by default), so training sees each.
BORDER_MODES = (cv2.BORDER_REFLECT_101, cv2.BORDER_REPLICATE, cv2.BORDER_CONSTANT)


def random_affine(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation by any angle, shift up to 10%, shear up to 10 degrees; borders reflected,
    replicated or black."""
    height, width = pixels.shape[:2]
    angle = rng.uniform(-180, 180)
    shear = np.tan(np.deg2rad(rng.uniform(-10, 10)))
    shift = rng.uniform(-0.1, 0.1, size=2) * (width, height)
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    shear_matrix = np.array([[1, shear, -shear * height / 2], [0, 1, 0]], dtype=np.float64)
    # Compose: shear first, then rotate about the centre, then shift.
    matrix = rotation @ np.vstack([shear_matrix, [0, 0, 1]])
    matrix[:, 2] += shift
    border = BORDER_MODES[int(rng.integers(len(BORDER_MODES)))]
    return cv2.warpAffine(pixels, matrix, (width, height), borderMode=border)


def random_field_transform(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random affine warp, then a horizontal flip half the time: geometry only."""
    out = random_affine(pixels, rng)
    return np.ascontiguousarray(out[:, ::-1]) if rng.random() < 0.5 else out


def augment(pixels: np.ndarray, profile: str, rng: np.random.Generator) -> np.ndarray:
    """A random augmented view of one image for the given dataset profile."""
    if profile == "cell":
        return colour_jitter(dihedral(pixels, int(rng.integers(8))), rng)
    if profile == "smear":
        return colour_jitter(random_field_transform(pixels, rng), rng)
    raise ValueError(f"Unknown augmentation profile {profile!r}; choose one of {PROFILES}")
