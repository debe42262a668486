"""A trained model is a folder: `model.keras` plus `model.json`, checked against each other.

model.json records what anyone needs to use or reproduce the model: classes in order, display
names, input size, preprocessing (crop, test-time augmentation), temperature, the data and split
manifest checksum, training settings, validation and test metrics, and library versions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MODEL_FILE = "model.keras"
METADATA_FILE = "model.json"
HISTORY_FILE = "history.json"
REQUIRED_KEYS = ("name", "classes", "display_names", "input_size", "preprocessing", "temperature",
                 "model_sha256")
# Optional "tta": "dihedral" averages logits over the 8 flips and rotations (see predict.py).
TTA_VIEWS = {"none": 1, "dihedral": 8}  # forward passes per image


class ModelFolderError(ValueError):
    """A model folder that is missing files or whose files do not match; message is for users."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import keras
    import numpy
    import PIL
    import tensorflow

    return {"tensorflow": tensorflow.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__}


def read_metadata(folder: str | Path) -> dict:
    """Read and check model.json and that model.keras is the file it describes."""
    folder = Path(folder)
    model_path, metadata_path = folder / MODEL_FILE, folder / METADATA_FILE
    for path in (model_path, metadata_path):
        if not path.is_file():
            raise ModelFolderError(f"{folder} is not a model folder: {path.name} is missing.")
    try:
        metadata = json.loads(metadata_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{metadata_path} is not valid JSON: {error}") from error
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ModelFolderError(f"{metadata_path} lacks {', '.join(missing)}.")
    if len(metadata["display_names"]) != len(metadata["classes"]):
        raise ModelFolderError(f"{metadata_path}: display_names and classes differ in length.")
    if file_sha256(model_path) != metadata["model_sha256"]:
        raise ModelFolderError(f"{model_path} does not match the checksum in {metadata_path.name}.")
    return metadata


def write_model_folder(model, folder: str | Path, metadata: dict) -> dict:
    """Save the Keras model and its metadata (with the model file's checksum) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    metadata = {**metadata, "model_sha256": file_sha256(folder / MODEL_FILE),
                "library_versions": library_versions()}
    write_json(folder / METADATA_FILE, metadata)
    return metadata


def record_metrics(folder: str | Path, key: str, figures: dict) -> None:
    """Add figures measured after training (cross-validation, augmented test copies) to
    model.json's metrics, where the model card shows them. The model file is not touched."""
    metadata = read_metadata(folder)  # refuses a folder that is not a complete model
    metadata.setdefault("metrics", {})[key] = figures
    write_json(Path(folder) / METADATA_FILE, metadata)


def write_json(path: Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def dataset_name(metadata: dict) -> str | None:
    """The model's dataset as a path inside the data folder ("pbc", "blood-cells/TRAIN")."""
    return (metadata.get("data") or {}).get("dataset")


def manifest_path(folder: str | Path | None, metadata: dict) -> Path | None:
    """The model's split manifest (split.csv in its folder), or None where there is none."""
    if folder is None:
        return None
    path = Path(folder) / ((metadata.get("data") or {}).get("split_manifest") or "split.csv")
    return path if path.is_file() else None


def list_model_folders(models_dir: str | Path) -> list[Path]:
    """Sub-folders of `models_dir` whose model.json and model.keras are present and match."""
    found = []
    root = Path(models_dir)
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            read_metadata(folder)
        except ModelFolderError:
            continue
        found.append(folder)
    return found
