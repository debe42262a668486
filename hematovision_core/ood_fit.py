"""Fit a model folder's out-of-domain guard from its own images, and measure it.

    python -m hematovision_core.ood --model models/pbc-8class --outside blood-cells/TRAIN
    python -m hematovision_core.ood --model models/blood-cells-4class --outside pbc \
        --outside-per-class 100 --val-copies 8

The Gaussians are fitted on the training split's pooled features (split.csv), both scores are
compared by how well they separate the validation images from an outside folder (AUROC), and
the threshold is set on validation images only. A smear model has 28 validation smears, too few
for a 95th percentile, so `--val-copies K` adds K rotated/shifted copies of each validation smear
(as the public TEST folder was made): 28 x (1 + 8) = 252 validation views. The test split is then
scored for the record and never chooses anything. Features come from the explorer's cache of
split predictions (var/cache/explorer), computing what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import numpy as np

from hematovision_core import ood
from hematovision_core.split_predictions import SplitSource, predictions_for

log = logging.getLogger("hematovision.ood")


def manifest_source(root: Path, manifest: Path, split: str) -> SplitSource:
    """One split of the model's manifest, keyed as the explorer keys it (so caches are shared)."""
    from hematovision_core.explorer import _read_manifest_rows

    rows = [row for row in _read_manifest_rows(manifest) if row[2] == split]
    return SplitSource(Path(root).resolve(), split, tuple(r[0] for r in rows),
                       tuple(r[1] for r in rows), hashlib.sha256(manifest.read_bytes()).hexdigest())


def folder_sample(root: Path, per_class: int | None, seed: int = 0) -> SplitSource:
    """Every image of a folder, or `per_class` of each class drawn at random (reproducibly)."""
    from hematovision_core.explorer import ALL, list_images

    paths, labels, fingerprint = list_images(root)
    if per_class:
        rng = np.random.default_rng(seed)
        chosen = []
        for label in sorted(set(labels)):
            rows = [i for i, own in enumerate(labels) if own == label]
            chosen += sorted(rng.permutation(rows)[:per_class].tolist())
        chosen.sort()
        paths, labels = [paths[i] for i in chosen], [labels[i] for i in chosen]
        fingerprint = hashlib.sha256(f"{fingerprint}:{per_class}:{seed}".encode()).hexdigest()
    split = ALL if not per_class else f"sample-{per_class}"
    return SplitSource(Path(root).resolve(), split, tuple(paths), tuple(labels), fingerprint)


def split_outputs(cache_dir: Path, classifier, source: SplitSource):
    """(logits (N, C), pooled (N, 1280) float32, labels (N,) lower-case) for a split."""
    predictions = predictions_for(cache_dir, classifier, source)
    return (predictions.logits, np.asarray(predictions.features(), dtype=np.float32),
            np.array(predictions.labels))


def copies_outputs(classifier, paths, copies: int, seed: int = 0):
    """Logits and pooled features of `copies` random rotated/shifted copies of each image (as the
    smear model's TEST folder was made), computed in memory. Returns (logits, pooled, index of
    the source image per row)."""
    from hematovision_core.augment import random_field_transform
    from hematovision_core.preprocessing import load_image

    rng = np.random.default_rng(seed)
    fields, sources = [], []  # uint8 (h, w, 3) copies, then the one inference path
    for number, path in enumerate(paths):
        pixels = np.asarray(load_image(path))
        for _ in range(copies):
            fields.append(random_field_transform(pixels, rng))
            sources.append(number)
    inference = classifier.infer(fields, features=True, skip_unreadable=False)
    return inference.logits, inference.pooled, np.array(sources)


def fit_model_guard(classifier, data_root: Path, cache_dir: Path, outside: Path | None = None,
                    outside_per_class: int | None = None, val_copies: int = 0,
                    false_flag_rate: float = ood.FALSE_FLAG_RATE,
                    outside_name: str | None = None) -> tuple[ood.DomainGuard, dict]:
    """Fit the guard of a loaded model from its split manifest; returns it and its record."""
    manifest = classifier.model_folder.manifest
    if manifest is None:
        raise ValueError(f"{classifier.folder} has no split.csv: the guard needs its train split.")
    index_of = {c: i for i, c in enumerate(classifier.classes)}
    train_logits, train_pooled, train_labels = split_outputs(
        cache_dir, classifier, manifest_source(data_root, manifest, "train"))
    whitening, means, shrinkage = ood.fit_gaussians(
        train_pooled, [index_of[label] for label in train_labels], len(classifier.classes))
    candidates = {name: ood.DomainGuard(name, 0.0, whitening, means) for name in ood.SCORES}

    val_source = manifest_source(data_root, manifest, "val")
    val_logits, val_pooled, _ = split_outputs(cache_dir, classifier, val_source)
    if val_copies:
        copy_logits, copy_pooled, _ = copies_outputs(
            classifier, [val_source.root / p for p in val_source.paths], val_copies)
        val_logits = np.concatenate([val_logits, copy_logits])
        val_pooled = np.concatenate([val_pooled, copy_pooled])
    val_scores = {name: guard.scores(val_logits, val_pooled) for name, guard in candidates.items()}
    record = {"fit_on": f"{len(train_labels)} training images' pooled features (split.csv train)",
              "threshold_on": f"{len(val_logits)} validation images"
                              + (f" ({len(val_source.paths)} smears and {val_copies} rotated/"
                                 "shifted copies of each)" if val_copies else ""),
              "false_flag_rate": false_flag_rate, "shrinkage": round(shrinkage, 4),
              "auroc": {}, "flag_rates": {}}
    chosen = "mahalanobis"  # without an outside folder: the score that sees the whole feature space
    if outside is not None:
        outside_logits, outside_pooled, _ = split_outputs(
            cache_dir, classifier, folder_sample(outside, outside_per_class))
        outside_scores = {name: guard.scores(outside_logits, outside_pooled)
                          for name, guard in candidates.items()}
        record["outside"] = f"{outside_name or outside.name}: {len(outside_logits)} images"
        record["auroc"] = {name: round(ood.auroc(val_scores[name], outside_scores[name]), 4)
                           for name in ood.SCORES}
        chosen = max(ood.SCORES, key=lambda name: record["auroc"][name])
    threshold = ood.threshold_for(val_scores[chosen], false_flag_rate)
    guard = ood.DomainGuard(chosen, threshold, whitening, means)
    record["flag_rates"]["validation"] = round(float(guard.flags(val_scores[chosen]).mean()), 4)
    if outside is not None:
        record["flag_rates"]["outside"] = round(float(guard.flags(outside_scores[chosen]).mean()), 4)
    # The test split is only measured, after everything above is fixed.
    test_source = manifest_source(data_root, manifest, "test")
    if test_source.paths:
        test_logits, test_pooled, _ = split_outputs(cache_dir, classifier, test_source)
        record["flag_rates"]["test"] = round(float(
            guard.flags(guard.scores(test_logits, test_pooled)).mean()), 4)
        if val_copies:  # rotated/shifted copies of the test smears: how the public TEST is made
            copy_logits, copy_pooled, _ = copies_outputs(
                classifier, [test_source.root / p for p in test_source.paths], val_copies, seed=2)
            record["flag_rates"]["test_copies"] = round(float(
                guard.flags(guard.scores(copy_logits, copy_pooled)).mean()), 4)
    return guard, record


def main(argv=None) -> int:
    from hematovision_core.config import Settings
    from hematovision_core.predict import Classifier

    p = argparse.ArgumentParser(prog="python -m hematovision_core.ood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder with split.csv")
    p.add_argument("--data", type=Path, help="the model's dataset folder "
                   "(default: HEMATOVISION_DATA / model.json data.dataset)")
    p.add_argument("--outside", help="a folder of other images (e.g. blood-cells/TRAIN, relative "
                   "to HEMATOVISION_DATA or absolute) to choose the score by AUROC")
    p.add_argument("--outside-per-class", type=int, help="sample this many outside images a class")
    p.add_argument("--val-copies", type=int, default=0,
                   help="rotated/shifted copies of each validation image for the threshold")
    p.add_argument("--false-flag-rate", type=float, default=ood.FALSE_FLAG_RATE)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    classifier = Classifier.load(args.model)
    data_root = args.data or settings.data_dir / (classifier.model_folder.dataset or "")
    outside = None if not args.outside else (
        Path(args.outside) if Path(args.outside).is_absolute() else settings.data_dir / args.outside)
    try:
        guard, record = fit_model_guard(classifier, data_root, settings.cache_dir, outside,
                                        args.outside_per_class, args.val_copies,
                                        args.false_flag_rate, args.outside)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ood.save_guard(args.model, guard, record)
    print(f"{args.model}: score {guard.score_name}, threshold {guard.threshold:.4g}; "
          f"AUROC {record['auroc']}; flag rates {record['flag_rates']}")
    return 0
