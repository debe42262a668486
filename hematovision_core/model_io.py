"""A trained model is a folder: `model.keras`, its ONNX export `model.onnx`, and `model.json`,
checked against each other.

model.json records what anyone needs to use or reproduce the model: classes in order, display
names, input size, preprocessing (crop, test-time augmentation), temperature, the data and split
manifest checksum, training settings, validation and test metrics, and library versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

MODEL_FILE = "model.keras"  # what training writes and gradient work (TensorFlow) loads
RUNTIME_FILE = "model.onnx"  # what the dashboard serves from (ONNX Runtime): see export.py
METADATA_FILE = "model.json"
HISTORY_FILE = "history.json"
REQUIRED_KEYS = ("name", "classes", "display_names", "input_size", "preprocessing", "temperature",
                 "model_sha256")
# Optional "tta": "dihedral" averages logits over the 8 flips and rotations (see predict.py).
TTA_VIEWS = {"none": 1, "dihedral": 8}  # forward passes per image


class ModelFolderError(ValueError):
    """A model folder that is missing files or whose files do not match; message is for users."""


# (path, size, mtime_ns, inode) -> sha256: a page run asks for a model's metadata often, and
# hashing its 10 MB files each time cost more than the rest of the run. A changed file has a new
# mtime or size, so it is hashed again.
_digests: dict[tuple, str] = {}
_digests_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per version of the file (size, mtime, inode)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    with _digests_lock:
        _digests[key] = digest.hexdigest()
    return _digests[key]


def library_versions() -> dict[str, str]:
    import keras
    import numpy
    import onnxruntime
    import PIL
    import tensorflow

    return {"tensorflow": tensorflow.__version__, "keras": keras.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__,
            "pillow": PIL.__version__}


def read_json(path: Path) -> dict:
    """A JSON object from a file, or a ModelFolderError saying why it is not one."""
    try:
        payload = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ModelFolderError(f"{path} does not hold a JSON object.")
    return payload


def read_metadata(folder: str | Path) -> dict:
    """Read and check model.json, and that model.keras and model.onnx are the files it describes."""
    folder = Path(folder)
    model_path, runtime_path = folder / MODEL_FILE, folder / RUNTIME_FILE
    metadata_path = folder / METADATA_FILE
    for path in (model_path, runtime_path, metadata_path):
        if not path.is_file():
            raise ModelFolderError(f"{folder} is not a model folder: {path.name} is missing.")
    metadata = read_json(metadata_path)
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ModelFolderError(f"{metadata_path} lacks {', '.join(missing)}.")
    if len(metadata["display_names"]) != len(metadata["classes"]):
        raise ModelFolderError(f"{metadata_path}: display_names and classes differ in length.")
    if file_sha256(model_path) != metadata["model_sha256"]:
        raise ModelFolderError(f"{model_path} does not match the checksum in {metadata_path.name}.")
    if file_sha256(runtime_path) != (metadata.get("runtime") or {}).get("sha256"):
        raise ModelFolderError(
            f"{runtime_path} does not match the checksum in {metadata_path.name}; export it again "
            f"with `python -m hematovision_core.export --model {folder}`.")
    guard = metadata.get("ood")  # optional: the out-of-domain guard's file (ood.py)
    if guard and file_sha256_or_none(folder / guard.get("file", "ood.npz")) != guard.get("sha256"):
        raise ModelFolderError(
            f"{folder / guard.get('file', 'ood.npz')} is missing or does not match the checksum "
            f"in {metadata_path.name}; fit it again with "
            f"`python -m hematovision_core.ood --model {folder}`.")
    return metadata


def file_sha256_or_none(path: Path) -> str | None:
    """The file's sha256, or None when it is not a file."""
    return file_sha256(path) if Path(path).is_file() else None


def write_model_folder(model, folder: str | Path, metadata: dict) -> dict:
    """Save the Keras model, its ONNX export and its metadata (with both files' checksums)."""
    from hematovision_core.export import export_onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    metadata = {**metadata, "model_sha256": file_sha256(folder / MODEL_FILE),
                "runtime": export_onnx(model, folder / RUNTIME_FILE),
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
    """Write JSON through a uniquely named temporary file and a rename: a reader (another
    thread, process or replica) sees the old file or the new one, never half of one."""
    import tempfile

    path = Path(path)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as f:
            f.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


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
    """Sub-folders of `models_dir` whose model.json, model.keras and model.onnx are present and match."""
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
