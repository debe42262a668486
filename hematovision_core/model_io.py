"""A trained model is a folder: `model.keras`, its ONNX export `model.onnx`, and `model.json`,
checked against each other.

model.json records what anyone needs to use or reproduce the model: classes in order, display
names, input size, preprocessing (crop, test-time augmentation), temperature, the data and split
manifest checksum, training settings, validation and test metrics, and library versions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from hematovision_core.preprocessing import INPUT_SIZE

MODEL_FILE = "model.keras"  # what training writes and gradient work (TensorFlow) loads
RUNTIME_FILE = "model.onnx"  # what the dashboard serves from (ONNX Runtime): see export.py
METADATA_FILE = "model.json"
HISTORY_FILE = "history.json"
MANIFEST_FILE = "split.csv"  # the split manifest, when model.json does not name another file
GUARD_FILE = "ood.npz"  # the out-of-domain guard (ood.py), when model.json does not name another
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


def _check_folder(folder: Path) -> dict:
    """Read and check model.json, and that model.keras and model.onnx (and the guard) are the
    files it describes; returns the metadata."""
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
    guard_path = folder / (guard or {}).get("file", GUARD_FILE)
    if guard and file_sha256_or_none(guard_path) != guard.get("sha256"):
        raise ModelFolderError(
            f"{guard_path} is missing or does not match the checksum "
            f"in {metadata_path.name}; fit it again with "
            f"`python -m hematovision_core.ood --model {folder}`.")
    return metadata


@dataclass(frozen=True, eq=False)
class ModelFolder:
    """What a model folder's model.json says, read and checked once per version of its files.

    Pages, the quiz, the explorer and the command-line tools ask it for the model's dataset,
    split manifest, display names and model-card facts instead of reading model.json's keys each
    in their own way. `metadata` is the parsed model.json, shared by every reader: do not change
    it (`read_metadata` gives a copy to change and write back).
    """

    path: Path | None  # the folder; None for metadata built in memory (tests)
    metadata: dict  # model.json as read
    name: str
    classes: tuple[str, ...]  # in the model's output order
    display_names: tuple[str, ...]  # one per class, for people
    input_size: int  # pixels a side
    temperature: float  # calibration (calibration.py)
    crop: str  # "none", or "white-cell": look at the white cell of a smear (localize.py)
    tta: str  # "none", or "dihedral": average over the 8 flips and rotations
    model_sha256: str  # of model.keras: names this version of the model in caches
    dataset: str | None  # data.dataset: where its images are in the data folder ("pbc",
    # "blood-cells/TRAIN"); None when unknown
    manifest_file: Path | None  # where its split manifest is declared to be (may be absent)
    init_from: str | None  # training.init_from: the model folder it started from, if any
    # Model-card facts, as training, evaluation, cross-validation and recalibration recorded them:
    architecture: str
    preprocessing: str  # what is done to an image before the network sees it, in words
    image_count: int  # images of the dataset it was trained and evaluated on (data.images)
    split_counts: dict  # split -> class -> images at training time (data.counts)
    metrics: dict  # "validation", "test", "cross_validation", "augmented_test" -> figures
    training: dict  # the training settings
    calibration: dict | None  # how the temperature was last refit, with its reliability table
    guard: dict | None  # the out-of-domain guard's entry (file, checksum, score, threshold)
    library_versions: dict  # library -> version it was trained and exported with

    @classmethod
    def from_metadata(cls, metadata: dict, path: str | Path | None = None) -> "ModelFolder":
        """The record of already parsed metadata, not checked against any file (`read` checks).

        Only "classes" is needed: metadata written in a test may leave out display names (the
        class names then), the input size (224) and the temperature (1.0).
        """
        path = Path(path) if path is not None else None
        data = metadata.get("data") or {}
        counts = data.get("counts") or {}
        training = metadata.get("training") or {}
        classes = tuple(metadata["classes"])
        tta = metadata.get("tta", "none")
        if tta not in TTA_VIEWS:
            raise ModelFolderError(f"Unknown test-time augmentation {tta!r} in model.json; "
                                   f"expected one of {tuple(TTA_VIEWS)}.")
        return cls(
            path=path, metadata=metadata,
            name=metadata.get("name", path.name if path else "model"),
            classes=classes, display_names=tuple(metadata.get("display_names", classes)),
            input_size=int(metadata.get("input_size", INPUT_SIZE)),
            temperature=float(metadata.get("temperature", 1.0)),
            crop=metadata.get("crop", "none"), tta=tta,
            model_sha256=metadata.get("model_sha256", ""),
            dataset=data.get("dataset"),
            manifest_file=path / (data.get("split_manifest") or MANIFEST_FILE) if path else None,
            init_from=training.get("init_from"),
            architecture=metadata.get("architecture", "MobileNetV2"),
            preprocessing=metadata.get("preprocessing", ""),
            image_count=int(data.get("images", sum(sum(c.values()) for c in counts.values()))),
            split_counts=counts, metrics=metadata.get("metrics") or {}, training=training,
            calibration=metadata.get("calibration") or None, guard=metadata.get("ood") or None,
            library_versions=metadata.get("library_versions") or {})

    @classmethod
    def read(cls, folder: str | Path) -> "ModelFolder":
        """The checked record of a model folder, read and hashed once per version of its files
        (model.json, model.keras, model.onnx, the guard); a changed file is read again."""
        folder = Path(folder)
        key = str(folder.resolve())
        version = _files_version(folder / name for name in
                                 (METADATA_FILE, MODEL_FILE, RUNTIME_FILE, GUARD_FILE))
        with _folders_lock:
            cached = _folders.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        record = cls.from_metadata(_check_folder(folder), folder)
        with _folders_lock:
            _folders[key] = (version, record)
        return record

    @property
    def views(self) -> int:
        """Forward passes per image (test-time augmentation)."""
        return TTA_VIEWS[self.tta]

    @property
    def manifest(self) -> Path | None:
        """The model's split manifest on this machine, or None where there is none."""
        return self.manifest_file if self.manifest_file and self.manifest_file.is_file() else None


# resolved folder -> (version of its files, ModelFolder)
_folders: dict[str, tuple[tuple, ModelFolder]] = {}
_folders_lock = threading.Lock()


def _files_version(paths) -> tuple:
    """(size, mtime, inode) of each file, None for a missing one: a changed file changes it."""
    marks = []
    for path in paths:
        try:
            stat = os.stat(path)
            marks.append((stat.st_size, stat.st_mtime_ns, stat.st_ino))
        except OSError:
            marks.append(None)
    return tuple(marks)


def read_metadata(folder: str | Path) -> dict:
    """Checked model.json of a folder (see `ModelFolder.read`), as a copy the caller may change
    and write back."""
    return copy.deepcopy(ModelFolder.read(folder).metadata)


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


def list_model_folders(models_dir: str | Path) -> list[Path]:
    """Sub-folders of `models_dir` whose model.json, model.keras and model.onnx are present and match."""
    found = []
    root = Path(models_dir)
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            ModelFolder.read(folder)
        except ModelFolderError:
            continue
        found.append(folder)
    return found
