"""Download the public datasets on a connected machine and write them out as class folders.

- pbc: BloodMNIST at 224x224 (the PBC images, resized, with MedMNIST's official split), fetched
  through the `medmnist` package's dataset index and written as `<out>/<split>/<class>/*.png`.
- blood-cells: Kaggle `paultimothymooney/blood-cells` through `kagglehub`; its
  `images/{TRAIN,TEST,TEST_SIMPLE}` folders are copied to `<out>/`.

Both packages are optional (`pip install medmnist` / `pip install kagglehub`): the app and the
training code never need them.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

# MedMNIST's label order for BloodMNIST (medmnist.INFO["bloodmnist"]["label"]), as our class names.
BLOODMNIST_CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
                      "neutrophil", "platelet")
MEDMNIST_SPLITS = {"train": "train", "val": "val", "test": "test"}
KAGGLE_BLOOD_CELLS = "paultimothymooney/blood-cells"
# What `python -m hematovision_core.data download` accepts: each is a top-level folder of the
# data folder (blood-cells holds TRAIN, TEST and TEST_SIMPLE).
DATASETS = ("pbc", "blood-cells")


def download_command(dataset: str) -> str | None:
    """The command that downloads the data folder `dataset` ("pbc", "blood-cells/TRAIN"), or
    None for a folder no command downloads (a lab's own images)."""
    top = Path(dataset).parts[0] if Path(dataset).parts else ""
    return f"python -m hematovision_core.data download {top}" if top in DATASETS else None


class DownloadError(RuntimeError):
    """A download that cannot happen here (no network, missing package); message for users."""


def convert_medmnist_npz(npz_path: Path, out: Path) -> int:
    """Write a MedMNIST .npz (`<split>_images` uint8 (N, H, W[, 3]), `<split>_labels` (N, 1))
    as `<out>/<split>/<class>/bloodmnist_<split>_<index>.png`; returns the number of images."""
    written = 0
    with np.load(npz_path) as archive:
        for key, split in MEDMNIST_SPLITS.items():
            if f"{key}_images" not in archive:
                continue
            images, labels = archive[f"{key}_images"], archive[f"{key}_labels"].reshape(-1)
            if len(images) != len(labels):
                raise ValueError(f"{npz_path}: {key} has {len(images)} images, {len(labels)} labels")
            for index, (image, label) in enumerate(tqdm(list(zip(images, labels)), desc=split,
                                                       unit="img", mininterval=2)):
                folder = out / split / BLOODMNIST_CLASSES[int(label)]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"bloodmnist_{split}_{index:05d}.png")
                written += 1
    return written


def _fetch(url: str, target: Path) -> None:
    """Download with a progress bar; a clear DownloadError when the network is not there."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".part")
            with open(partial, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                                desc=target.name) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            partial.rename(target)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DownloadError(f"Could not download {url}: {error}. Is this machine online?") from error


def download_bloodmnist(out: Path, size: int = 224) -> int:
    """BloodMNIST (PBC at `size` px) -> class folders under `out`; returns images written."""
    try:
        from medmnist import INFO
    except ImportError as error:
        raise DownloadError("The pbc download needs the medmnist package: pip install medmnist") from error
    info = INFO["bloodmnist"]
    url = info[f"url_{size}"] if size != 28 else info["url"]
    npz = Path(out) / f"bloodmnist_{size}.npz"
    if not npz.exists():
        _fetch(url, npz)
    written = convert_medmnist_npz(npz, Path(out))
    npz.unlink()
    return written


def download_blood_cells(out: Path) -> int:
    """Kaggle blood-cells -> `<out>/{TRAIN,TEST,TEST_SIMPLE}/<CLASS>/*`; returns images copied."""
    try:
        import kagglehub
    except ImportError as error:
        raise DownloadError("The blood-cells download needs kagglehub: pip install kagglehub") from error
    try:
        root = Path(kagglehub.dataset_download(KAGGLE_BLOOD_CELLS))
    except Exception as error:  # kagglehub raises many kinds; all mean "could not download"
        raise DownloadError(f"Could not download {KAGGLE_BLOOD_CELLS}: {error}. "
                            "Is this machine online (and Kaggle credentials set if needed)?") from error
    images = next((p for p in root.rglob("images") if (p / "TRAIN").is_dir()), None)
    if images is None:
        raise DownloadError(f"Unexpected layout in {root}: no images/TRAIN folder.")
    for split in ("TRAIN", "TEST", "TEST_SIMPLE"):
        if (images / split).is_dir():
            shutil.copytree(images / split, Path(out) / split, dirs_exist_ok=True)
    return sum(1 for p in Path(out).rglob("*") if p.is_file())
