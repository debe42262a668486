"""The robustness lesson's table: accuracy and out-of-domain flag rate under each perturbation.

    python -m hematovision_core.robustness --model models/pbc-8class --split test --limit 800

One `evaluate` pass per perturbation and level (perturb.py's three table levels), on the same
images each time (a class-stratified sample with `--limit`), printed as a Markdown table for the
README and written as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hematovision_core.evaluate import evaluate
from hematovision_core.perturb import PERTURBATIONS


def robustness_rows(model: Path, data: Path, split: str | None, limit: int | None) -> list[dict]:
    """One row per (perturbation, level), the unperturbed images first."""
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(model)
    settings = [(None, None)] + [(name, level) for name, spec in PERTURBATIONS.items()
                                 for level in spec.levels]
    rows = []
    for name, level in settings:
        started = time.perf_counter()
        report = evaluate(model, data, split, classifier=classifier, limit=limit,
                          perturbations=[(name, level)] if name else ())
        rows.append({"perturbation": name or "none", "level": level, "n": report["n"],
                     "accuracy": report["accuracy"],
                     "out_of_domain_rate": report["out_of_domain_rate"],
                     "accuracy_unflagged": report["accuracy_unflagged"],
                     "seconds": round(time.perf_counter() - started, 1)})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table: perturbation, level, accuracy, flagged, accuracy unflagged."""
    lines = ["| perturbation | level | accuracy | flagged out of domain | accuracy, unflagged |",
             "|---|---|---|---|---|"]
    for row in rows:
        rate, unflagged, level = (row["out_of_domain_rate"], row["accuracy_unflagged"],
                                  row["level"])
        level_text = "" if level is None else f"{level:g}"
        rate_text = "n/a" if rate is None else f"{rate:.1%}"
        unflagged_text = "n/a" if unflagged is None else f"{unflagged:.3f}"
        lines.append(f"| {row['perturbation']} | {level_text} | {row['accuracy']:.3f} "
                     f"| {rate_text} | {unflagged_text} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from hematovision_core.config import Settings
    from hematovision_core.model_io import ModelFolder

    p = argparse.ArgumentParser(prog="python -m hematovision_core.robustness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, help="default: the model's dataset in HEMATOVISION_DATA")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="a class-stratified sample of at most N images")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    data = args.data or Settings.from_env().data_dir / (ModelFolder.read(args.model).dataset or "")
    rows = robustness_rows(args.model, data, args.split, args.limit)
    print(markdown(rows))
    print(f"\n{rows[0]['n']} images a pass, {sum(r['seconds'] for r in rows):.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
