"""Where the model looks, with gradients: Grad-CAM (compiled), Grad-CAM++, Score-CAM, SmoothGrad.

TensorFlow lives here, so only the worker processes (`explain_pool`), training and tests import
this module; the served process draws last-block maps from the forward pass (`heatmap`).

The default Grad-CAM is written out here and runs in one `tf.function` per (classifier, layer),
about 20x faster than tf-keras-vis's eager version with the same map; the other methods come from
tf-keras-vis. Every method explains the logits (`head_logits`) of one class, not the softmax,
so a confident prediction's gradients do not vanish. Only this module imports tf-keras-vis.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from hematovision_core.heatmap import (COLORMAPS, EXPLAIN_LAYERS, METHODS,  # noqa: F401 (re-export)
                                       SMOOTHGRAD_LAYER, Heatmap, colorize, layer_name, normalize,
                                       overlay, stretch_matrix)
from hematovision_core.model import LOGITS_LAYER

SCORECAM_CHANNELS = 32  # Faster Score-CAM: mask with the 32 most varied channels, not all 1280
SMOOTHGRAD_SAMPLES = 15  # noisy copies averaged; each costs one eager backward pass
SMOOTHGRAD_NOISE = 0.2  # noise sigma as a share of the image's value range


# classifier -> {layer name: compiled Grad-CAM}; weak keys so a dropped model frees its graphs.
_compiled: "weakref.WeakKeyDictionary[object, dict[str, tf.types.experimental.PolymorphicFunction]]"
_compiled = weakref.WeakKeyDictionary()
_compiled_lock = threading.Lock()  # Streamlit serves sessions from several threads
_scorecam_lock = threading.Lock()  # one Score-CAM at a time: it patches model.predict briefly


def _compile_gradcam(classifier, layer: str):
    """Build the compiled Grad-CAM for one classifier and layer."""
    model = classifier.model
    size = classifier.input_size
    activations_tensor = model.get_layer(layer).output  # (None, h, w, c)
    explain_model = keras.Model(
        model.input, [activations_tensor, model.get_layer(LOGITS_LAYER).output]
    )
    height, width = activations_tensor.shape[1:3]
    # (size, h) and (w, size): stretch = rows @ cam @ columns, one small matmul pair.
    rows = tf.constant(stretch_matrix(height, size))
    columns = tf.constant(stretch_matrix(width, size).T)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def gradcam(image, class_index):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            # Watching the input makes every activation above it differentiable.
            tape.watch(image)
            activations, logits = explain_model(image, training=False)  # (1, h, w, c), (1, k)
            score = logits[:, class_index]  # (1,)
        grads = tape.gradient(score, activations)  # (1, h, w, c)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (1, 1, 1, c)
        cam = tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))[0]  # (h, w)
        cam = rows @ cam @ columns  # (size, size)
        low, high = tf.reduce_min(cam), tf.reduce_max(cam)
        # Scale-free: a weak model's map (range 1e-9) still spans [0, 1]; a flat map stays 0.
        return tf.math.divide_no_nan(cam - low, high - low)

    return gradcam


def _gradcam_function(classifier, layer: str):
    with _compiled_lock:
        per_layer = _compiled.setdefault(classifier, {})
        if layer not in per_layer:
            per_layer[layer] = _compile_gradcam(classifier, layer)
        return per_layer[layer]


def warm_up(classifier, layer: str = "last") -> None:
    """Trace the compiled Grad-CAM for one layer now, so the first real request is fast."""
    size = classifier.input_size
    _gradcam_function(classifier, layer_name(layer))(
        tf.zeros((1, size, size, 3), tf.float32), tf.constant(0, tf.int32))


def _check_inputs(classifier, pixels: np.ndarray, class_index: int, method: str) -> np.ndarray:
    size = classifier.input_size
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.shape != (size, size, 3):
        raise ValueError(f"Expected one preprocessed image of shape {(size, size, 3)}, "
                         f"got {pixels.shape}")
    if not 0 <= class_index < len(classifier.classes):
        raise ValueError(f"class_index {class_index} is outside 0..{len(classifier.classes) - 1}")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return pixels


def _tf_keras_vis_map(classifier, pixels: np.ndarray, class_index: int, method: str,
                      layer: str) -> np.ndarray:
    """Grad-CAM++, Score-CAM, SmoothGrad (and the reference Grad-CAM) through tf-keras-vis."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore([class_index])
    seed = pixels[None]  # (1, size, size, 3)
    # The logits model shares the classifier's layers: nothing is cloned, so this is cheap.
    model = classifier.logits_model
    # tf-keras-vis passes inputs as a list (a harmless Keras 3 warning) and Score-CAM calls
    # model.predict, which would draw a progress bar into the server log.
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    # Raw maps: `compute_heatmap` normalises every method the same way (`normalize`).
    on_layer = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False,
                    normalize_cam=False)
    if method == "Grad-CAM":
        values = Gradcam(model, clone=False)(score, seed, **on_layer)
    elif method == "Grad-CAM++":
        values = GradcamPlusPlus(model, clone=False)(score, seed, **on_layer)
    elif method == "Score-CAM":
        # Score-CAM applies the softmax itself, so it too is given the logits model.
        channels = min(SCORECAM_CHANNELS, int(model.get_layer(layer).output.shape[-1]))
        with _scorecam_lock, _quiet_predict(model):
            values = Scorecam(model, clone=False)(score, seed, max_N=channels, **on_layer)
    else:
        values = Saliency(model, clone=False)(score, seed, smooth_samples=SMOOTHGRAD_SAMPLES,
                                              smooth_noise=SMOOTHGRAD_NOISE,
                                              normalize_map=False)
    return np.asarray(values, dtype=np.float32).reshape(pixels.shape[:2])


@contextlib.contextmanager
def _quiet_predict(model):
    """Make `model.predict` silent for the duration (tf-keras-vis calls it with the default)."""
    predict = model.predict
    model.predict = functools.partial(predict, verbose=0)
    try:
        yield
    finally:
        del model.predict  # back to the class's method


def compute_heatmap(classifier, pixels: np.ndarray, class_index: int, method: str = "Grad-CAM",
                    layer: str = "last") -> Heatmap:
    """Explain one preprocessed image's evidence for `class_index` with `method` at `layer`.

    Args:
        pixels: (size, size, 3) float32 in [-1, 1], as `preprocessing.preprocess` returns.
        layer: a depth name from EXPLAIN_LAYERS or a layer name of the model.
    """
    pixels = _check_inputs(classifier, pixels, class_index, method)
    name = layer_name(layer)
    try:
        classifier.model.get_layer(name)
    except ValueError as error:
        raise ValueError(f"The model has no layer {name!r}; depths: {', '.join(EXPLAIN_LAYERS)}") \
            from error
    if method == "Grad-CAM":
        values = _gradcam_function(classifier, name)(
            tf.constant(pixels[None]), tf.constant(class_index, tf.int32)).numpy()
    else:
        values = normalize(_tf_keras_vis_map(classifier, pixels, class_index, method, name))
    if method == "SmoothGrad":
        name = SMOOTHGRAD_LAYER
    values = np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0)
    return Heatmap(values, method, int(class_index), name)


def reference_gradcam(classifier, pixels: np.ndarray, class_index: int,
                      layer: str = "last") -> np.ndarray:
    """tf-keras-vis's Grad-CAM of the same map (slow, eager), to check the compiled path.

    Its raw map goes through our `normalize`: tf-keras-vis divides by (range + 1e-7), which
    differs from an exact rescale by 1e-7 / range, i.e. visibly for weak, low-range maps.
    """
    pixels = _check_inputs(classifier, pixels, class_index, "Grad-CAM")
    return normalize(_tf_keras_vis_map(classifier, pixels, class_index, "Grad-CAM",
                                       layer_name(layer)))
