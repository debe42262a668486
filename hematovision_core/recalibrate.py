"""Fit a shipped model's temperature again, on more images than its validation split, and
measure the result by cross-validation.

    python -m hematovision_core.recalibrate --model models/blood-cells-4class --val-copies 8 [--write]
    python -m hematovision_core.recalibrate --model models/blood-cells-4class \
        --crossval var/cv/NAME [--copies 4] [--write]

With `--crossval`, the temperature is fit on the out-of-fold logits of a cross-validation run of
the model's own recipe (crossval.py: every train + validation image scored by a fold model that
never saw it; 222 smears for blood-cells-4class instead of 28), and measured by nested
cross-validation over the same folds (a temperature fit on four folds' answers, the ECE on the
fifth's). `--copies K` also scores K rotated/shifted copies of each out-of-fold image with its
fold model, made as the public TEST folder was made, and reports the ECE the fit predicts there,
also with each class weighed equally (the public TEST has about as many copies of each class).
A top-label Platt scaling (two parameters) is compared by the same nested cross-validation; the
temperature alone is kept unless it loses clearly. Test images are never used.

blood-cells-4class's temperature (0.90) was fit on 28 validation smears. Label smoothing 0.2 in
training caps how sure the network can be, so it is underconfident, and 28 images cannot say by
how much. Here the temperature is fit on the validation smears plus K rotated/shifted copies of
each (28 x 9 = 252 views, made as the public TEST folder was made), never on test images. Its
error is measured by 5-fold cross-validation grouped by source smear (a temperature fit on four
folds' smears, the ECE on the fifth's), and the reliability diagram is drawn from those held-out
probabilities. The test split (and, for smear models, rotated/shifted copies of its smears) is
scored afterwards for the record. `--write` stores the temperature and this record in model.json
("calibration"); model.keras and model.onnx are untouched, so their checksums hold.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from hematovision_core.calibration import apply_temperature, fit_temperature
from hematovision_core.metrics import (
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    reliability_bins,
)
from hematovision_core.model_io import (
    METADATA_FILE,
    read_json,
    write_json,
)
from hematovision_core.ood_fit import copies_outputs, manifest_source, split_outputs

FOLDS = 5


def grouped_folds(groups: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold number per row; rows of one group (views of one smear) share a fold."""
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {group: position % folds for position, group in zip(range(len(unique)),
                                                                   unique[order])}
    return np.array([fold_of[group] for group in groups])


def cross_validated(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                    folds: int = FOLDS) -> tuple[np.ndarray, list[float]]:
    """Held-out probabilities of every row, each from a temperature fit on the other folds'
    groups; and the temperature of each fold."""
    fold = grouped_folds(groups, folds)
    held_out = np.zeros(logits.shape, np.float32)
    temperatures = []
    for number in range(folds):
        test = fold == number
        if not test.any():
            continue
        temperature = fit_temperature(logits[~test], labels[~test])
        held_out[test] = apply_temperature(logits[test], temperature)
        temperatures.append(round(temperature, 4))
    return held_out, temperatures


def recalibrate(classifier, data_root: Path, cache_dir: Path, val_copies: int = 0) -> dict:
    """The new temperature and its record (how it was fit, cross-validated ECE, test ECE)."""
    manifest = classifier.model_folder.manifest
    if manifest is None:
        raise ValueError(f"{classifier.folder} has no split.csv.")
    index_of = {c: i for i, c in enumerate(classifier.classes)}
    val = manifest_source(data_root, manifest, "val")
    logits, _, names = split_outputs(cache_dir, classifier, val)
    labels = np.array([index_of[n] for n in names])
    groups = np.arange(len(labels))
    if val_copies:
        copy_logits, _, sources = copies_outputs(classifier, [val.root / p for p in val.paths],
                                                 val_copies, seed=1)
        logits = np.concatenate([logits, copy_logits])
        labels = np.concatenate([labels, labels[sources]])
        groups = np.concatenate([groups, sources])
    temperature = fit_temperature(logits, labels)
    held_out, fold_temperatures = cross_validated(logits, labels, groups)
    before = classifier.temperature
    record = {
        "temperature_before": before, "temperature": round(temperature, 4),
        "fit_on": (f"{len(logits)} validation views: {len(val.paths)} images and {val_copies} "
                   "rotated/shifted copies of each" if val_copies
                   else f"{len(logits)} validation images") + "; no test image",
        "date": date.today().isoformat(),
        "cross_validated_ece": round(expected_calibration_error(labels, held_out), 4),
        "fold_temperatures": fold_temperatures,
        "validation_ece_before": round(expected_calibration_error(
            labels, apply_temperature(logits, before)), 4),
        "reliability": reliability_bins(labels, held_out),
    }
    return record | score_test(classifier, data_root, cache_dir, before, temperature, val_copies)


def score_test(classifier, data_root: Path, cache_dir: Path, before: float, temperature: float,
               copies: int = 0) -> dict:
    """The test split's ECE at the old and the new temperature (and, with `copies`, of that many
    rotated/shifted copies of each test image): measured after the fit, never used by it."""
    manifest = classifier.model_folder.manifest
    if manifest is None:
        return {}
    index_of = {c: i for i, c in enumerate(classifier.classes)}
    test = manifest_source(data_root, manifest, "test")
    record = {}
    if test.paths:
        test_logits, _, test_names = split_outputs(cache_dir, classifier, test)
        test_labels = np.array([index_of[n] for n in test_names])
        record["test"] = {"n": len(test_labels), **{
            f"ece_{name}": round(expected_calibration_error(
                test_labels, apply_temperature(test_logits, t)), 4)
            for name, t in (("before", before), ("after", temperature))}}
        if copies:
            copy_logits, _, sources = copies_outputs(
                classifier, [test.root / p for p in test.paths], copies, seed=2)
            copy_labels = test_labels[sources]
            record["test_copies"] = {"n": len(copy_labels), **{
                f"ece_{name}": round(expected_calibration_error(
                    copy_labels, apply_temperature(copy_logits, t)), 4)
                for name, t in (("before", before), ("after", temperature))}}
    return record


# ---- the temperature on cross-validation out-of-fold logits --------------------------------


@dataclass(frozen=True)
class OutOfFold:
    """A crossval run's out-of-fold answers: one row per development image."""

    logits: np.ndarray  # (N, C) uncalibrated, TTA-averaged as served
    labels: np.ndarray  # (N,) class indices in the model's order
    folds: np.ndarray  # (N,) the crossval fold whose model scored the image
    paths: list[str]  # image paths relative to the dataset folder


def read_out_of_fold(crossval_dir: Path, classes: list[str]) -> OutOfFold:
    """crossval.json's predictions, which must carry logits (crossval.py records them)."""
    report = read_json(Path(crossval_dir) / "crossval.json")
    rows = report.get("predictions") or []
    if not rows or "logits" not in rows[0]:
        raise ValueError(f"{crossval_dir}/crossval.json has no out-of-fold logits; run crossval "
                         "again (it records them now).")
    index_of = {c: i for i, c in enumerate(classes)}
    return OutOfFold(np.array([r["logits"] for r in rows], np.float64),
                     np.array([index_of[r["label"]] for r in rows]),
                     np.array([r["fold"] for r in rows]), [r["path"] for r in rows])


def class_balanced_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One weight per row so that every class weighs the same in total (a class-balanced set)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return 1.0 / counts[labels]


def platt_top(logits: np.ndarray, a: float, b: float) -> np.ndarray:
    """Top-label Platt scaling: the top class's probability (at T = 1) becomes
    sigmoid(a * logit(p) + b), but never less than the runner-up's; the other classes share the
    rest in their old proportions."""
    p = apply_temperature(logits, 1.0).astype(np.float64)
    top = p.argmax(axis=1)
    rows = np.arange(len(p))
    c = np.clip(p[rows, top], 1e-6, 1 - 1e-6)
    new = 1.0 / (1.0 + np.exp(-(a * np.log(c / (1 - c)) + b)))
    second = np.sort(p, axis=1)[:, -2]
    floor = second / (1 - c + second)  # where the top would tie with the runner-up
    new = np.maximum(new, floor + 0.01 * (c - floor))  # so the winner never changes
    out = p * ((1 - new) / (1 - c))[:, None]
    out[rows, top] = new
    return out.astype(np.float32)


def fit_platt_top(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the top label's binary log loss (a coarse grid, then a finer one)."""
    p = apply_temperature(logits, 1.0).astype(np.float64)
    c = np.clip(p.max(axis=1), 1e-6, 1 - 1e-6)
    x, y = np.log(c / (1 - c)), (p.argmax(axis=1) == labels).astype(float)

    def loss(a, b):
        q = np.clip(1.0 / (1.0 + np.exp(-(a * x + b))), 1e-9, 1 - 1e-9)
        return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))

    best = (1.0, 0.0)
    for span in (1.0, 0.1):
        a_grid = np.linspace(best[0] - 2 * span, best[0] + 2 * span, 41)
        b_grid = np.linspace(best[1] - 2 * span, best[1] + 2 * span, 41)
        best = min(((a, b) for a in a_grid if a > 0 for b in b_grid), key=lambda ab: loss(*ab))
    return float(best[0]), float(best[1])


def top_label_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    c = np.clip(probabilities.max(axis=1).astype(np.float64), 1e-9, 1 - 1e-9)
    y = probabilities.argmax(axis=1) == labels
    return float(-np.mean(np.where(y, np.log(c), np.log(1 - c))))


def nested_by_fold(oof: OutOfFold, fit, apply) -> tuple[np.ndarray, list]:
    """Held-out probabilities of every row from parameters fit on the other crossval folds."""
    held_out = np.zeros(oof.logits.shape, np.float32)
    fitted = []
    for fold in np.unique(oof.folds):
        test = oof.folds == fold
        params = fit(oof.logits[~test], oof.labels[~test])
        held_out[test] = apply(oof.logits[test], params)
        fitted.append(params)
    return held_out, fitted


def copies_of_out_of_fold(crossval_dir: Path, data_root: Path, oof: OutOfFold, copies: int,
                          seed: int = 3) -> dict:
    """Logits of `copies` rotated/shifted copies of each out-of-fold image, each scored by the
    fold model that never saw it (crossval_dir/fold-k), cached in crossval_dir. Returns
    {"logits", "rows" (index into oof per copy)}."""
    from hematovision_core.ood_fit import copies_outputs
    from hematovision_core.predict import Classifier

    cache = Path(crossval_dir) / f"copies-{copies}-seed{seed}.npz"
    if cache.exists():
        saved = np.load(cache)
        return {"logits": saved["logits"], "rows": saved["rows"]}
    logits, rows = [], []
    for fold in np.unique(oof.folds):
        chosen = np.flatnonzero(oof.folds == fold)
        classifier = Classifier.load(Path(crossval_dir) / f"fold-{fold}")
        fold_logits, _, sources = copies_outputs(
            classifier, [Path(data_root) / oof.paths[i] for i in chosen], copies, seed=seed + fold)
        logits.append(fold_logits)
        rows.append(chosen[sources])
    result = {"logits": np.concatenate(logits), "rows": np.concatenate(rows)}
    np.savez(cache, **result)
    return result


def set_figures(labels, probabilities, num_classes: int) -> dict:
    """Accuracy, balanced accuracy, mean confidence, ECE and class-balanced ECE of a set."""
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted, num_classes)
    return {"n": int(len(labels)), "accuracy": round(float(np.mean(predicted == labels)), 4),
            "balanced_accuracy": round(balanced_accuracy(confusion), 4),
            "mean_confidence": round(float(probabilities.max(axis=1).mean()), 4),
            "ece": round(expected_calibration_error(labels, probabilities), 4),
            "ece_class_balanced": round(expected_calibration_error(
                labels, probabilities, sample_weight=class_balanced_weights(
                    labels, num_classes)), 4)}


def recalibrate_crossval(classifier, crossval_dir: Path, data_root: Path, cache_dir: Path,
                         copies: int = 0, test_copies: int = 0) -> dict:
    """The temperature fit on a crossval run's out-of-fold logits, and its record."""
    classes = list(classifier.classes)
    k = len(classes)
    oof = read_out_of_fold(crossval_dir, classes)
    before = classifier.temperature
    temperature = fit_temperature(oof.logits, oof.labels)
    held_out, fold_temperatures = nested_by_fold(oof, fit_temperature, apply_temperature)
    platt_held_out, platt_params = nested_by_fold(
        oof, fit_platt_top, lambda logits, ab: platt_top(logits, *ab))
    weights = class_balanced_weights(oof.labels, k)
    crossval = read_json(Path(crossval_dir) / "crossval.json")
    record = {
        "temperature_before": before, "temperature": round(temperature, 4),
        "fit_on": (f"{len(oof.labels)} out-of-fold logits of {len(np.unique(oof.folds))}-fold "
                   "cross-validation of the shipped recipe (every train + validation image, "
                   "scored by a fold model that never saw it); no test image"),
        "date": date.today().isoformat(),
        "cross_validated_ece": round(expected_calibration_error(oof.labels, held_out), 4),
        "cross_validated_ece_class_balanced": round(expected_calibration_error(
            oof.labels, held_out, sample_weight=weights), 4),
        "fold_temperatures": [round(t, 4) for t in fold_temperatures],
        "out_of_fold_ece_before": round(expected_calibration_error(
            oof.labels, apply_temperature(oof.logits, before)), 4),
        "out_of_fold_before": set_figures(oof.labels, apply_temperature(oof.logits, before), k),
        "out_of_fold_after": set_figures(oof.labels, held_out, k),
        "reliability": reliability_bins(oof.labels, held_out),
        "crossval_command": " ".join(
            ["python -m hematovision_core.crossval", "--data", str(data_root), "--out",
             str(crossval_dir), "--folds", str(crossval.get("folds", len(np.unique(oof.folds))))]
            + list(crossval.get("training_options", []))),
        "two_parameter": {
            "method": "top-label Platt scaling, sigmoid(a logit(p) + b), nested by fold",
            "fold_parameters": [[round(a, 3), round(b, 3)] for a, b in platt_params],
            "cross_validated_ece": round(expected_calibration_error(oof.labels,
                                                                    platt_held_out), 4),
            "cross_validated_ece_class_balanced": round(expected_calibration_error(
                oof.labels, platt_held_out, sample_weight=weights), 4),
            "top_label_log_loss": round(top_label_log_loss(oof.labels, platt_held_out), 4),
            "temperature_top_label_log_loss": round(top_label_log_loss(oof.labels, held_out), 4),
        },
    }
    if copies:
        made = copies_of_out_of_fold(crossval_dir, data_root, oof, copies)
        rows, copy_labels = made["rows"], oof.labels[made["rows"]]
        held_out_t = np.zeros(made["logits"].shape, np.float32)
        for fold, t in zip(np.unique(oof.folds), fold_temperatures):
            mine = oof.folds[rows] == fold
            held_out_t[mine] = apply_temperature(made["logits"][mine], t)
        record["test_like_copies"] = {
            "made": f"{copies} rotated/shifted/flipped copies of each out-of-fold image "
                    "(augment.random_field_transform), scored by its fold model",
            "before": set_figures(copy_labels, apply_temperature(made["logits"], before), k),
            "after": set_figures(copy_labels, held_out_t, k),
        }
    return record | score_test(classifier, data_root, cache_dir, before, temperature, test_copies)


def write_temperature(folder: Path, record: dict) -> None:
    """Store the new temperature and its record in model.json; ECEs in metrics get a note."""
    from hematovision_core.model_io import read_metadata

    metadata = read_metadata(folder)
    metadata["temperature"] = record["temperature"]
    metadata["calibration"] = record
    test = (metadata.get("metrics") or {}).get("test")
    if test and "test" in record:
        test["ece"] = record["test"]["ece_after"]
        test["ece_note"] = "recomputed with the refit temperature (see calibration)"
    write_json(Path(folder) / METADATA_FILE, metadata)


def main(argv=None) -> int:
    from hematovision_core.config import Settings
    from hematovision_core.predict import Classifier

    p = argparse.ArgumentParser(prog="python -m hematovision_core.recalibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, help="the model's dataset folder (default: from model.json)")
    p.add_argument("--val-copies", type=int, default=0,
                   help="rotated/shifted copies of each validation image to fit on as well "
                        "(with --crossval: of each test image, scored for the record only)")
    p.add_argument("--crossval", type=Path, metavar="DIR",
                   help="fit on the out-of-fold logits of this crossval run (its crossval.json) "
                        "instead of the validation split")
    p.add_argument("--copies", type=int, default=0,
                   help="with --crossval: rotated/shifted copies of each out-of-fold image to "
                        "predict the ECE on TEST-like copies")
    p.add_argument("--write", action="store_true", help="store the temperature in model.json")
    p.add_argument("--note", help="what the probabilities mean, for the model card (with --write)")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    classifier = Classifier.load(args.model)
    data_root = args.data or settings.data_dir / (classifier.model_folder.dataset or "")
    if args.crossval:
        record = recalibrate_crossval(classifier, args.crossval, data_root, settings.cache_dir,
                                      args.copies, args.val_copies)
    else:
        record = recalibrate(classifier, data_root, settings.cache_dir, args.val_copies)
    shown = {k: v for k, v in record.items() if k != "reliability"}
    print(shown)
    for row in record["reliability"]:
        print(f"  confidence {row['low']:.1f}-{row['high']:.1f}: n {row['n']:5d}  "
              f"mean confidence {row['confidence']:.3f}  accuracy {row['accuracy']:.3f}")
    if args.write:
        if args.note:
            record["note"] = args.note
        write_temperature(args.model, record)
        print(f"Wrote temperature {record['temperature']} to {args.model / METADATA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
