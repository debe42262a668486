"""Heatmaps without TensorFlow: the `Heatmap` value, the last-block map from the forward pass
(CAM), and how a map is coloured and laid over an image.

The served process draws every heatmap through this module; only maps that need gradients at
other depths (`gradcam`) run in the worker processes (`explain_pool`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from hematovision_core.model import EARLY_LAYER, LAST_CONV_LAYER, MIDDLE_LAYER

# Named depths an instructor can pick from; the layer names exist in the flat MobileNetV2 graph at
# any input size. Shapes at 224x224 input: early (56, 56, 144), middle (14, 14, 384),
# last (7, 7, 1280).
EXPLAIN_LAYERS: dict[str, str] = {
    "early": EARLY_LAYER,
    "middle": MIDDLE_LAYER,
    "last": LAST_CONV_LAYER,
}
METHODS = ("Grad-CAM", "Grad-CAM++", "Score-CAM", "SmoothGrad")
SMOOTHGRAD_LAYER = "input pixels"  # SmoothGrad explains the image itself, at any chosen depth
COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "hot": cv2.COLORMAP_HOT,
}


@dataclass(frozen=True)
class Heatmap:
    values: np.ndarray  # (H, W) float32 in [0, 1]; H, W = the model input size
    method: str  # one of METHODS
    class_index: int  # the class whose evidence is shown
    layer: str  # the Keras layer explained (SMOOTHGRAD_LAYER for SmoothGrad)


# How many input pixels one cell of a layer's grid covers (MobileNetV2's strides): the last block
# sees a 224-px image as 7x7 squares of 32 px, coarser than a platelet; the middle one as 14x14.
LAYER_STRIDES = {"early": 4, "middle": 16, "last": 32}


def grid_note(layer: str, input_size: int) -> str | None:
    """A sentence on how coarse a depth's map is and where a sharper one is, or None."""
    stride = LAYER_STRIDES.get(layer)
    if stride is None:
        return None
    cells = max(1, input_size // stride)
    note = (f"This layer sees the image as a {cells}x{cells} grid of {stride}-pixel squares, "
            "so the map shows a region, not a single granule")
    if layer == "last":
        return note + ("; for a sharper map to point at (nucleus, granules), choose the middle "
                       "block (twice as fine) or the early one (edges and colour).")
    return note + "."


def is_empty(heatmap: Heatmap) -> bool:
    """True when nothing in the image raised the class's score at this layer (an all-zero map,
    drawn in the colour map's lowest colour)."""
    return not float(np.max(heatmap.values)) > 0.0


def layer_name(layer: str) -> str:
    """A depth name ("early", "middle", "last") or a layer name -> the Keras layer name."""
    return EXPLAIN_LAYERS.get(layer, layer)


def needs_gradients(method: str, layer: str) -> bool:
    """True for maps that only TensorFlow can compute (any method but Grad-CAM at the last block)."""
    return not (method == "Grad-CAM" and layer_name(layer) == LAST_CONV_LAYER)


@functools.lru_cache(maxsize=32)
def stretch_matrix(length: int, size: int) -> np.ndarray:
    """(size, length) weights of a linear, corner-aligned resize from `length` to `size` samples.

    Same result as scipy.ndimage.zoom(order=1), which tf-keras-vis uses to expand its maps.
    Cached (and read-only): every quiz answer's heatmap asks for the same two.
    """
    matrix = np.zeros((size, length), np.float32)
    if length == 1 or size == 1:
        matrix[:, 0] = 1.0
        matrix.flags.writeable = False
        return matrix
    position = np.arange(size) * (length - 1) / (size - 1)  # output row -> input coordinate
    low = np.minimum(np.floor(position).astype(int), length - 2)
    fraction = (position - low).astype(np.float32)
    matrix[np.arange(size), low] = 1.0 - fraction
    matrix[np.arange(size), low + 1] = fraction
    matrix.flags.writeable = False
    return matrix


def normalize(values: np.ndarray) -> np.ndarray:
    """Rescale a map to [0, 1] whatever its magnitude; a flat (or empty) map becomes zeros."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def cam_heatmap(class_maps: np.ndarray, class_index: int, size: int) -> Heatmap:
    """Grad-CAM at the last block, from one image's class maps (h, w, num_classes).

    The same map as `gradcam.compute_heatmap(..., "Grad-CAM", "last")`: ReLU of the class's map,
    stretched to size x size as the gradient version stretches it, then rescaled to [0, 1].
    """
    if not 0 <= class_index < class_maps.shape[-1]:
        raise ValueError(f"class_index {class_index} is outside 0..{class_maps.shape[-1] - 1}")
    cam = np.maximum(class_maps[..., class_index].astype(np.float32), 0.0)  # (h, w)
    height, width = cam.shape
    stretched = stretch_matrix(height, size) @ cam @ stretch_matrix(width, size).T  # (size, size)
    return Heatmap(np.clip(normalize(stretched), 0.0, 1.0), "Grad-CAM", int(class_index),
                   LAST_CONV_LAYER)


def colorize(heatmap: Heatmap, colormap: str = "jet") -> np.ndarray:
    """The heatmap as a uint8 RGB image (H, W, 3) in a colour map from COLORMAPS."""
    return _colour(heatmap.values, colormap)


def _colour(values: np.ndarray, colormap: str) -> np.ndarray:
    if colormap not in COLORMAPS:
        raise ValueError(f"Unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    levels = np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)  # (H, W)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay(image_rgb: np.ndarray, heatmap: Heatmap, opacity: float = 0.5,
            colormap: str = "jet") -> np.ndarray:
    """Blend the coloured heatmap over an RGB image; returns uint8 RGB the size of `image_rgb`."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB image (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 image, got {image.dtype}")
    height, width = image.shape[:2]
    # Resize the values, not the colours, so every blended pixel is a true colour-map colour.
    values = cv2.resize(heatmap.values.astype(np.float32), (width, height),
                        interpolation=cv2.INTER_LINEAR)  # (height, width)
    colours = _colour(values, colormap)  # (height, width, 3)
    blended = (1.0 - opacity) * image.astype(np.float32) + opacity * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
