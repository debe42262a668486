"""MobileNetV2 transfer-learning classifier, built as one flat functional graph.

The head sits directly on the base's layers (`input_tensor=`), not on a nested base model, so
Grad-CAM and tf-keras-vis can reach the last convolutional block (`out_relu`) by name.
"""

from __future__ import annotations

import keras

from hematovision_core.preprocessing import INPUT_SIZE

LAST_CONV_LAYER = "out_relu"  # the layer Grad-CAM explains by default: (7, 7, 1280)
# Training caches the frozen base's output here and fine-tunes everything above it.
FEATURE_CUT_LAYER = "block_10_project_BN"  # (14, 14, 96)
HEAD_LAYERS = ("head_pool", "head_dropout", "head_logits", "probabilities")


def build_classifier(
    num_classes: int,
    weights: str | None = "imagenet",
    dropout: float = 0.2,
    input_size: int = INPUT_SIZE,
) -> keras.Model:
    """MobileNetV2 (alpha 1.0) + global average pooling + dropout + softmax, one flat graph.

    Args:
        weights: "imagenet" (found in $KERAS_HOME/models/ when offline), a path to the
            no-top .h5 file, or None for random weights (tests).
    """
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes}")
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    base = keras.applications.MobileNetV2(
        input_tensor=inputs, input_shape=(input_size, input_size, 3), include_top=False,
        weights=weights, alpha=1.0,
    )
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # Logits and softmax are separate layers so temperature scaling and Grad-CAM can use logits.
    logits = keras.layers.Dense(num_classes, name="head_logits")(x)
    probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="hematovision_mobilenetv2")


def split_at(model: keras.Model, layer_name: str = FEATURE_CUT_LAYER):
    """Two models sharing `model`'s layers: image -> cut features, and cut features -> output.

    Training the second one trains `model` itself, because the layers (and weights) are shared.
    """
    cut = model.get_layer(layer_name).output
    return keras.Model(model.input, cut, name="bottom"), keras.Model(cut, model.output, name="top")


def set_trainable_top(model: keras.Model, first_layer: str | None) -> None:
    """Freeze everything below `first_layer` (None: train the head only).

    BatchNormalization layers stay frozen: with small batches their statistics would drift
    away from the ImageNet ones the rest of the network relies on.
    """
    names = [layer.name for layer in model.layers]
    start = names.index(first_layer) if first_layer else names.index(HEAD_LAYERS[0])
    for index, layer in enumerate(model.layers):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and not is_batch_norm
