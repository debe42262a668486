"""Heatmaps: shapes, ranges, the compiled Grad-CAM against tf-keras-vis, overlays, and (with the
shipped model) that the predicted class's map peaks on the cell."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from hematovision_core import gradcam
from hematovision_core.gradcam import (EXPLAIN_LAYERS, METHODS, Heatmap, colorize, compute_heatmap,
                                       overlay, reference_gradcam)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_PBC = Path(os.environ.get("HEMATOVISION_MODELS", REPO_ROOT / "models")) / "pbc-8class"


@pytest.fixture(scope="module")
def pixels(tiny_keras) -> np.ndarray:
    """A smooth random image (size, size, 3) in [-1, 1]: a blob the model can respond to."""
    size = tiny_keras.input_size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    blob = np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.02)[..., None]  # (size, size, 1)
    return np.clip(blob * rng.uniform(-1, 1, 3) + rng.normal(0, 0.1, (size, size, 3)),
                   -1, 1).astype(np.float32)


class SmallClassifier:
    """Duck-types the parts of `Classifier` that gradcam uses, around a 2-convolution network.

    The tiny MobileNetV2 with random weights is no good for comparing implementations: its
    activations shrink ~30x per block (out_relu ~1e-12), so every map is ~0 and anything agrees,
    and once rescaled it is chaotic enough to turn float32 round-off into 1e-2 differences.
    """

    def __init__(self, size: int = 32, num_classes: int = 3):
        import keras

        keras.utils.set_random_seed(1)
        inputs = keras.Input((size, size, 3), name="image")
        x = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
        x = keras.layers.ReLU(name="early_relu")(x)  # (size, size, 8)
        x = keras.layers.Conv2D(16, 3, strides=4, padding="same", name="conv_b")(x)
        x = keras.layers.ReLU(name="out_relu")(x)  # (size / 4, size / 4, 16)
        x = keras.layers.GlobalAveragePooling2D()(x)
        logits = keras.layers.Dense(num_classes, name="head_logits")(x)
        probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
        self.model = keras.Model(inputs, probabilities)
        self.logits_model = keras.Model(inputs, logits)
        self.input_size = size
        self.classes = [f"class{i}" for i in range(num_classes)]


@pytest.fixture(scope="module")
def small_classifier():
    return SmallClassifier()


@pytest.mark.parametrize("layer", ["early_relu", "out_relu"])
def test_compiled_gradcam_matches_tf_keras_vis(small_classifier, layer):
    rng = np.random.default_rng(2)
    pixels = rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32)
    for class_index in range(3):
        ours = compute_heatmap(small_classifier, pixels, class_index, "Grad-CAM", layer)
        reference = reference_gradcam(small_classifier, pixels, class_index, layer)
        assert ours.layer == layer
        assert ours.values.std() > 0.05  # a real map, not all zeros
        np.testing.assert_allclose(ours.values, reference, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_map_of_input_size_in_unit_range(tiny_keras, pixels, method,
                                                              monkeypatch):
    # Fewer masks and noisy copies than in the app: the same code path, a fraction of the time.
    monkeypatch.setattr(gradcam, "SCORECAM_CHANNELS", 4)
    monkeypatch.setattr(gradcam, "SMOOTHGRAD_SAMPLES", 2)
    heatmap = compute_heatmap(tiny_keras, pixels, 1, method, "middle")
    size = tiny_keras.input_size
    assert isinstance(heatmap, Heatmap)
    assert heatmap.values.shape == (size, size) and heatmap.values.dtype == np.float32
    assert 0.0 <= heatmap.values.min() and heatmap.values.max() <= 1.0
    assert np.isfinite(heatmap.values).all()
    assert heatmap.method == method and heatmap.class_index == 1
    if method == "SmoothGrad":
        assert heatmap.layer == gradcam.SMOOTHGRAD_LAYER
    else:
        assert heatmap.layer == EXPLAIN_LAYERS["middle"]


def test_maps_span_the_unit_range_even_for_a_random_model(tiny_keras, pixels):
    # The random tiny model's raw maps are ~1e-12: normalising must not flatten them to zero.
    heatmap = compute_heatmap(tiny_keras, pixels, 0, "Grad-CAM", "last")
    assert heatmap.values.min() == 0.0 and heatmap.values.max() == pytest.approx(1.0, abs=1e-6)


def test_normalize_is_scale_free_and_safe_on_flat_maps():
    ramp = np.linspace(0, 1e-9, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(gradcam.normalize(ramp), ramp / 1e-9, atol=1e-6)
    assert not gradcam.normalize(np.full((3, 3), 5.0)).any()
    assert not gradcam.normalize(np.full((3, 3), np.nan)).any()


def test_compiled_function_is_built_once_per_classifier_and_layer(tiny_keras, pixels):
    compute_heatmap(tiny_keras, pixels, 0, layer="last")
    first = gradcam._gradcam_function(tiny_keras, EXPLAIN_LAYERS["last"])
    compute_heatmap(tiny_keras, pixels, 2, layer="last")
    assert gradcam._gradcam_function(tiny_keras, EXPLAIN_LAYERS["last"]) is first
    assert gradcam._gradcam_function(tiny_keras, EXPLAIN_LAYERS["early"]) is not first


def test_different_layers_and_classes_give_different_maps(small_classifier):
    pixels = np.random.default_rng(4).uniform(-1, 1, (32, 32, 3)).astype(np.float32)
    last = compute_heatmap(small_classifier, pixels, 0, layer="out_relu").values
    early = compute_heatmap(small_classifier, pixels, 0, layer="early_relu").values
    other_class = compute_heatmap(small_classifier, pixels, 2, layer="out_relu").values
    assert not np.allclose(last, early)
    assert not np.allclose(last, other_class)


def test_bad_arguments_raise_value_error(tiny_keras, pixels):
    with pytest.raises(ValueError, match="method"):
        compute_heatmap(tiny_keras, pixels, 0, method="LIME")
    with pytest.raises(ValueError, match="layer"):
        compute_heatmap(tiny_keras, pixels, 0, layer="deepest")
    with pytest.raises(ValueError, match="class_index"):
        compute_heatmap(tiny_keras, pixels, 3)
    with pytest.raises(ValueError, match="shape"):
        compute_heatmap(tiny_keras, pixels[:10], 0)


def test_stretch_matches_scipy_zoom():
    from scipy.ndimage import zoom

    small = np.random.default_rng(1).random((7, 5)).astype(np.float32)
    ours = gradcam.stretch_matrix(7, 224) @ small @ gradcam.stretch_matrix(5, 224).T
    np.testing.assert_allclose(ours, zoom(small, (224 / 7, 224 / 5), order=1), atol=1e-5)


def _ramp_heatmap(size: int = 32) -> Heatmap:
    values = np.tile(np.linspace(0, 1, size, dtype=np.float32), (size, 1))  # (size, size)
    return Heatmap(values, "Grad-CAM", 0, "out_relu")


def test_colorize_and_overlay_shapes_and_opacity():
    heatmap = _ramp_heatmap()
    colours = colorize(heatmap, "viridis")
    assert colours.shape == (32, 32, 3) and colours.dtype == np.uint8
    image = np.full((50, 70, 3), 200, np.uint8)
    assert overlay(image, heatmap, opacity=0.0).tolist() == image.tolist()
    full = overlay(image, heatmap, opacity=1.0, colormap="jet")
    assert full.shape == (50, 70, 3) and full.dtype == np.uint8
    # jet: low values are blue, high values red
    assert full[25, 0, 2] > full[25, 0, 0] and full[25, -1, 0] > full[25, -1, 2]
    half = overlay(image, heatmap, opacity=0.5)
    assert np.abs(half.astype(int) - (image.astype(int) + full) / 2).max() <= 1


def test_overlay_rejects_bad_input():
    heatmap = _ramp_heatmap()
    with pytest.raises(ValueError):
        overlay(np.zeros((10, 10), np.uint8), heatmap)
    with pytest.raises(ValueError):
        overlay(np.zeros((10, 10, 3), np.uint8), heatmap, opacity=1.5)
    with pytest.raises(ValueError):
        colorize(heatmap, "sepia")


def cell_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the stained object nearest the centre, widened by a tenth.

    Nuclei and granules stain purple (low green); red cells and background do not.
    """
    green = rgb[..., 1].astype(np.float32)
    stained = (green < 0.55 * np.median(green)).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(stained)
    size = rgb.shape[0]
    candidates = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] > 20]
    if not candidates:
        return np.zeros(rgb.shape[:2], bool)
    nearest = min(candidates, key=lambda i: np.hypot(*(centroids[i] - size / 2)))
    radius = size // 10
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate((labels == nearest).astype(np.uint8), kernel) > 0


@pytest.fixture(scope="module")
def shipped_classifier():
    if not (SHIPPED_PBC / "model.json").is_file():
        pytest.skip(f"shipped model {SHIPPED_PBC} is not trained yet")
    from hematovision_core.keras_model import KerasClassifier

    return KerasClassifier.load(SHIPPED_PBC)


def test_shipped_model_gradcam_matches_tf_keras_vis_real_data(shipped_classifier, shared_data):
    from hematovision_core.preprocessing import preprocess

    path = sorted((shared_data / "pbc" / "eosinophil").glob("*.jpg"))[0]
    pixels = preprocess(path, shipped_classifier.input_size)
    # The layer the app explains by default; the small network above covers the other depths.
    ours = compute_heatmap(shipped_classifier, pixels, 1, "Grad-CAM", "last").values
    np.testing.assert_allclose(ours, reference_gradcam(shipped_classifier, pixels, 1, "last"),
                               atol=1e-5)


def test_shipped_model_gradcam_peaks_on_the_cell_more_often_than_not(shipped_classifier,
                                                                     shared_data):
    from hematovision_core.preprocessing import load_image, resize_for_model, scale_pixels

    classifier = shipped_classifier
    rng = np.random.default_rng(3)
    hits, total = 0, 0
    for class_name in sorted(p.name for p in (shared_data / "pbc").iterdir() if p.is_dir()):
        files = sorted((shared_data / "pbc" / class_name).glob("*.jpg"))
        for path in rng.choice(files, size=min(2, len(files)), replace=False) if files else []:
            rgb = resize_for_model(load_image(path), classifier.input_size)  # (size, size, 3)
            pixels = scale_pixels(rgb)
            predicted = int(classifier.logits(pixels[None])[0].argmax())
            heatmap = compute_heatmap(classifier, pixels, predicted)
            peak = np.unravel_index(np.argmax(heatmap.values), heatmap.values.shape)
            hits += bool(cell_mask(rgb)[peak])
            total += 1
    assert total >= 10
    assert hits > total / 2, f"the heatmap peaked on the cell in only {hits} of {total} images"


def test_a_depth_says_how_coarse_its_map_is_and_an_empty_map_is_recognised():
    from hematovision_core.heatmap import Heatmap, grid_note, is_empty

    assert "7x7 grid of 32-pixel squares" in grid_note("last", 224)
    assert "middle block" in grid_note("last", 224)
    assert "14x14" in grid_note("middle", 224) and grid_note("out_relu", 224) is None
    assert is_empty(Heatmap(np.zeros((4, 4), np.float32), "Grad-CAM", 0, "out_relu"))
    assert not is_empty(Heatmap(np.eye(4, dtype=np.float32), "Grad-CAM", 0, "out_relu"))
