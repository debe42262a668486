"""Inference: `Classifier.load(folder).infer(sources)` -> kept indices, logits, calibrated
probabilities (and pooled features); `classify(images)` -> calibrated `Prediction`s.

The forward pass runs on ONNX Runtime (`runtime`), never on TensorFlow, so the dashboard's
process does not import keras. Test-time augmentation and calibration happen here, in numpy.
`Classifier.infer` is the one path from image files to the model's outputs: the Classify page's
batches, evaluation, the explorer's split predictions and the quiz all go through it, so pixel
scaling, cropping and TTA cannot differ between them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from hematovision_core.calibration import apply_temperature
from hematovision_core.heatmap import Heatmap, cam_heatmap
from hematovision_core.model_io import ModelFolder, ModelFolderError
from hematovision_core.ood import load_guard
from hematovision_core.preprocessing import (ImageError, ImageSource, load_image, model_view,
                                             preprocess, resize_for_model, scale_pixels)
from hematovision_core.runtime import ForwardPass, OnnxModel

Progress = Callable[[int, int], None]  # (sources done, sources in all)
# Changes a decoded image before the model's crop, as a lab's camera or stain would (perturb.py):
# uint8 (h, w, 3) -> uint8 (h, w, 3).
Perturbation = Callable[[np.ndarray], np.ndarray]


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


@dataclass(frozen=True, eq=False)
class Inference:
    """The model's outputs for a list of image sources (`Classifier.infer`).

    Arrays are row-aligned with `kept`; a source that could not be read is in `skipped` instead.
    """

    kept: np.ndarray  # (M,) int64: indices into the sources that decoded, in input order
    skipped: tuple[tuple[int, str], ...]  # (index, reason for the user) of each other source
    logits: np.ndarray  # (M, num_classes) float32, uncalibrated, averaged over the TTA views
    probabilities: np.ndarray  # (M, num_classes) float32, calibrated with the model's temperature
    ood_scores: np.ndarray | None  # (M,) the out-of-domain guard's scores; None without a guard
    pooled: np.ndarray | None = None  # (M, 1280) float32 pooled features, when asked for
    class_maps: np.ndarray | None = None  # (M, h, w, num_classes) of each image as given, when
    # inputs are asked for: the last-block heatmap of any class without a second pass
    views: tuple[Image.Image, ...] | None = None  # RGB images the model looked at (cropped as
    # in training, full resolution), when inputs are asked for
    inputs: np.ndarray | None = None  # (M, size, size, 3) uint8: `views` resized, before scaling


class Classifier:
    """A trained model folder served by ONNX Runtime, plus its metadata."""

    def __init__(self, runtime: OnnxModel, metadata: dict | ModelFolder,
                 folder: Path | None = None):
        self.runtime = runtime
        if not isinstance(metadata, ModelFolder):  # metadata built in memory (tests, training)
            metadata = ModelFolder.from_metadata(metadata, folder)
        self.model_folder = metadata  # what model.json says: dataset, manifest, card facts
        self.metadata = metadata.metadata
        self.folder = Path(folder) if folder is not None else metadata.path
        self.classes: list[str] = list(metadata.classes)
        self.display_names: list[str] = list(metadata.display_names)
        self.input_size = metadata.input_size
        self.temperature = metadata.temperature
        self.crop = metadata.crop  # "white-cell": look at the white cell of a smear
        # "dihedral": average logits over the 8 symmetries of the square (costs 8 forward passes).
        self.tta = metadata.tta
        self.views = metadata.views  # forward passes per image
        self.guard = load_guard(self.folder, self.metadata)  # None: no out-of-domain guard

    @property
    def name(self) -> str:
        return self.model_folder.name

    @classmethod
    def load(cls, folder: str | Path) -> "Classifier":
        """Load a model folder, refusing one whose files are missing or do not match."""
        folder = Path(folder)
        model_folder = ModelFolder.read(folder)
        runtime = OnnxModel.load(folder)
        if runtime.num_classes != len(model_folder.classes):
            raise ModelFolderError(
                f"{folder}: the model has {runtime.num_classes} outputs but model.json lists "
                f"{len(model_folder.classes)} classes."
            )
        if runtime.input_size != model_folder.input_size:
            raise ModelFolderError(f"{folder}: the model's input size differs from model.json.")
        return cls(runtime, model_folder, folder)

    def view(self, source: ImageSource, perturb: Perturbation | None = None) -> Image.Image:
        """The RGB image this model looks at (cropped as in training): show it with heatmaps.
        `perturb` changes the decoded image before the crop."""
        if perturb is not None:  # the changed image is checked again: it may be blank now
            source = perturb(np.asarray(load_image(source)))
        return model_view(source, self.crop)

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Any image source -> this model's input, float32 (size, size, 3) in [-1, 1]."""
        return preprocess(source, self.input_size, self.crop)

    def warm_up(self) -> None:
        """Run the forward pass once so the first user does not pay for ONNX Runtime's set-up
        (`OnnxModel.warm_up`)."""
        self.runtime.warm_up()

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
        return ForwardPass.concatenate(parts)

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
        inference = self.infer(images, batch_size=batch_size, skip_unreadable=False)
        return self.predictions_from_probabilities(inference.probabilities, inference.ood_scores)

    def infer(self, sources: Sequence[ImageSource], *, features: bool = False,
              inputs: bool = False, perturb: Perturbation | None = None,
              skip_unreadable: bool = True, batch_size: int = 32, decode_threads: int = 0,
              progress: Progress | None = None) -> Inference:
        """The one inference path: image sources -> kept indices, logits, calibrated
        probabilities and out-of-domain scores, batch by batch.

        Args:
            sources: paths, bytes, file-like objects, PIL images or uint8 (h, w, 3) arrays; each
                is decoded, checked, cropped as in training, resized and scaled (`preprocessing`).
            features: also return the (M, 1280) pooled features (the explorer's map).
            inputs: also return what the model saw (`views`, `inputs`) and the class maps.
            perturb: change each decoded image before the crop (evaluation's robustness runs).
            skip_unreadable: skip a source that is not a usable image (`ImageError`) or not a
                readable file (`OSError`), giving the reason; False: raise it.
            batch_size: images per forward pass, TTA views included (a dihedral model runs
                batch_size / 8 images at a time: as much memory as without TTA).
            decode_threads: decode with this many threads, the next batch while the model runs
                the current one (0: decode in the calling thread).
            progress: called with (sources done, sources in all) after each batch.
        """
        sources = list(sources)
        per_pass = max(1, batch_size // self.views)  # images per forward pass
        kept, skipped, views, uint8_inputs = [], [], [], []
        outputs: list[ForwardPass] = []
        scores: list[np.ndarray] = []
        for start, decoded in self._decoded_batches(sources, per_pass, perturb, skip_unreadable,
                                                    decode_threads):
            good = []
            for offset, (view, pixels, reason) in enumerate(decoded):
                if reason is not None:
                    skipped.append((start + offset, reason))
                    continue
                good.append(offset)
                kept.append(start + offset)
                if inputs:
                    views.append(view)
                    uint8_inputs.append(pixels)
            if good:
                # (n, size, size, 3) float32 in [-1, 1]; one runtime call of n * views images
                output = self.forward(scale_pixels(np.stack([decoded[i][1] for i in good])),
                                      batch_size)
                outputs.append(ForwardPass(output.logits, output.pooled if features else None,
                                           output.class_maps if inputs else None))
                if self.guard is not None:  # per batch, as `ood_scores` was always called
                    scores.append(self.ood_scores(output))
            if progress is not None:
                progress(min(start + per_pass, len(sources)), len(sources))
        logits = (np.concatenate([o.logits for o in outputs]) if outputs
                  else np.zeros((0, len(self.classes)), np.float32))
        return Inference(
            kept=np.array(kept, dtype=np.int64), skipped=tuple(skipped), logits=logits,
            probabilities=apply_temperature(logits, self.temperature),
            ood_scores=(np.concatenate(scores) if scores else np.zeros(0))
            if self.guard is not None else None,
            pooled=_concatenate([o.pooled for o in outputs], (0, 1280)) if features else None,
            class_maps=_concatenate([o.class_maps for o in outputs], (0, 1, 1, len(self.classes)))
            if inputs else None,
            views=tuple(views) if inputs else None,
            inputs=(np.stack(uint8_inputs) if uint8_inputs
                    else np.zeros((0, self.input_size, self.input_size, 3), np.uint8))
            if inputs else None,
        )

    def _decode(self, source: ImageSource, perturb: Perturbation | None, skip_unreadable: bool):
        """(view, uint8 (size, size, 3) model input, None), or (None, None, reason)."""
        try:
            view = self.view(source, perturb)
            return view, resize_for_model(view, self.input_size), None
        except (ImageError, OSError) as error:
            if not skip_unreadable:
                raise
            return None, None, str(error)

    def _decoded_batches(self, sources: list, per_pass: int, perturb, skip_unreadable: bool,
                         threads: int) -> Iterator[tuple[int, list]]:
        """(start index, decoded sources) per batch; with threads, the next batch is decoded in
        the background while the caller runs the model on this one."""
        starts = range(0, len(sources), per_pass)

        def decode(source):
            return self._decode(source, perturb, skip_unreadable)

        if threads <= 0:
            for start in starts:
                yield start, [decode(source) for source in sources[start:start + per_pass]]
            return
        with ThreadPoolExecutor(threads) as pool, ThreadPoolExecutor(1) as loader:
            def decode_batch(start: int) -> list:
                return list(pool.map(decode, sources[start:start + per_pass]))

            pending = loader.submit(decode_batch, starts[0]) if starts else None
            for number, start in enumerate(starts):
                decoded = pending.result()
                if number + 1 < len(starts):
                    pending = loader.submit(decode_batch, starts[number + 1])
                yield start, decoded


def _concatenate(parts: list, empty_shape: tuple, dtype=np.float32) -> np.ndarray:
    """Concatenate row blocks, or an empty array of `empty_shape` when there are none."""
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype)
