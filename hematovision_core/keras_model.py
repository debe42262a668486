"""A model folder's Keras model, for the work that needs TensorFlow: gradient heatmaps (in the
worker processes), training, and checking the served ONNX export against the original.

The dashboard's own process never imports this module (see `runtime`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from hematovision_core.model import LOGITS_LAYER
from hematovision_core.model_io import MODEL_FILE, ModelFolder
# The one definition of the test-time views, shared with the served path (numpy, no TensorFlow).
from hematovision_core.predict import dihedral_views, mean_over_views


class KerasClassifier:
    """`model.keras` with its metadata; the forward pass runs in a compiled `tf.function`."""

    def __init__(self, model: keras.Model, model_folder: ModelFolder):
        self.model = model
        self.model_folder = model_folder
        self.metadata = model_folder.metadata
        self.folder = model_folder.path
        self.classes: list[str] = list(model_folder.classes)
        self.input_size = model_folder.input_size
        self.crop = model_folder.crop
        self.tta = model_folder.tta
        self.views = model_folder.views
        self.logits_model = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)
        size = self.input_size
        self._forward = tf.function(
            lambda batch: self.logits_model(batch, training=False),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])

    def _tta_logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) -> (N, num_classes) logits, averaged over the TTA views."""
        if self.views == 1:
            return self._forward(tf.constant(batch)).numpy()
        views = np.ascontiguousarray(dihedral_views(batch))  # (8 * N, size, size, 3)
        return mean_over_views(self._forward(tf.constant(views)).numpy(), self.views)

    @classmethod
    def load(cls, folder: str | Path) -> "KerasClassifier":
        """Load a checked model folder's Keras model."""
        model_folder = ModelFolder.read(folder)
        model = keras.models.load_model(Path(folder) / MODEL_FILE, compile=False)
        return cls(model, model_folder)

    def logits(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, size, size, 3) preprocessed images -> (N, num_classes) logits, TTA included."""
        batch_size = max(1, batch_size // self.views)
        out = [self._tta_logits(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
