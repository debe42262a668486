"""K-fold cross-validation of a training recipe, for datasets too small for one validation split.

    python -m hematovision_core.crossval --data DIR --out var/cv/NAME [--folds 5] [train options]

blood-cells has 28 validation images: one run's validation accuracy moves by 10 points with the
luck of which smears land there, too much to choose a recipe by. Here the test split of the
usual split (same fractions and seed as training) stays untouched; the train + validation images
are cut into k stratified folds, and each fold is the validation split of one run trained on the
others, to the last epoch (`--select last`: the fold that scores a run never chooses its epoch).
Every development image is then scored by a model that never saw it. Prints and writes
<out>/crossval.json: accuracy, macro-F1, balanced accuracy, per-fold accuracy, the summed
confusion matrix, and each image's out-of-fold prediction (`predictions`), so that runs of
different recipes can be compared image by image.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np

from hematovision_core import data as datasets
from hematovision_core import train
from hematovision_core.metrics import balanced_accuracy, confusion_matrix, per_class_scores
from hematovision_core.model_io import record_metrics, write_json

log = logging.getLogger("hematovision.crossval")


def assign_folds(records, folds: int, seed: int) -> list[int]:
    """A fold number per record, stratified by class; byte-identical files share a fold."""
    rng = np.random.RandomState(seed)
    fold_of_digest: dict[str, int] = {}
    for label in sorted({r.label for r in records}):
        digests = sorted({r.digest for r in records if r.label == label} - set(fold_of_digest))
        start = rng.randint(folds)  # so small classes do not always fill fold 0 first
        for position, index in enumerate(rng.permutation(len(digests))):
            fold_of_digest[digests[index]] = (start + position) % folds
    return [fold_of_digest[r.digest] for r in records]


def fold_records(records, fold_numbers, fold: int):
    """The records with this fold as "val", the other development folds as "train"."""
    out = []
    for record, number in zip(records, fold_numbers):
        split = record.split if record.split == "test" else ("val" if number == fold else "train")
        out.append(datasets.ImageRecord(record.path, record.label, split, record.digest))
    return out


def out_of_fold_predictions(model_folder: Path, records, root: Path, fold: int) -> list[dict]:
    """The fold model's answer on each of its validation images (TTA and calibration included),
    with its uncalibrated logits (TTA averaged, as served), so that a temperature can be fit on
    every development image's out-of-fold answer afterwards (recalibrate.py --crossval)."""
    from hematovision_core.calibration import apply_temperature
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(model_folder)
    kept = [r for r in records if r.split == "val"]
    logits = train.served_logits(classifier, kept)
    probabilities = apply_temperature(logits, classifier.temperature)
    return [{"path": Path(r.path).relative_to(root).as_posix(), "fold": fold, "label": r.label,
             "predicted": classifier.classes[int(p.argmax())], "confidence": float(p.max()),
             "logits": [round(float(v), 5) for v in z]}
            for r, p, z in zip(kept, probabilities, logits)]


# What every fold's run changes in the recipe, unless the command line says otherwise: the fold
# that scores a run never chooses its epoch, and a fold model needs no out-of-domain guard.
FOLD_DEFAULTS = dict(select="last", skip_ood=True)


def fold_config(base: train.TrainConfig, fold: int) -> train.TrainConfig:
    """The recipe `base` trained on one fold's split: into <base.out>/fold-<fold>, from the fold's
    manifest there."""
    folder = base.out / f"fold-{fold}"
    return dataclasses.replace(base, out=folder, manifest=folder / "fold-split.csv")


def cross_validate(base: train.TrainConfig, folds: int) -> dict:
    """Train the recipe `base` once per fold (`fold_config`: base.out holds the fold models) and
    score every development image with the fold model that never saw it. Returns crossval.json's
    figures but training_options. (The command applies FOLD_DEFAULTS to `base`; a caller that
    builds its own config chooses.)"""
    dataset = datasets.discover(base.data)
    records = datasets.split_records(list(dataset.records), base.split, base.seed)
    development = [r for r in records if r.split != "test"]
    numbers = iter(assign_folds(development, folds, base.seed))
    fold_numbers = [next(numbers) if r.split != "test" else -1 for r in records]
    classes = list(dataset.classes)
    predictions = []
    for fold in range(folds):
        config = fold_config(base, fold)
        fold_set = fold_records(records, fold_numbers, fold)
        datasets.write_manifest(fold_set, dataset.root, config.manifest)
        train.train(config)
        answers = out_of_fold_predictions(config.out, fold_set, dataset.root, fold)
        log.info("Fold %d: accuracy %.4f (%d images)", fold,
                 np.mean([a["label"] == a["predicted"] for a in answers]), len(answers))
        predictions += answers
    # Every figure below comes from the out-of-fold answers, one per development image.
    confusion = confusion_matrix([classes.index(a["label"]) for a in predictions],
                                 [classes.index(a["predicted"]) for a in predictions],
                                 len(classes))
    per_fold = [float(np.mean([a["label"] == a["predicted"] for a in predictions
                               if a["fold"] == fold])) for fold in range(folds)]
    return dict(folds=folds, n=int(confusion.sum()),
                accuracy=float(np.trace(confusion) / confusion.sum()),
                macro_f1=float(per_class_scores(confusion)["f1"].mean()),
                balanced_accuracy=balanced_accuracy(confusion), fold_accuracy=per_fold,
                confusion_matrix={"classes": classes, "matrix": confusion.tolist()},
                predictions=sorted(predictions, key=lambda p: p["path"]))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m hematovision_core.crossval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for the fold models and report")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--record-into", type=Path, metavar="MODEL",
                   help="also store the figures in this model folder's model.json "
                        "(metrics.cross_validation): the model trained with the same recipe")
    args, train_options = p.parse_known_args(argv)
    # Parse the training options once, up front, so a typo fails before an hour of training.
    base = train.parse_config(["--data", str(args.data), "--out", str(args.out)] + train_options,
                              **FOLD_DEFAULTS)
    figures = cross_validate(base, args.folds)
    summary = {key: value for key, value in figures.items() if key != "predictions"}
    summary["training_options"] = train_options
    write_json(args.out / "crossval.json", summary | {"predictions": figures["predictions"]})
    if args.record_into:
        record_metrics(args.record_into, "cross_validation", summary)  # model.json stays small
    print(f"{args.folds}-fold cross-validation on {summary['n']} images: accuracy "
          f"{summary['accuracy']:.4f}, macro-F1 {summary['macro_f1']:.4f}, balanced accuracy "
          f"{summary['balanced_accuracy']:.4f} "
          f"(folds {', '.join(f'{a:.3f}' for a in summary['fold_accuracy'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
