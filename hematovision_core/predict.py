"""Inference: `Classifier.load(folder).classify(images)` -> calibrated `Prediction`s.

The forward pass runs on ONNX Runtime (`runtime`), never on TensorFlow, so the dashboard's
process does not import keras. Test-time augmentation and calibration happen here, in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hematovision_core.calibration import apply_temperature
from hematovision_core.heatmap import Heatmap, cam_heatmap
from hematovision_core.model_io import TTA_VIEWS, ModelFolderError, read_metadata
from hematovision_core.ood import load_guard
from hematovision_core.preprocessing import ImageSource, model_view, preprocess
from hematovision_core.runtime import ForwardPass, OnnxModel


def dihedral_views(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (8 * N, H, W, C): the 8 flips and 90-degree rotations, view-major.

    A white cell has no orientation, so each view is an equally real picture of it; averaging the
    model's logits over them steadies predictions made from a small training set. View 0 is the
    image as given.
    """
    views = []
    for image in (batch, np.transpose(batch, (0, 2, 1, 3))):
        views += [image, image[:, ::-1], image[:, :, ::-1], image[:, ::-1, ::-1]]
    return np.concatenate(views, axis=0)


def mean_over_views(values: np.ndarray, views: int) -> np.ndarray:
    """(views * N, ...) view-major values -> (N, ...) mean over the views."""
    return values.reshape(views, -1, *values.shape[1:]).mean(axis=0)


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # (num_classes,) calibrated, in the model's class order
    class_index: int
    label: str  # class name as in model.json
    display_name: str
    confidence: float  # calibrated probability of the top class
    # The model folder's out-of-domain guard (ood.py): True when the image is unlike the images
    # the model learned from; None for a model without a guard.
    out_of_domain: bool | None = None
    ood_score: float | None = None  # the guard's score, higher = less familiar

    def top(self, k: int = 2) -> list[tuple[int, float]]:
        """The k most probable (class_index, probability) pairs, best first."""
        order = np.argsort(-self.probabilities)[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


class Classifier:
    """A trained model folder served by ONNX Runtime, plus its metadata."""

    def __init__(self, runtime: OnnxModel, metadata: dict, folder: Path | None = None):
        self.runtime = runtime
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
        self.guard = load_guard(folder, metadata)  # None: no out-of-domain guard in the folder

    @property
    def name(self) -> str:
        return self.metadata.get("name", self.folder.name if self.folder else "model")

    @classmethod
    def load(cls, folder: str | Path) -> "Classifier":
        """Load a model folder, refusing one whose files are missing or do not match."""
        folder = Path(folder)
        metadata = read_metadata(folder)
        runtime = OnnxModel.load(folder)
        if runtime.num_classes != len(metadata["classes"]):
            raise ModelFolderError(
                f"{folder}: the model has {runtime.num_classes} outputs but model.json lists "
                f"{len(metadata['classes'])} classes."
            )
        if runtime.input_size != metadata["input_size"]:
            raise ModelFolderError(f"{folder}: the model's input size differs from model.json.")
        return cls(runtime, metadata, folder)

    def view(self, source: ImageSource):
        """The RGB image this model looks at (cropped as in training): show it with heatmaps."""
        return model_view(source, self.crop)

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Any image source -> this model's input, float32 (size, size, 3) in [-1, 1]."""
        return preprocess(source, self.input_size, self.crop)

    def warm_up(self) -> None:
        """Run the forward pass once so the first user does not pay for ONNX Runtime's set-up."""
        self.forward(np.zeros((1, self.input_size, self.input_size, 3), np.float32))

    def forward(self, batch: np.ndarray, batch_size: int = 32) -> ForwardPass:
        """(N, size, size, 3) preprocessed images -> logits and pooled features (TTA averaged)
        and class maps (of the image as given: heatmaps explain what the user sees)."""
        batch_size = max(1, batch_size // self.views)  # TTA: as much memory as without it
        parts = []
        for start in range(0, len(batch), batch_size):
            images = batch[start:start + batch_size]
            if self.views == 1:
                parts.append(self.runtime.run(images))
                continue
            out = self.runtime.run(dihedral_views(images))
            parts.append(ForwardPass(mean_over_views(out.logits, self.views),
                                     mean_over_views(out.pooled, self.views),
                                     out.class_maps[:len(images)]))  # view 0: the image as given
        if not parts:
            return self.runtime.run(np.zeros((0, self.input_size, self.input_size, 3),
                                             np.float32))
        return ForwardPass(*(np.concatenate([getattr(p, name) for p in parts])
                             for name in ("logits", "pooled", "class_maps")))

    def logits(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, size, size, 3) preprocessed images -> (N, num_classes) uncalibrated logits."""
        return self.forward(batch, batch_size).logits

    def probabilities(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Calibrated class probabilities for preprocessed images."""
        return apply_temperature(self.logits(batch, batch_size), self.temperature)

    def heatmap(self, class_maps: np.ndarray, class_index: int) -> Heatmap:
        """Grad-CAM at the last block for one image's class maps (from `forward`)."""
        return cam_heatmap(class_maps, class_index, self.input_size)

    def predictions_from_probabilities(self, probabilities: np.ndarray,
                                       ood_scores: np.ndarray | None = None) -> list[Prediction]:
        """One Prediction per row, with the guard's verdict where its scores are given."""
        flags = self.guard.flags(ood_scores) if ood_scores is not None and self.guard else None
        out = []
        for number, row in enumerate(probabilities):
            index = int(np.argmax(row))
            out.append(Prediction(
                row, index, self.classes[index], self.display_names[index], float(row[index]),
                None if flags is None else bool(flags[number]),
                None if flags is None else float(ood_scores[number])))
        return out

    def ood_scores(self, output: ForwardPass) -> np.ndarray | None:
        """The guard's (N,) scores for a forward pass, or None without a guard."""
        return self.guard.scores(output.logits, output.pooled) if self.guard else None

    def predictions(self, output: ForwardPass) -> list[Prediction]:
        """Calibrated predictions, with the out-of-domain verdict, from one forward pass."""
        return self.predictions_from_probabilities(
            apply_temperature(output.logits, self.temperature), self.ood_scores(output))

    def classify_arrays(self, batch: np.ndarray, batch_size: int = 32) -> list[Prediction]:
        """Classify already preprocessed images (N, size, size, 3) in [-1, 1]."""
        return self.predictions(self.forward(batch, batch_size))

    def classify_view(self, image_rgb: np.ndarray) -> Prediction:
        """Classify one (h, w, 3) uint8 image already cropped as this model looks at it (the
        image shown on Classify), e.g. after a what-if perturbation."""
        from PIL import Image

        from hematovision_core.preprocessing import to_model_input

        pixels = to_model_input(Image.fromarray(np.asarray(image_rgb, np.uint8)), self.input_size)
        return self.classify_arrays(pixels[None])[0]

    def classify(self, images: Sequence[ImageSource], batch_size: int = 32) -> list[Prediction]:
        """Classify image files, bytes, PIL images or uint8 arrays, in batches.

        Raises:
            ImageError: for the first input that is not a usable image (see `preprocessing`).
        """
        batch = np.stack([self.prepare(image) for image in images]) if images \
            else np.zeros((0, self.input_size, self.input_size, 3), np.float32)
        return self.classify_arrays(batch, batch_size)
