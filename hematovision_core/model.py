"""MobileNetV2 transfer-learning classifier, built as one flat functional graph.

The head sits directly on the base's layers (`input_tensor=`), not on a nested base model, so
Grad-CAM and tf-keras-vis can reach the last convolutional block (`out_relu`) by name.
The layer names live here; keras is imported inside the functions, so the served process can read
the names without importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hematovision_core.preprocessing import INPUT_SIZE

if TYPE_CHECKING:
    import keras

LAST_CONV_LAYER = "out_relu"  # the layer Grad-CAM explains by default: (7, 7, 1280)
# Shallower layers Grad-CAM can explain on request (the Classify page's "early" and "middle").
EARLY_LAYER = "block_3_expand_relu"  # (56, 56, 144): stride 4
MIDDLE_LAYER = "block_10_expand_relu"  # (14, 14, 384): stride 16
POOL_LAYER = "head_pool"  # global average pool of out_relu: (N, 1280), the explorer's features
DROPOUT_LAYER = "head_dropout"
LOGITS_LAYER = "head_logits"  # (N, num_classes), before temperature and softmax
PROBABILITIES_LAYER = "probabilities"  # (N, num_classes): softmax of the logits
CLASS_MAPS_LAYER = "class_maps"  # (N, 7, 7, num_classes): the head's weights at every position
# Training caches the frozen base's output here and fine-tunes everything above it.
FEATURE_CUT_LAYER = "block_10_project_BN"  # (14, 14, 96)
HEAD_LAYERS = (POOL_LAYER, DROPOUT_LAYER, LOGITS_LAYER, PROBABILITIES_LAYER)
# The served graph's outputs (`forward_model`), in the order `runtime.OnnxModel.run` reads them.
FORWARD_OUTPUTS = (LOGITS_LAYER, POOL_LAYER, CLASS_MAPS_LAYER)


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
    import keras

    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes}")
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    base = keras.applications.MobileNetV2(
        input_tensor=inputs, input_shape=(input_size, input_size, 3), include_top=False,
        weights=weights, alpha=1.0,
    )
    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(base.output)
    x = keras.layers.Dropout(dropout, name=DROPOUT_LAYER)(x)
    # Logits and softmax are separate layers so temperature scaling and Grad-CAM can use logits.
    logits = keras.layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    probabilities = keras.layers.Activation("softmax", name=PROBABILITIES_LAYER)(logits)
    return keras.Model(inputs, probabilities, name="hematovision_mobilenetv2")


def split_at(model: keras.Model, layer_name: str = FEATURE_CUT_LAYER):
    """Two models sharing `model`'s layers: image -> cut features, and cut features -> output.

    Training the second one trains `model` itself, because the layers (and weights) are shared.
    """
    import keras

    cut = model.get_layer(layer_name).output
    return keras.Model(model.input, cut, name="bottom"), keras.Model(cut, model.output, name="top")


def set_trainable_top(model: keras.Model, first_layer: str | None) -> None:
    """Freeze everything below `first_layer` (None: train the head only).

    BatchNormalization layers stay frozen: with small batches their statistics would drift
    away from the ImageNet ones the rest of the network relies on.
    """
    import keras

    names = [layer.name for layer in model.layers]
    start = names.index(first_layer) if first_layer else names.index(HEAD_LAYERS[0])
    for index, layer in enumerate(model.layers):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and not is_batch_norm


def forward_model(model: keras.Model) -> keras.Model:
    """The served forward pass: image -> logits, pooled features and class maps, one graph.

    The head is global average pooling then one dense layer, so the dense layer applied at every
    position of `out_relu` gives each class's evidence map (CAM, Zhou et al. 2016): summed over
    the 7x7 positions it is 49x the logit less the bias. Grad-CAM at `out_relu` weights the same
    channels by the same kernel (the gradient of a logit is its kernel / 49 everywhere), so after
    ReLU and rescaling the last-block heatmap comes out of the forward pass with no gradient.
    """
    import keras

    logits_layer = model.get_layer(LOGITS_LAYER)
    kernel = logits_layer.get_weights()[0]  # (1280, num_classes)
    class_maps_layer = keras.layers.Dense(kernel.shape[1], use_bias=False, name=CLASS_MAPS_LAYER)
    class_maps = class_maps_layer(model.get_layer(LAST_CONV_LAYER).output)  # (N, 7, 7, classes)
    class_maps_layer.set_weights([kernel])
    return keras.Model(model.input, [logits_layer.output, model.get_layer(POOL_LAYER).output,
                                     class_maps], name="hematovision_forward")
