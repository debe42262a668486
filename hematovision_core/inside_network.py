"""Inside the network: for one image, the channels that respond most at an early, a middle and
the last block of MobileNetV2, with a sentence on what each depth sees.

Students hear that early layers find edges and late layers find "parts"; here they see it on a
blood cell. Running the network needs TensorFlow, so `layer_responses` runs in the CLI or a worker
process (`lab_pool`); `top_channels` and the dataclass are plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hematovision_core.heatmap import EXPLAIN_LAYERS, LAYER_STRIDES
from hematovision_core.preprocessing import scale_pixels

TOP_CHANNELS = 4  # feature maps shown per depth

# What each depth responds to, said for a blood-cell image.
DEPTH_SENTENCES = {
    "early": ("Early block: each unit sees a few pixels, so its maps light up on edges, colour "
              "contrasts and the boundary between stain and background: the outline of the "
              "cell and of its nucleus, much the same for any kind of image."),
    "middle": ("Middle block: units see a patch of the cell, so maps respond to textures and "
               "shapes (granular cytoplasm, the lobes and folds of a nucleus, round red cells "
               "around it) combined from the early edges."),
    "last": ("Last block: each unit covers most of the cell on a coarse grid, and a map fires "
             "where a whole pattern is present (a lobed nucleus, a mass of granules); the head "
             "weighs these 1,280 channels, pooled, to name the class."),
}


@dataclass(frozen=True, eq=False)
class LayerResponse:
    """The strongest feature maps of one depth for one image."""

    depth: str  # "early", "middle" or "last"
    layer: str  # Keras layer name, e.g. "block_3_expand_relu"
    grid: tuple[int, int, int]  # (h, w, channels) of the layer's output
    stride: int  # input pixels per grid cell
    channels: tuple[int, ...]  # the most responsive channel numbers, strongest first
    strengths: tuple[float, ...]  # each one's mean activation over the grid
    maps: np.ndarray  # (TOP_CHANNELS, h, w) float32 in [0, 1], each scaled to its own maximum
    sentence: str  # what this depth sees


@dataclass(frozen=True, eq=False)
class InsideView:
    """One image and its responses at the three depths."""

    image: np.ndarray  # (size, size, 3) uint8: what the network was given
    source: str  # the feature source whose network was used
    responses: tuple[LayerResponse, ...]  # early, middle, last


def top_channels(activations: np.ndarray, depth: str, layer: str,
                 count: int = TOP_CHANNELS) -> LayerResponse:
    """The `count` channels with the highest mean activation of one layer's (h, w, c) output."""
    activations = np.asarray(activations, np.float32)
    if activations.ndim != 3:
        raise ValueError(f"activations must be (h, w, channels), got {activations.shape}")
    means = activations.mean(axis=(0, 1))  # (c,)
    order = np.argsort(-means, kind="stable")[:count]  # strongest first
    maps = np.moveaxis(activations[:, :, order], -1, 0)  # (count, h, w)
    peaks = maps.reshape(len(order), -1).max(axis=1)  # (count,)
    maps = np.clip(maps, 0, None) / np.where(peaks > 0, peaks, 1)[:, None, None]
    return LayerResponse(depth, layer, tuple(int(v) for v in activations.shape),
                         LAYER_STRIDES.get(depth, 0), tuple(int(c) for c in order),
                         tuple(float(means[c]) for c in order), maps.astype(np.float32),
                         DEPTH_SENTENCES.get(depth, ""))


def layers_model(network):
    """image -> the outputs of the EXPLAIN_LAYERS (early, middle, last), one Keras model."""
    import keras

    outputs = [network.get_layer(name).output for name in EXPLAIN_LAYERS.values()]
    return keras.Model(network.input, outputs)


def layer_responses(model, source: str, path: Path, crop: str, size: int,
                    count: int = TOP_CHANNELS) -> InsideView:
    """Run one image through a `layers_model` and keep each depth's strongest maps.

    Raises:
        ValueError: the file is not a usable image (the message says why).
    """
    from hematovision_core.localize import apply_crop
    from hematovision_core.preprocessing import load_image, resize_for_model

    view = resize_for_model(apply_crop(load_image(path), crop), size)  # (size, size, 3) uint8
    outputs = model.predict_on_batch(scale_pixels(view)[None])  # one (1, h, w, c) per depth
    responses = tuple(top_channels(np.asarray(output)[0], depth, layer, count)
                      for (depth, layer), output in zip(EXPLAIN_LAYERS.items(), outputs))
    return InsideView(view, source, responses)


def map_picture(values: np.ndarray, size: int, colormap: int | None = None) -> np.ndarray:
    """One (h, w) map in [0, 1] as a (size, size, 3) uint8 picture: each grid cell drawn as a
    square (nearest-neighbour), so the layer's coarseness shows, in the viridis colour map."""
    import cv2

    levels = np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)  # (h, w)
    square = cv2.resize(levels, (size, size), interpolation=cv2.INTER_NEAREST)  # (size, size)
    coloured = cv2.applyColorMap(square, cv2.COLORMAP_VIRIDIS if colormap is None else colormap)
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
