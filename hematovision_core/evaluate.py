"""Evaluate a trained model on any folder of labelled images, also one it has never seen.

    python -m hematovision_core.evaluate --model models/NAME --data DIR [--split test] [--json OUT]

`--split` picks a split folder (`DIR/TEST/...`) or, for the model's own data folder, that split of
the model's manifest (split.csv). Without it every image in DIR is evaluated. Images of a class the
model does not know are counted and reported (with what the model called them), never dropped
silently; metrics are computed over the known classes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from hematovision_core import data as datasets
from hematovision_core.metrics import summarize
from hematovision_core.model_io import ModelFolder

log = logging.getLogger("hematovision.evaluate")


def select_records(model_folder: Path, data_dir: Path, split: str | None):
    """The images to evaluate, with a description of where they came from."""
    dataset = datasets.discover(data_dir)
    if split is None:
        return list(dataset.records), "all images"
    wanted = datasets.normalize_split(split) or split.lower()
    if dataset.has_split_folders:
        records = [r for r in dataset.records if r.split == wanted]
        if not records:
            raise ValueError(f"{data_dir} has no '{split}' split folder with images.")
        return records, f"split folder '{split}'"
    manifest = ModelFolder.read(model_folder).manifest
    if manifest is None:
        raise ValueError(f"{data_dir} has no split folders and {model_folder} has no split.csv.")
    records = [r for r in datasets.records_on_disk(manifest, dataset) if r.split == wanted]
    if not records:
        raise ValueError(f"No image of {data_dir} is in the '{split}' split of {manifest}: "
                         "is this the folder the model was trained on?")
    return records, f"manifest split '{wanted}'"


def record_outputs(classifier, records, batch_size: int = 32, progress=None, perturb=None):
    """Calibrated probabilities and out-of-domain scores for image records (anything with a
    `.path`), through `Classifier.infer`; `progress(done, total)` is called after each batch.
    `perturb`, if given, changes each decoded image (uint8 RGB array -> array) before the
    model's crop and resize, as a lab's camera or stain would (perturb.py).

    Returns:
        (records that decoded, probabilities (len(those), num_classes), out-of-domain scores
        (len(those),) or None for a model without a guard, one message per unreadable or
        vanished file).
    """
    inference = classifier.infer([record.path for record in records], perturb=perturb,
                                 batch_size=batch_size, progress=progress)
    kept = [records[index] for index in inference.kept]
    unreadable = [f"{Path(records[index].path).name}: {reason}"
                  for index, reason in inference.skipped]
    return kept, inference.probabilities, inference.ood_scores, unreadable


def record_probabilities(classifier, records, batch_size: int = 32, progress=None):
    """`record_outputs` without the out-of-domain scores: (kept, probabilities, unreadable)."""
    kept, probabilities, _, unreadable = record_outputs(classifier, records, batch_size, progress)
    return kept, probabilities, unreadable


def domain_figures(classifier, known_scores, unknown_scores, known_correct) -> dict:
    """out_of_domain_rate over every evaluated image (known class or not), and accuracy on the
    images of known classes the guard lets through; None where the model has no guard."""
    if known_scores is None:
        return {"out_of_domain_rate": None, "accuracy_unflagged": None, "n_unflagged": None}
    known_flags = classifier.guard.flags(known_scores)
    every = np.concatenate([known_flags, classifier.guard.flags(unknown_scores)])
    passed = ~known_flags
    return {"out_of_domain_rate": float(every.mean()) if len(every) else 0.0,
            "n_flagged": int(every.sum()),
            "accuracy_unflagged": float(np.mean(known_correct[passed])) if passed.any() else None,
            "n_unflagged": int(passed.sum()),
            "ood_score": classifier.guard.score_name,
            "ood_threshold": classifier.guard.threshold}


def evaluate(model_folder: Path, data_dir: Path, split: str | None = None,
             batch_size: int = 32, classifier=None, perturbations=(), limit: int | None = None,
             ) -> dict:
    """Classify every selected image and summarize; returns the JSON-ready report.

    `perturbations`: (name, level) pairs applied to every image (perturb.py); `limit`: at most
    this many images, a class-stratified sample (seed 0), for quick robustness tables.
    """
    from hematovision_core.predict import Classifier

    classifier = classifier or Classifier.load(model_folder)
    records, source = select_records(Path(model_folder), Path(data_dir), split)
    if limit and len(records) > limit:
        records, source = stratified_sample(records, limit), f"{source}, stratified sample of {limit}"
    perturb = None
    if perturbations:
        from hematovision_core.perturb import compose

        perturb = compose(perturbations)
    index_of = {c.lower(): i for i, c in enumerate(classifier.classes)}
    known = [r for r in records if r.label in index_of]
    unknown = [r for r in records if r.label not in index_of]
    kept, probabilities, known_scores, unreadable = record_outputs(
        classifier, known, batch_size, perturb=perturb)
    truth = np.array([index_of[r.label] for r in kept], int)
    report = summarize(truth, probabilities, classifier.classes)
    unknown_kept, unknown_probabilities, unknown_scores, unreadable_unknown = record_outputs(
        classifier, unknown, batch_size, perturb=perturb)
    report.update(domain_figures(classifier, known_scores, unknown_scores,
                                 probabilities.argmax(axis=1) == truth if len(truth)
                                 else np.zeros(0, bool)))
    unreadable += unreadable_unknown
    called = Counter()
    for record, row in zip(unknown_kept, unknown_probabilities):
        called[(record.label, classifier.classes[int(np.argmax(row))])] += 1
    report.update(
        model=classifier.name,
        data=str(Path(data_dir)),
        split=split,
        source=source,
        unknown_class_images=len(unknown),
        unknown_classes={
            label: {"n": n, "predicted_as": {p: c for (l, p), c in sorted(called.items()) if l == label}}
            for label, n in sorted(Counter(r.label for r in unknown).items())
        },
        unreadable=unreadable,
        perturbations={name: level for name, level in perturbations},
    )
    return report


def stratified_sample(records, limit: int, seed: int = 0):
    """About `limit` records, each class keeping its share (at least one image), in order."""
    rng = np.random.default_rng(seed)
    labels = sorted({r.label for r in records})
    chosen = []
    for label in labels:
        rows = [i for i, r in enumerate(records) if r.label == label]
        take = max(1, round(limit * len(rows) / len(records)))
        chosen += rng.permutation(rows)[:take].tolist()
    return [records[i] for i in sorted(chosen)]


def format_report(report: dict) -> str:
    """A plain-text report: headline figures, a per-class table, unknown classes."""
    lines = [
        f"Model {report['model']} on {report['data']} ({report['source']})",
        f"  images {report['n']}   accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}"
        f"   balanced accuracy {report['balanced_accuracy']:.4f}"
        f"   top-2 {report['top2_accuracy']:.4f}   ECE {report['ece']:.4f}",
    ]
    if report.get("perturbations"):
        lines.append("  perturbed: " + ", ".join(f"{name}={level:g}" for name, level
                                                 in report["perturbations"].items()))
    if report.get("out_of_domain_rate") is not None:
        unflagged = report["accuracy_unflagged"]
        total = report["n"] + report["unknown_class_images"]
        lines.append(
            f"  out of domain: {report['out_of_domain_rate']:.1%} of all {total} images "
            f"flagged ({report['ood_score']} score)   "
            f"accuracy on the {report['n_unflagged']} unflagged images of known classes "
            + (f"{unflagged:.4f}" if unflagged is not None else "n/a"))
    else:
        lines.append("  out of domain: this model has no guard "
                     "(python -m hematovision_core.ood --model ...)")
    lines += [
        "",
        f"  {'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name, row in report["per_class"].items():
        lines.append(f"  {name:<14}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                     f"{row['f1']:>10.4f}{row['support']:>9d}")
    lines += ["", "  confusion matrix (rows: true, columns: predicted)",
              "  " + " ".join(f"{c[:6]:>6}" for c in report["classes"])]
    lines += ["  " + " ".join(f"{v:>6d}" for v in row) for row in report["confusion_matrix"]]
    if report["unknown_class_images"]:
        lines += ["", f"  {report['unknown_class_images']} image(s) of classes the model does not know "
                  "(not in the metrics):"]
        for label, info in report["unknown_classes"].items():
            lines.append(f"    {label}: {info['n']}, predicted as {info['predicted_as']}")
    if report["unreadable"]:
        lines += ["", f"  {len(report['unreadable'])} unreadable image(s) skipped"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hematovision_core.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model folder (model.keras + model.json)")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder, either layout")
    parser.add_argument("--split", help="split folder or manifest split (train, val, test)")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--perturb", action="append", default=[], metavar="NAME=LEVEL",
                        help="change every image before the model sees it (repeatable): "
                             "brightness, contrast, blur, hue, saturation, stain, jpeg; "
                             "see perturb.py for what each level means")
    parser.add_argument("--limit", type=int,
                        help="evaluate a class-stratified sample of at most this many images")
    parser.add_argument("--record", metavar="KEY",
                        help="also store the figures in the model's model.json under metrics.KEY "
                             "(e.g. augmented_test), for the model card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        from hematovision_core.perturb import parse_perturbation

        perturbations = [parse_perturbation(text) for text in args.perturb]
        report = evaluate(args.model, args.data, args.split, args.batch_size,
                          perturbations=perturbations, limit=args.limit)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.record:
        from hematovision_core.model_io import record_metrics

        kept = {k: v for k, v in report.items() if k not in ("unknown_classes", "unreadable")}
        record_metrics(args.model, args.record, kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
