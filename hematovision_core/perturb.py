"""Named image perturbations for the robustness lesson: what a different camera, lamp, focus,
stain or file format does to a picture, one knob at a time.

Each takes an (h, w, 3) uint8 RGB array and a level, and returns a new uint8 array; the neutral
level gives the image back unchanged. `evaluate --perturb NAME=LEVEL` and the what-if panel on
Classify use the same functions, so the lesson measures exactly what the sliders show.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def brightness(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Every pixel times `factor` (a dimmer or brighter lamp, a shorter or longer exposure)."""
    return _clip(np.asarray(pixels, np.float32) * factor)


def contrast(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Spread around the image's mean grey times `factor` (< 1: a flat, washed-out picture)."""
    pixels = np.asarray(pixels, np.float32)
    mean = pixels.mean()
    return _clip(mean + (pixels - mean) * factor)


def blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of `sigma` pixels of the image as given (out of focus)."""
    if sigma <= 0:
        return np.array(pixels, np.uint8)
    return cv2.GaussianBlur(np.asarray(pixels, np.uint8), (0, 0), sigmaX=float(sigma))


def _hsv(pixels: np.ndarray, hue_shift: float = 0.0, saturation_factor: float = 1.0):
    hsv = cv2.cvtColor(np.asarray(pixels, np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_shift / 2.0) % 180.0  # OpenCV's hue runs 0..179 (degrees/2)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation_factor, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def hue(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate every colour's hue by `degrees` (another stain batch, a white balance off)."""
    return _hsv(pixels, hue_shift=degrees) if degrees else np.array(pixels, np.uint8)


def saturation(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Colour saturation times `factor` (0: grey; > 1: vivid)."""
    return _hsv(pixels, saturation_factor=factor) if factor != 1 else np.array(pixels, np.uint8)


def stain(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Stain strength times `factor`, in optical density (Beer-Lambert: the light a stained
    cell absorbs grows with the dye's amount): < 1 pale, under-stained; > 1 dark, over-stained.
    The white background stays white, unlike a brightness change."""
    pixels = np.asarray(pixels, np.float32)
    density = -np.log((pixels + 1.0) / 256.0)  # 0 for white, up to 5.5 for black
    return _clip(256.0 * np.exp(-density * factor) - 1.0)


def jpeg(pixels: np.ndarray, quality: float) -> np.ndarray:
    """Save as JPEG at `quality` (1-100) and decode again (a phone or a messaging app)."""
    if quality >= 100:
        return np.array(pixels, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, format="JPEG",
                                                        quality=int(max(1, quality)))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@dataclass(frozen=True)
class Perturbation:
    apply: Callable[[np.ndarray, float], np.ndarray]
    neutral: float  # the level that leaves the image unchanged
    levels: tuple[float, float, float]  # mild, moderate, strong: the README's table
    low: float  # slider range on Classify
    high: float
    step: float
    unit: str  # what a level means, for labels


PERTURBATIONS: dict[str, Perturbation] = {
    "brightness": Perturbation(brightness, 1.0, (0.8, 0.6, 1.4), 0.3, 1.8, 0.05, "x intensity"),
    "contrast": Perturbation(contrast, 1.0, (0.75, 0.5, 1.5), 0.3, 2.0, 0.05, "x spread"),
    "blur": Perturbation(blur, 0.0, (1.0, 2.0, 4.0), 0.0, 6.0, 0.5, "pixels (sigma)"),
    "hue": Perturbation(hue, 0.0, (10.0, 20.0, 40.0), -60.0, 60.0, 5.0, "degrees"),
    "saturation": Perturbation(saturation, 1.0, (0.7, 0.4, 1.5), 0.0, 2.0, 0.05, "x saturation"),
    "stain": Perturbation(stain, 1.0, (0.8, 0.6, 1.3), 0.4, 1.8, 0.05, "x stain density"),
    "jpeg": Perturbation(jpeg, 100.0, (50.0, 20.0, 10.0), 5.0, 100.0, 5.0, "quality"),
}


def parse_perturbation(text: str) -> tuple[str, float]:
    """"blur=2" -> ("blur", 2.0); a ValueError naming the choices for anything else."""
    name, _, level = text.partition("=")
    name = name.strip().lower()
    if name not in PERTURBATIONS or not level:
        raise ValueError(f"--perturb takes NAME=LEVEL with NAME one of {', '.join(PERTURBATIONS)}; "
                         f"got {text!r}")
    try:
        return name, float(level)
    except ValueError:
        raise ValueError(f"The level of {text!r} is not a number.") from None


def apply_perturbations(pixels: np.ndarray, perturbations: Sequence[tuple[str, float]]):
    """Apply (name, level) pairs in order; neutral levels are skipped."""
    out = np.asarray(pixels, np.uint8)
    for name, level in perturbations:
        spec = PERTURBATIONS[name]
        if level != spec.neutral:
            out = spec.apply(out, level)
    return out


def compose(perturbations: Sequence[tuple[str, float]]) -> Callable[[np.ndarray], np.ndarray]:
    """One function applying the pairs in order (what `evaluate` hands its image loader)."""
    perturbations = list(perturbations)
    for name, _ in perturbations:
        if name not in PERTURBATIONS:
            raise ValueError(f"Unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}")
    return lambda pixels: apply_perturbations(pixels, perturbations)
