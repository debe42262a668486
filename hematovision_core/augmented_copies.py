"""Write augmented copies of held-out smears, the way the public blood-cells TEST folder was made.

    python -m hematovision_core.augmented_copies --model models/blood-cells-4class \
        --data ../shared/data/blood-cells/TRAIN --split test --out var/augmented-test --copies 8
    python -m hematovision_core.evaluate --model models/blood-cells-4class --data var/augmented-test

The public TEST images are rotated, shifted, sheared and flipped copies of 71 source smears. Our
internal test split has only the untouched sources, so its accuracy says nothing about how well
the localiser and the model cope with a rotated field or a cell pushed to an edge. These copies do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hematovision_core.augment import random_field_transform
from hematovision_core.evaluate import select_records
from hematovision_core.preprocessing import ImageError, load_image


def write_copies(records, out: Path, copies: int, seed: int) -> int:
    """`copies` random field transforms of each record, as out/<class>/<stem>_<k>.jpg."""
    rng = np.random.default_rng(seed)
    written = 0
    for record in records:
        try:
            pixels = np.asarray(load_image(record.path))
        except ImageError as error:
            print(f"Skipping {record.path.name}: {error}", file=sys.stderr)
            continue
        folder = out / record.label
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(copies):
            image = Image.fromarray(random_field_transform(pixels, rng))
            image.save(folder / f"{record.path.stem}_{k}.jpg", quality=95)
            written += 1
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hematovision_core.augmented_copies",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (for its split.csv)")
    p.add_argument("--data", type=Path, required=True, help="the folder the model was trained on")
    p.add_argument("--split", default="test", help="which split's images to copy")
    p.add_argument("--out", type=Path, required=True, help="new folder to write (must not exist)")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} already exists; choose a new folder.", file=sys.stderr)
        return 2
    try:
        records, source = select_records(args.model, args.data, args.split)
    except (ValueError, OSError) as error:
        print(f"Cannot select images: {error}", file=sys.stderr)
        return 2
    written = write_copies(records, args.out, args.copies, args.seed)
    print(f"Wrote {written} copies of {len(records)} images ({source}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
