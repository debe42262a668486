"""Fit a shipped model's temperature again, on more images than its validation split, and
measure the result by cross-validation.

    python -m hematovision_core.recalibrate --model models/blood-cells-4class --val-copies 8 [--write]

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
from datetime import date
from pathlib import Path

import numpy as np

from hematovision_core.calibration import apply_temperature, fit_temperature
from hematovision_core.metrics import expected_calibration_error, reliability_bins
from hematovision_core.model_io import METADATA_FILE, write_json
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
    # Measured after the fit, never used by it.
    test = manifest_source(data_root, manifest, "test")
    if test.paths:
        test_logits, _, test_names = split_outputs(cache_dir, classifier, test)
        test_labels = np.array([index_of[n] for n in test_names])
        record["test"] = {"n": len(test_labels), **{
            f"ece_{name}": round(expected_calibration_error(
                test_labels, apply_temperature(test_logits, t)), 4)
            for name, t in (("before", before), ("after", temperature))}}
        if val_copies:
            copy_logits, _, sources = copies_outputs(
                classifier, [test.root / p for p in test.paths], val_copies, seed=2)
            copy_labels = test_labels[sources]
            record["test_copies"] = {"n": len(copy_labels), **{
                f"ece_{name}": round(expected_calibration_error(
                    copy_labels, apply_temperature(copy_logits, t)), 4)
                for name, t in (("before", before), ("after", temperature))}}
    return record


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
                   help="rotated/shifted copies of each validation image to fit on as well")
    p.add_argument("--write", action="store_true", help="store the temperature in model.json")
    p.add_argument("--note", help="what the probabilities mean, for the model card (with --write)")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    classifier = Classifier.load(args.model)
    data_root = args.data or settings.data_dir / (classifier.model_folder.dataset or "")
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
