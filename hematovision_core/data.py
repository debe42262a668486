"""Find labelled images on disk, split them reproducibly, and write the split down.

A dataset is `<root>/<class>/*` or, with split folders, `<root>/<SPLIT>/<CLASS>/*` (the public
"blood-cells" layout). Class names compare case-insensitively, so `EOSINOPHIL` is `eosinophil`.

Command line (on a connected machine):
    python -m hematovision_core.data download pbc [--out data/pbc]
    python -m hematovision_core.data download blood-cells [--out data/blood-cells]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
DEFAULT_SEED = 42
MANIFEST_NAME = "split.csv"


@dataclass(frozen=True)
class ImageRecord:
    path: Path  # absolute path of the image file
    label: str  # lower-case class name
    split: str | None = None  # "train", "val", "test" or None before splitting
    digest: str = ""  # sha1 of the file's bytes, filled in by `split_records`


@dataclass(frozen=True)
class Dataset:
    root: Path
    records: tuple[ImageRecord, ...]
    classes: tuple[str, ...]  # sorted lower-case class names found on disk
    has_split_folders: bool
    skipped: tuple[Path, ...]  # files ignored: wrong extension or not decodable

    def in_split(self, split: str | None) -> list[ImageRecord]:
        """Records of one split, or all of them when `split` is None."""
        return [r for r in self.records if split is None or r.split == split]


def normalize_class(name: str) -> str:
    return name.strip().lower()


def class_folders(folder: str | Path) -> set[str]:
    """Normalised names of the sub-folders of `folder` that directly hold an image file: its
    classes, found without listing every image (empty if `folder` cannot be read)."""
    found = set()
    try:
        with os.scandir(folder) as entries:
            subfolders = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return found
    for sub in subfolders:
        try:
            with os.scandir(sub.path) as files:
                if any(f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS) for f in files):
                    found.add(normalize_class(sub.name))
        except OSError:
            continue
    return found


def normalize_split(name: str) -> str | None:
    return SPLIT_ALIASES.get(name.strip().lower())


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_decodable(path: Path) -> bool:
    """Cheap check that the header parses; full decoding waits until the image is used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def _scan_class_folders(folder: Path, split: str | None, skipped: list[Path], verify: bool):
    records = []
    for class_dir in _subfolders(folder):
        label = normalize_class(class_dir.name)
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file():
                continue
            ok = path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
            if ok and verify:
                ok = _is_decodable(path)
            if ok:
                # Not resolved: a symlinked image keeps its path under root, as manifests record it.
                records.append(ImageRecord(path=path, label=label, split=split))
            else:
                skipped.append(path)
    return records


def discover(root: str | Path, verify: bool = True) -> Dataset:
    """Scan a dataset folder in either layout.

    Junk (other extensions, hidden files, files that do not decode) is skipped with one warning
    line, never an exception. `verify=False` skips the header check for speed.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"No dataset folder at {root}")
    top = _subfolders(root)
    split_dirs = [(d, normalize_split(d.name)) for d in top]
    has_split_folders = any(split is not None for _, split in split_dirs)
    skipped: list[Path] = []
    records: list[ImageRecord] = []
    if has_split_folders:
        for folder, split in split_dirs:
            if split is None:  # e.g. blood-cells' TEST_SIMPLE: not one of train/val/test
                log.warning("Ignoring folder %s: not a train/val/test split folder", folder.name)
                continue
            records += _scan_class_folders(folder, split, skipped, verify)
    else:
        records = _scan_class_folders(root, None, skipped, verify)
    if skipped:
        log.warning(
            "Skipped %d file(s) under %s that are not readable images, e.g. %s",
            len(skipped), root, skipped[0].name,
        )
    classes = tuple(sorted({r.label for r in records}))
    return Dataset(root, tuple(records), classes, has_split_folders, tuple(skipped))


def file_digest(path: Path) -> str:
    """sha1 hex digest of a file on disk: byte-identical images share a split (uploads, which
    are bytes, use `batch.bytes_digest`)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _allocate(groups: list[list[ImageRecord]], fractions, rng) -> dict[int, str]:
    """Assign whole groups to splits so each split gets close to its share of images."""
    order = rng.permutation(len(groups))
    total = sum(len(g) for g in groups)
    targets = np.array(fractions) / sum(fractions) * total
    filled = np.zeros(len(fractions))
    assignment = {}
    for index in order:
        # Give the group to the split that is furthest below its target (ties: the earlier split).
        split_index = int(np.argmax(targets - filled))
        assignment[int(index)] = SPLITS[split_index]
        filled[split_index] += len(groups[index])
    return assignment


def split_records(
    records: list[ImageRecord] | tuple[ImageRecord, ...],
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
) -> list[ImageRecord]:
    """Deterministic stratified train/val/test split; byte-identical files share one split.

    Records that already carry a split keep it. If there is a train split but no validation
    split, validation images are carved out of train with the same rules.
    """
    records = [r if r.digest else replace(r, digest=file_digest(r.path)) for r in records]
    if records and all(r.split for r in records):
        present = {r.split for r in records}
        if "val" in present or "train" not in present:
            return sorted(records, key=lambda r: str(r.path))
        train = [r for r in records if r.split == "train"]
        rest = [r for r in records if r.split != "train"]
        val_share = fractions[1] / (fractions[0] + fractions[1])
        carved = split_records(
            [replace(r, split=None) for r in train], (1 - val_share, val_share, 0.0), seed
        )
        return sorted(carved + rest, key=lambda r: str(r.path))

    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: str(r.path)):
        by_digest[record.digest].append(record)
    # Stratify duplicate groups by the label of their first file (sorted by path).
    groups_by_class: dict[str, list[list[ImageRecord]]] = defaultdict(list)
    for digest in sorted(by_digest):
        group = by_digest[digest]
        groups_by_class[group[0].label].append(group)
    rng = np.random.RandomState(seed)
    out = []
    for label in sorted(groups_by_class):
        groups = groups_by_class[label]
        assignment = _allocate(groups, fractions, rng)
        for index, group in enumerate(groups):
            out += [replace(r, split=assignment[index]) for r in group]
    return sorted(out, key=lambda r: str(r.path))


def write_manifest(records, root: Path, path: Path) -> None:
    """Write the split as CSV (path relative to the data root, label, split, sha1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "sha1"])
        for r in records:
            writer.writerow([Path(r.path).relative_to(root).as_posix(), r.label, r.split, r.digest])


def read_manifest(path: Path, root: Path) -> list[ImageRecord]:
    """Read a manifest back into records rooted at `root` (the data folder on this machine)."""
    with open(path, newline="") as f:
        return [
            ImageRecord(Path(root) / row["path"], row["label"], row["split"] or None, row["sha1"])
            for row in csv.DictReader(f)
        ]


def records_on_disk(manifest: Path, dataset: "Dataset") -> list[ImageRecord]:
    """The manifest's records whose files a scan of `dataset` found (some may be gone)."""
    on_disk = {r.path for r in dataset.records}
    return [r for r in read_manifest(manifest, dataset.root) if r.path in on_disk]


def manifest_checksum(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def class_counts(records) -> dict[str, int]:
    return dict(sorted(Counter(r.label for r in records).items()))


def main(argv: list[str] | None = None) -> int:
    from hematovision_core import download as downloads

    parser = argparse.ArgumentParser(prog="python -m hematovision_core.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="download a public dataset as class folders")
    download.add_argument("dataset", choices=downloads.DATASETS)
    download.add_argument("--out", type=Path, help="target folder (default data/<dataset>)")
    summary = commands.add_parser("summary", help="count the images of a dataset folder")
    summary.add_argument("--data", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if args.command == "summary":
        dataset = discover(args.data)
        for split in ([None] if not dataset.has_split_folders else SPLITS):
            subset = dataset.in_split(split)
            if subset:
                print(f"{split or 'all'}: {len(subset)} images {class_counts(subset)}")
        return 0

    from hematovision_core.config import Settings

    out = args.out or Settings.from_env().data_dir / args.dataset
    try:
        if args.dataset == "pbc":
            written = downloads.download_bloodmnist(out)
        else:
            written = downloads.download_blood_cells(out)
    except downloads.DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {written} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
