"""Transfer Learning Lab: train a new head on k examples per class, live, and score it.

A frozen network's pooled features (`transfer_features`) are fixed vectors, so a new head is a
softmax regression, trained in numpy in well under a second. Comparing ImageNet, random and
fine-tuned features with the same head shows what the pretrained weights are worth.

Draws are nested: each class's images are shuffled once with the seed and the k-shot head
learns from the first k of each class, so a larger k adds examples. Every head is scored on the
same images, those outside the largest draw, so points of one curve are comparable. A class
never gives more than half its images to training (a class of 16 images trains on at most 8).

Command line (ImageNet and random features; `--model` adds the fine-tuned model's):
    python -m hematovision_core.transfer_lab --data DIR --shots 1,5,20 --json OUT [--seed S]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from hematovision_core.feature_map import FeatureMap, pca_2d
from hematovision_core.softmax_head import train_head

if TYPE_CHECKING:
    from hematovision_core.transfer_features import LabFeatures

log = logging.getLogger(__name__)

CURVE_SHOTS = (1, 2, 5, 10, 20, 50)  # k of the learning curve
MAX_SHOTS = 50
DEFAULT_SEED = 0


@dataclass(frozen=True, eq=False)
class ShotDraw:
    """Which images train each k-shot head and which score them all."""

    seed: int
    shots: tuple[int, ...]  # the k values, ascending
    train: dict[int, np.ndarray]  # k -> indices into the image list, up to k per class
    evaluate: np.ndarray  # (n_eval,) indices outside the largest draw
    capped: dict[str, int]  # class -> the most examples it can give, where that is under max k


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One head's score on the evaluation images."""

    source: str  # feature source name
    shots: int  # k asked for
    n_train: int  # examples it learned from (k per class, fewer for capped classes)
    accuracy: float  # fraction right
    confusion: np.ndarray  # (C, C) int: rows true class, columns predicted
    train_indices: np.ndarray  # into the image list


def parse_shots(text: str) -> tuple[int, ...]:
    """"1,5,20" -> (1, 5, 20), sorted and checked (each k from 1 to MAX_SHOTS)."""
    try:
        shots = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--shots must be whole numbers separated by commas, got {text!r}")
    if not shots or shots[0] < 1 or shots[-1] > MAX_SHOTS:
        raise ValueError(f"each k must be from 1 to {MAX_SHOTS}, got {text!r}")
    return tuple(shots)


def draw_shots(labels: Sequence[str], shots: Sequence[int], seed: int = DEFAULT_SEED) -> ShotDraw:
    """Seeded nested draws of k examples per class, and the images left to score them on."""
    shots = tuple(sorted(set(int(k) for k in shots)))
    if not shots or shots[0] < 1:
        raise ValueError(f"k must be at least 1, got {shots}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    orders, limits = {}, {}
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        orders[label] = rng.permutation(members)  # this class's draw order
        limits[label] = max(1, len(members) // 2)  # half for training at most
    train = {k: np.sort(np.concatenate([order[:min(k, limits[label])]
                                        for label, order in orders.items()]))
             for k in shots}
    largest = shots[-1]
    evaluate = np.sort(np.concatenate([order[min(largest, limits[label]):]
                                       for label, order in orders.items()]))
    capped = {label: limit for label, limit in limits.items() if limit < largest}
    return ShotDraw(seed, shots, train, evaluate, capped)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: rows true class, columns predicted."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def evaluate_shots(source: str, features: np.ndarray, targets: np.ndarray, num_classes: int,
                   draw: ShotDraw, shots: int) -> Evaluation:
    """Train the k-shot head of a draw and score it on the draw's evaluation images."""
    chosen = draw.train[shots]
    head = train_head(features[chosen], targets[chosen], num_classes)
    truth = targets[draw.evaluate]
    predicted = head.predict(features[draw.evaluate])
    accuracy = float((predicted == truth).mean()) if len(truth) else float("nan")
    return Evaluation(source, shots, len(chosen), accuracy,
                      confusion_matrix(truth, predicted, num_classes), chosen)


def learning_curve(source: str, features: np.ndarray, targets: np.ndarray, num_classes: int,
                   draw: ShotDraw) -> tuple[Evaluation, ...]:
    """One evaluation per k of the draw, same evaluation images for all."""
    return tuple(evaluate_shots(source, features, targets, num_classes, draw, k)
                 for k in draw.shots)


def class_targets(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Class names -> (N,) indices into `classes`."""
    index = {label: number for number, label in enumerate(classes)}
    return np.array([index[label] for label in labels], np.int64)


@dataclass(frozen=True, eq=False)
class LabRun:
    """Every source's heads for one draw: what the lab page shows."""

    classes: tuple[str, ...]
    paths: tuple[str, ...]  # images usable in every source, row order of the draw's indices
    labels: tuple[str, ...]
    draw: ShotDraw
    curves: dict[str, tuple[Evaluation, ...]]  # source -> one evaluation per k of the draw

    def at(self, source: str, shots: int) -> Evaluation:
        """The evaluation of one source's k-shot head."""
        return next(e for e in self.curves[source] if e.shots == shots)


def run_lab(features: Mapping[str, "LabFeatures"], shots: Sequence[int],
            seed: int = DEFAULT_SEED) -> LabRun:
    """Draw k examples per class once and train every source's head on the same images."""
    if not features:
        raise ValueError("no feature source to train on")
    common = set.intersection(*(set(f.paths) for f in features.values()))
    first = next(iter(features.values()))
    rows = [i for i, path in enumerate(first.paths) if path in common]
    paths = tuple(first.paths[i] for i in rows)
    labels = tuple(first.labels[i] for i in rows)
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise ValueError("fewer than 2 classes have readable images")
    targets = class_targets(labels, classes)
    draw = draw_shots(labels, shots, seed)
    curves = {}
    for name, found in features.items():
        position = {path: i for i, path in enumerate(found.paths)}
        aligned = found.features[[position[path] for path in paths]]  # (N, 1280), draw's rows
        curves[name] = learning_curve(name, aligned, targets, len(classes), draw)
    return LabRun(classes, paths, labels, draw, curves)


def feature_space(features: np.ndarray) -> FeatureMap:
    """A 2-D map (PCA) of one source's features, to colour by class."""
    return pca_2d(features)


# --- command line ---------------------------------------------------------------------------------

def _keras_backend(source, crop: str):
    """An in-process backend for `transfer_features.compute` (the CLI may import TensorFlow)."""
    from hematovision_core import transfer_features as tf_features

    model = tf_features.pooling_model(tf_features.build_network(source))
    return lambda files: tf_features.keras_pooled(model, files, crop, source.input_size)


def _bar_progress(bar, name: str):
    """A progress callback that moves a tqdm bar shared by all sources."""
    seen = [0]  # images of this source already counted

    def progress(done: int, total: int) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(done - seen[0])
        seen[0] = done
    return progress


def run_cli(data: Path, shots: tuple[int, ...], seed: int, cache_dir: Path, weights: str | None,
            model: str | None, crop: str, per_class: int | None) -> dict:
    """Features (cached), then one head per source and k; returns the JSON written."""
    from tqdm import tqdm

    from hematovision_core import transfer_features as tf_features

    images = tf_features.list_lab_images(data, per_class, seed)
    sources = [tf_features.imagenet_source(weights), tf_features.FeatureSource("random")]
    if model:
        from hematovision_core.model_io import read_metadata

        sources.append(tf_features.finetuned_source(model, read_metadata(model)))
    bar = tqdm(total=len(images.paths) * len(sources), unit="img", desc="features")
    result: dict = {}
    found: dict = {}
    for source in sources:
        cached = tf_features.load_cached(cache_dir, source, images, crop)
        if cached is None:
            if source.name == "finetuned":
                from hematovision_core.predict import Classifier

                classifier = Classifier.load(source.weights)
                backend = lambda files, c=classifier: tf_features.onnx_pooled(c, files)  # noqa
            else:
                backend = _keras_backend(source, crop)
            cached = tf_features.compute(images, source, backend, _bar_progress(bar, source.name))
            tf_features.save(cache_dir, source, images, crop, cached)
        else:
            bar.update(len(images.paths))
        found[source.name] = cached
    bar.close()
    if any(found[name].paths != found["imagenet"].paths for name in found):
        raise ValueError("the feature sources disagree on which images could be read")
    lab = run_lab(found, shots, seed)
    draw = lab.draw
    for name, curve in lab.curves.items():
        result[name] = {str(e.shots): round(e.accuracy, 4) for e in curve}
    result["n_eval"] = int(len(draw.evaluate))
    result["n_train"] = {str(k): int(len(draw.train[k])) for k in shots}
    result["n_images"] = len(lab.paths)
    result["skipped_unreadable"] = len(found["imagenet"].skipped)
    result["classes"] = list(lab.classes)
    result["seed"] = seed
    result["capped_classes"] = draw.capped
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hematovision_core.transfer_lab",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder of class folders")
    parser.add_argument("--shots", default="1,5,20", help="k values, e.g. 1,5,20 (1 to 50)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the accuracies")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--weights", help="ImageNet .h5 file (default: where Keras looks)")
    parser.add_argument("--model", help="also score a fine-tuned model folder's features")
    parser.add_argument("--crop", default="none", choices=["none", "white-cell"])
    parser.add_argument("--per-class", type=int, help="use a seeded sample of N images a class")
    parser.add_argument("--cache", type=Path, help="feature cache folder (default: var/cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    from hematovision_core.config import Settings

    started = time.perf_counter()
    try:
        shots = parse_shots(args.shots)
        result = run_cli(args.data, shots, args.seed, args.cache or Settings.from_env().cache_dir,
                         args.weights, args.model, args.crop, args.per_class)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    result["seconds"] = round(time.perf_counter() - started, 1)
    if result["skipped_unreadable"]:
        print(f"Skipped {result['skipped_unreadable']} unreadable file(s).", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in result if k in ("imagenet", "random", "finetuned",
                                                            "n_eval", "skipped_unreadable")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
