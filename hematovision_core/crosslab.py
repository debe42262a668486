"""How a single-cell model copes with another lab: its accuracy on the white cells of the
4-class dataset's smears (issue 15, cross-lab training).

    python -m hematovision_core.crosslab --model models/pbc-8class \
        --data ../shared/data/blood-cells/TRAIN [--json OUT]

A PBC model looks at a single, centred cell at PBC's magnification; the blood-cells dataset shows
whole 320x240 fields from another lab, stain and camera. The model is given the same white-cell
crop the smear model sees (localize.py, `crop: "white-cell"`), whatever its model.json says, and
scored on every smear of the folder (all of its classes, eosinophil, lymphocyte, monocyte and
neutrophil, are among PBC's eight; an answer of another PBC class counts as wrong). A model that
trained on some of these smears must not be scored on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hematovision_core.evaluate import evaluate, format_report


def cross_lab_report(model: Path, data: Path) -> dict:
    """evaluate's report of `model` on the white-cell crops of every smear in `data`."""
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(model)
    classifier.crop = "white-cell"  # look at the smear's white cell, as the smear model does
    report = evaluate(model, data, None, classifier=classifier)
    report["crop"] = "white-cell (forced)"
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hematovision_core.crosslab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="a folder of smears (blood-cells)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    args = p.parse_args(argv)
    report = cross_lab_report(args.model, args.data)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
