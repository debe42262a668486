"""Export a trained Keras model to ONNX, the format the dashboard serves it from.

The served Streamlit process never imports TensorFlow (Streamlit resets Keras after every script
run, see README), so every model folder carries `model.onnx` beside `model.keras`: the forward
pass of `model.forward_model` (logits, pooled features and class maps in one graph), written here
and checked by its sha256 in model.json. ONNX Runtime was chosen by the numbers in README
("Serving runtime"): its logits match TensorFlow's to 1e-5, its `run` is safe to call from several
threads, and it is 4-5x faster than `tf.function` on one image here.

Regenerate the file of a shipped model (after a library upgrade, say):

    python -m hematovision_core.export --model models/pbc-8class
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from hematovision_core.model_io import (METADATA_FILE, MODEL_FILE, RUNTIME_FILE, file_sha256,
                                        read_json, write_json)

log = logging.getLogger(__name__)

ONNX_OPSET = 17  # supported by ONNX Runtime >= 1.14 and by tf2onnx 1.17
INPUT_NAME = "image"  # float32 (N, size, size, 3) in [-1, 1]


def export_onnx(model, path: str | Path) -> dict:
    """Write `model`'s forward pass to `path` as ONNX; returns model.json's "runtime" entry."""
    import tensorflow as tf
    import tf2onnx

    from hematovision_core.model import forward_model

    forward = forward_model(model)
    size = int(model.input.shape[1])
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME),)
    path = Path(path)
    # Write next to the target and rename, so a reader never sees half a file.
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        partial = Path(scratch) / path.name
        tf2onnx.convert.from_keras(forward, input_signature=signature, opset=ONNX_OPSET,
                                   output_path=str(partial))
        partial.replace(path)
    return {"format": "onnx", "file": path.name, "opset": ONNX_OPSET,
            "sha256": file_sha256(path), "tf2onnx": tf2onnx.__version__}


def export_folder(folder: str | Path) -> dict:
    """(Re)write `model.onnx` of a model folder from its `model.keras` and record it in model.json.

    The Keras file is checked against model.json first, so a stale export is never blessed.
    """
    import keras

    folder = Path(folder)
    metadata = read_json(folder / METADATA_FILE)
    if file_sha256(folder / MODEL_FILE) != metadata.get("model_sha256"):
        raise ValueError(f"{folder / MODEL_FILE} does not match the checksum in model.json.")
    model = keras.models.load_model(folder / MODEL_FILE, compile=False)
    metadata["runtime"] = export_onnx(model, folder / RUNTIME_FILE)
    write_json(folder / METADATA_FILE, metadata)
    return metadata["runtime"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, nargs="+", required=True, help="model folder(s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for folder in args.model:
        runtime = export_folder(folder)
        log.info("%s: wrote %s (sha256 %s)", folder, runtime["file"], runtime["sha256"][:12])
    return 0


if __name__ == "__main__":
    sys.exit(main())
