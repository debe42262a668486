"""Inference: `Classifier.load(folder).classify(images)` -> calibrated `Prediction`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from hematovision_core.calibration import apply_temperature
from hematovision_core.model_io import MODEL_FILE, TTA_VIEWS, ModelFolderError, read_metadata
from hematovision_core.preprocessing import ImageSource, model_view, preprocess

LOGITS_LAYER = "head_logits"


def dihedral_views(batch: tf.Tensor) -> tf.Tensor:
    """(N, H, W, C) -> (8 * N, H, W, C): the 8 flips and 90-degree rotations, view-major.

    A white cell has no orientation, so each view is an equally real picture of it; averaging the
    model's logits over them steadies predictions made from a small training set.
    """
    # The 4 flips of the image and of its transpose: the same 8 views as rotations and flips,
    # without tf.image.rot90's shape assertions in the graph.
    views = []
    for image in (batch, tf.transpose(batch, [0, 2, 1, 3])):
        views += [image, tf.reverse(image, [1]), tf.reverse(image, [2]), tf.reverse(image, [1, 2])]
    return tf.concat(views, axis=0)


def mean_over_views(logits: tf.Tensor, views: int) -> tf.Tensor:
    """(views * N, C) view-major logits -> (N, C) mean."""
    return tf.reduce_mean(tf.reshape(logits, [views, -1, tf.shape(logits)[-1]]), axis=0)


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # (num_classes,) calibrated, in the model's class order
    class_index: int
    label: str  # class name as in model.json
    display_name: str
    confidence: float  # calibrated probability of the top class

    def top(self, k: int = 2) -> list[tuple[int, float]]:
        """The k most probable (class_index, probability) pairs, best first."""
        order = np.argsort(-self.probabilities)[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


class Classifier:
    """A trained model plus its metadata; the forward pass runs in a compiled `tf.function`."""

    def __init__(self, model: keras.Model, metadata: dict, folder: Path | None = None):
        self.model = model
        self.metadata = metadata
        self.folder = folder
        self.classes: list[str] = list(metadata["classes"])
        self.display_names: list[str] = list(metadata["display_names"])
        self.input_size = int(metadata["input_size"])
        self.temperature = float(metadata["temperature"])
        self.crop = metadata.get("crop", "none")  # "white-cell": look at the white cell of a smear
        # "dihedral": average logits over the 8 symmetries of the square (costs 8 forward passes).
        self.tta = metadata.get("tta", "none")
        if self.tta not in TTA_VIEWS:
            raise ModelFolderError(f"Unknown test-time augmentation {self.tta!r} in model.json; "
                                   f"expected one of {tuple(TTA_VIEWS)}.")
        self.views = TTA_VIEWS[self.tta]  # forward passes per image
        self.logits_model = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)
        size = self.input_size
        self._forward = tf.function(
            self._tta_logits, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )

    def _tta_logits(self, batch: tf.Tensor) -> tf.Tensor:
        if self.tta == "none":
            return self.logits_model(batch, training=False)
        return mean_over_views(self.logits_model(dihedral_views(batch), training=False),
                               self.views)

    @property
    def name(self) -> str:
        return self.metadata.get("name", self.folder.name if self.folder else "model")

    @classmethod
    def load(cls, folder: str | Path) -> "Classifier":
        """Load a model folder, refusing one whose files are missing or do not match."""
        folder = Path(folder)
        metadata = read_metadata(folder)
        model = keras.models.load_model(folder / MODEL_FILE, compile=False)
        outputs = model.output.shape[-1]
        if outputs != len(metadata["classes"]):
            raise ModelFolderError(
                f"{folder}: the model has {outputs} outputs but model.json lists "
                f"{len(metadata['classes'])} classes."
            )
        if tuple(model.input.shape[1:3]) != (metadata["input_size"],) * 2:
            raise ModelFolderError(f"{folder}: the model's input size differs from model.json.")
        return cls(model, metadata, folder)

    def view(self, source: ImageSource):
        """The RGB image this model looks at (cropped as in training): show it with heatmaps."""
        return model_view(source, self.crop)

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Any image source -> this model's input, float32 (size, size, 3) in [-1, 1]."""
        return preprocess(source, self.input_size, self.crop)

    def warm_up(self) -> None:
        """Trace the compiled forward pass once so the first user does not wait for it."""
        self.logits(np.zeros((1, self.input_size, self.input_size, 3), np.float32))

    def logits(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, size, size, 3) preprocessed images -> (N, num_classes) uncalibrated logits."""
        batch_size = max(1, batch_size // self.views)  # TTA: as much memory as without it
        out = [self._forward(tf.constant(batch[i : i + batch_size])).numpy()
               for i in range(0, len(batch), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def probabilities(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Calibrated class probabilities for preprocessed images."""
        return apply_temperature(self.logits(batch, batch_size), self.temperature)

    def predictions_from_probabilities(self, probabilities: np.ndarray) -> list[Prediction]:
        out = []
        for row in probabilities:
            index = int(np.argmax(row))
            out.append(Prediction(row, index, self.classes[index], self.display_names[index],
                                  float(row[index])))
        return out

    def classify_arrays(self, batch: np.ndarray, batch_size: int = 32) -> list[Prediction]:
        """Classify already preprocessed images (N, size, size, 3) in [-1, 1]."""
        return self.predictions_from_probabilities(self.probabilities(batch, batch_size))

    def classify(self, images: Sequence[ImageSource], batch_size: int = 32) -> list[Prediction]:
        """Classify image files, bytes, PIL images or uint8 arrays, in batches.

        Raises:
            ImageError: for the first input that is not a usable image (see `preprocessing`).
        """
        batch = np.stack([self.prepare(image) for image in images]) if images \
            else np.zeros((0, self.input_size, self.input_size, 3), np.float32)
        return self.classify_arrays(batch, batch_size)
