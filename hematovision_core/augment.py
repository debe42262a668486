"""Training-time augmentation, fit to each kind of dataset.

- "cell": single-cell crops (PBC). A white cell has no orientation, so any of the 8 flips and
  90-degree rotations of the square is as real as the original; add mild colour jitter for
  differences in staining and illumination.
- "smear": whole-field smears (blood-cells). The labelled cell can be anywhere, so rotate by any
  angle, shift, shear and flip, as the public dataset's own augmentations did.
- "crosslab": single-cell crops meant to survive another lab: the cell profile's symmetries, then
  a stain strength, hue and saturation of another staining, a zoom of another magnification or
  crop, and the blur and JPEG loss of a lower-resolution camera (issue 15, cross-lab training).

All functions take and return uint8 (H, W, 3) arrays, before `scale_pixels`.
"""

from __future__ import annotations

import cv2
import numpy as np

PROFILES = ("cell", "smear", "crosslab")


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


def random_zoom(pixels: np.ndarray, rng: np.random.Generator, low: float = 0.8,
                high: float = 2.2) -> np.ndarray:
    """Zoom by a log-uniform factor in [low, high] about the centre, same size out: a cell drawn
    larger (cropped) or smaller (borders reflected), as another magnification or crop shows it."""
    height, width = pixels.shape[:2]
    factor = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, factor)
    return cv2.warpAffine(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def stain_scale_blur(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "crosslab" profile: a dihedral symmetry, zoom x [0.8, 2.2] (a white-cell crop of a
    smear shows the cell about twice as large as PBC's images), stain density x [0.65, 1.5], hue
    +-25 degrees, saturation x [0.5, 1.3], half the time a Gaussian blur (sigma 0.5-2.5 px at
    model size), a third of the time JPEG at quality 30-90, then the mild colour jitter."""
    from hematovision_core import perturb

    out = random_zoom(dihedral(pixels, int(rng.integers(8))), rng)
    out = perturb.stain(out, float(np.exp(rng.uniform(np.log(0.65), np.log(1.5)))))
    out = perturb.saturation(perturb.hue(out, float(rng.uniform(-25, 25))),
                             float(rng.uniform(0.5, 1.3)))
    if rng.random() < 0.5:
        out = perturb.blur(out, float(rng.uniform(0.5, 2.5)))
    if rng.random() < 1 / 3:
        out = perturb.jpeg(out, float(rng.integers(30, 91)))
    return colour_jitter(out, rng, strength=0.12)


def augment(pixels: np.ndarray, profile: str, rng: np.random.Generator) -> np.ndarray:
    """A random augmented view of one image for the given dataset profile."""
    if profile == "cell":
        return colour_jitter(dihedral(pixels, int(rng.integers(8))), rng)
    if profile == "smear":
        return colour_jitter(random_field_transform(pixels, rng), rng)
    if profile == "crosslab":
        return stain_scale_blur(pixels, rng)
    raise ValueError(f"Unknown augmentation profile {profile!r}; choose one of {PROFILES}")
