"""The images a quiz may ask about, and the model's answers on them.

Questions come only from images the model did not train on: the validation and test rows of the
model's split manifest (`split.csv` in its folder), or a folder it never saw (`folder_pool`;
`unseen_datasets` lists those: not the model's own data, nor that of a model it started from).

The "typical" and "hard" difficulties need the model's prediction on every candidate. They come
from the dataset explorer's cache (`split_predictions`): the validation and test splits are
classified once per model and data folder (about a minute for PBC's 4,600 images on 2 cores) and
both pages reuse the result. A folder the model never saw may be large (PBC: 15,385 images), so
there the model classifies a fixed sample of each class instead (`predict_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hematovision_core.data import class_folders, discover, read_manifest
from hematovision_core.model_io import METADATA_FILE, ModelFolder, read_json

QUIZ_SPLITS = ("val", "test")  # never "train": students must not be asked about training images
DEFAULT_DATASET = "pbc"

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclass(frozen=True)
class Candidate:
    image_id: str  # path relative to the data folder, posix ("pbc/basophil/BA_1.jpg"): stored
    path: Path  # where the image is on this machine
    truth: str  # true class name, as in the model's classes
    predicted: str | None = None  # the model's answer; None until classified
    confidence: float | None = None  # calibrated probability of `predicted`
    second: str | None = None  # the model's second choice
    second_probability: float | None = None

    @property
    def model_correct(self) -> bool | None:
        """Whether the model's answer is the truth (None before it is classified)."""
        return None if self.predicted is None else self.predicted == self.truth


def manifest_pool(model: ModelFolder, data_dir: str | Path) -> list[Candidate]:
    """Validation and test images of the model's split manifest that exist on this machine."""
    manifest = model.manifest
    if manifest is None:
        return []
    dataset = model.dataset or DEFAULT_DATASET
    root = Path(data_dir) / dataset
    classes = set(model.classes)
    pool = []
    for record in read_manifest(manifest, root):
        if record.split not in QUIZ_SPLITS or record.label not in classes:
            continue
        if record.path.is_file():
            relative = Path(record.path).relative_to(root).as_posix()
            pool.append(Candidate(f"{dataset}/{relative}", Path(record.path), record.label))
    return sorted(pool, key=lambda c: c.image_id)


def folder_pool(root: str | Path, data_dir: str | Path, classes: Sequence[str]) -> list[Candidate]:
    """Every image of a folder the model never saw, in the model's classes."""
    root, data_dir = Path(root).resolve(), Path(data_dir).resolve()
    dataset = discover(root, verify=False)
    pool = []
    for record in dataset.records:
        if record.label in classes:
            image_id = (record.path.relative_to(data_dir).as_posix()
                        if record.path.is_relative_to(data_dir) else record.path.as_posix())
            pool.append(Candidate(image_id, record.path, record.label))
    return sorted(pool, key=lambda c: c.image_id)


def trained_on(model: ModelFolder) -> set[str]:
    """Dataset folders (relative to the data folder) whose images trained this model: its own,
    and those of the model it started from (`train --init-from`, a sibling model folder)."""
    seen: set[str] = set()
    for _ in range(8):  # a chain of --init-from models; a cycle must not loop forever
        if model.dataset:
            seen.add(Path(model.dataset).as_posix())
        if not model.init_from or model.path is None:
            break
        folder = model.path.parent / Path(model.init_from).name
        try:  # only its data is needed: no checksum of its model file on every page run
            model = ModelFolder.from_metadata(read_json(folder / METADATA_FILE), folder)
        except (OSError, ValueError, KeyError):
            break  # that model is not shipped here: nothing more is known
    return seen


def _overlaps(folder: str, other: str) -> bool:
    """True if one dataset folder is, holds or lies inside the other ("." holds everything)."""
    a, b = Path(folder).parts, Path(other).parts
    return a[: len(b)] == b or b[: len(a)] == a


def unseen_datasets(model: ModelFolder, datasets: Sequence[str],
                    data_dir: str | Path) -> list[str]:
    """The dataset folders a quiz may draw from besides the model's own split: none of their
    images trained the model, and at least one of their classes is one of the model's."""
    seen = trained_on(model)
    classes = set(model.classes)
    return [d for d in datasets
            if not any(_overlaps(d, s) for s in seen)
            and class_folders(Path(data_dir) / d) & classes]


def image_path(data_dir: str | Path, image_id: str) -> Path | None:
    """The file of a stored image id, or None if it is not a file inside the data folder."""
    relative = Path(image_id)
    if relative.is_absolute() or ".." in relative.parts:  # ids come from the database: stay inside
        return None
    path = Path(data_dir) / relative
    return path if path.is_file() else None


def with_prediction(candidate: Candidate, probabilities: np.ndarray, classes: Sequence[str]) -> Candidate:
    """A copy of `candidate` carrying the model's answer, confidence and second choice."""
    order = np.argsort(-np.asarray(probabilities))
    first, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    return replace(candidate, predicted=classes[first], confidence=float(probabilities[first]),
                   second=classes[second], second_probability=float(probabilities[second]))


def predict_candidates(classifier, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Classify a few candidates now (no cache); for the one question on screen."""
    if not candidates:
        return []
    inference = classifier.infer([c.path for c in candidates], skip_unreadable=False)
    return [with_prediction(c, p, classifier.classes)
            for c, p in zip(candidates, inference.probabilities)]  # (num_classes,) each


def predicted_pool(classifier, pool: Sequence[Candidate], cache_dir: str | Path,
                   data_dir: str | Path, progress: Progress | None = None) -> list[Candidate]:
    """`pool` with the model's prediction on each image; unreadable images are left out.

    The predictions are the dataset explorer's: computed once per model, data folder and split
    (`split_predictions`), cached on disk and shared by both pages.
    """
    from hematovision_core import explorer, split_predictions

    dataset = classifier.model_folder.dataset or DEFAULT_DATASET
    sources = [explorer.split_source(Path(data_dir), classifier, dataset, split)
               for split in QUIZ_SPLITS if split in explorer.split_options(classifier, dataset)]
    total, done = sum(len(s.paths) for s in sources), 0
    probabilities: dict[Path, np.ndarray] = {}
    for source in sources:
        report = None if progress is None else (lambda n, _, base=done: progress(base + n, total))
        predictions = split_predictions.predictions_for(Path(cache_dir), classifier, source, report)
        for relative, row in zip(predictions.paths, predictions.probabilities):
            probabilities[(Path(source.root) / relative).resolve()] = row
        done += len(source.paths)
    return [with_prediction(c, probabilities[key], classifier.classes) for c in pool
            if (key := Path(c.path).resolve()) in probabilities]


def sample_per_class(pool: Sequence[Candidate], per_class: int, seed: int = 0) -> list[Candidate]:
    """At most `per_class` candidates of each class, the same ones on every call."""
    rng = np.random.RandomState(seed)
    by_class: dict[str, list[Candidate]] = {}
    for candidate in sorted(pool, key=lambda c: c.image_id):
        by_class.setdefault(candidate.truth, []).append(candidate)
    chosen = []
    for label in sorted(by_class):
        group = by_class[label]
        picks = rng.permutation(len(group))[:per_class]
        chosen += [group[i] for i in sorted(picks)]
    return chosen


def predict_sample(classifier, pool: Sequence[Candidate], per_class: int = 50,
                   progress: Progress | None = None) -> list[Candidate]:
    """The model's answers on a fixed sample of a folder pool; unreadable images are left out.

    For a folder the model never saw, where classifying every image could take minutes; the
    sample is the same for every student, so a quiz code still means the same questions.
    """
    from hematovision_core.evaluate import record_probabilities

    kept, probabilities, _ = record_probabilities(classifier, sample_per_class(pool, per_class),
                                                  progress=progress)
    return [with_prediction(c, p, classifier.classes) for c, p in zip(kept, probabilities)]


@dataclass(frozen=True, eq=False)
class ModelAnswer:
    candidate: Candidate  # with the model's prediction filled in
    image: np.ndarray  # uint8 (size, size, 3): the image as the model saw it
    overlay: np.ndarray  # uint8 (size, size, 3): Grad-CAM of the model's answer over `image`


def answer_with_heatmap(classifier, candidate: Candidate, opacity: float = 0.45) -> ModelAnswer:
    """The model's answer on one image and where it looked (Grad-CAM of its chosen class), from
    one forward pass."""
    from hematovision_core.heatmap import overlay

    # Cropped as the model was trained (smear models look at the white cell); raises ImageError
    inference = classifier.infer([candidate.path], inputs=True, skip_unreadable=False)
    pixels = inference.inputs[0]  # uint8 (S, S, 3)
    predicted = with_prediction(candidate, inference.probabilities[0], classifier.classes)
    heatmap = classifier.heatmap(inference.class_maps[0],
                                 classifier.classes.index(predicted.predicted))
    return ModelAnswer(predicted, pixels, overlay(pixels, heatmap, opacity=opacity))
