"""CPU runtimes side by side for one model: TensorFlow, ONNX Runtime, OpenVINO and LiteRT.

    HEMATOVISION_DATA=../shared/data python -m benchmarks.runtimes \
        [--model models/pbc-8class] [--images 64] [--repeats 30] [--json OUT]

The served process imports no TensorFlow (STYLE.md, point 4), so its forward passes need an
exported runtime; this measures the candidates so that one can be chosen on evidence. Every
runtime starts from the same `model.keras` (its `head_logits` output, one view: a model's
test-time augmentation would multiply every runtime's cost alike) and sees the same real JPEGs:

(a) one image from JPEG bytes: `preprocess` + forward pass, p50 and p95 over --repeats;
(b) a batch of 32 preprocessed images: images/s, the median of BATCH_ROUNDS timed batches;
(c) the largest |logit - TensorFlow's logit| over --images images, and whether the predicted
    class agrees on every one of them;
(d) conversion time: from the Keras model to a runtime ready to call.

A shared 2-core machine is noisy in bursts, so all runtimes are measured in one process,
interleaved within each round (starting one runtime further along each round), and medians
are quoted. Figures are printed, not asserted. The extra packages are listed in
benchmarks/requirements.txt; a runtime whose package is missing shows as "not installed".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from hematovision_core.config import Settings
from hematovision_core.preprocessing import preprocess

# Parameters
BATCH_SIZE = 32  # the batch of (b), and the chunk size for (c)
BATCH_ROUNDS = 5  # (b) quotes the median of this many timed batches per runtime
WARM_UP_CALLS = 3  # untimed calls per runtime and batch size: first calls trace and allocate
CORES = len(os.sched_getaffinity(0))  # threads a runtime may use: all the cores we are given
ONNX_OPSET = 17


@dataclass(frozen=True)
class Runtime:
    """A ready-to-call forward pass and what it took to get there."""

    name: str
    logits: Callable[[np.ndarray], np.ndarray]  # (N, S, S, 3) float32 in [-1, 1] -> (N, classes)
    conversion_seconds: float  # Keras model -> ready to call: export, save, load or compile
    version: str


@contextlib.contextmanager
def temporary_files_in(folder: Path) -> Iterator[None]:
    """Point Python's and C++ libraries' temp files into `folder` while converting.

    The TFLite converter, tf2onnx and autograph write scratch files of their own; sending them
    into our TemporaryDirectory means nothing is left behind in /tmp.
    """
    saved_tempdir, saved_environment = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(folder), str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_environment is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_environment


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Swallow what converters print (a TensorSpec per captured weight) so the table stays
    readable; their errors still raise."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def compiled_forward(logits_model, size: int):
    """The Keras logits model in a `tf.function`, traced for any batch size, as
    `predict.Classifier` runs it."""
    import tensorflow as tf

    forward = tf.function(lambda batch: logits_model(batch, training=False),
                          input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    forward.get_concrete_function()  # trace now, so that tracing is not timed as inference
    return forward


def build_tensorflow(logits_model, size: int, work_dir: Path) -> Runtime:
    """The baseline, exactly as the engine runs it today; "conversion" is the tracing."""
    import tensorflow as tf

    tick = time.perf_counter()
    forward = compiled_forward(logits_model, size)
    seconds = time.perf_counter() - tick
    return Runtime("TensorFlow (tf.function)", lambda batch: forward(tf.constant(batch)).numpy(),
                   seconds, tf.__version__)


def build_onnx_runtime(logits_model, size: int, work_dir: Path) -> Runtime:
    """ONNX Runtime on the CPU: exported with tf2onnx, served without TensorFlow."""
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    tick = time.perf_counter()
    path = work_dir / "model.onnx"
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    with quiet_stdout():
        tf2onnx.convert.from_keras(logits_model, input_signature=signature, opset=ONNX_OPSET,
                                   output_path=str(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = CORES
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    seconds = time.perf_counter() - tick
    input_name = session.get_inputs()[0].name
    return Runtime("ONNX Runtime", lambda batch: session.run(None, {input_name: batch})[0],
                   seconds, onnxruntime.__version__)


def build_openvino(logits_model, size: int, work_dir: Path, precision: str | None,
                   fp16_weights_file: bool = False) -> Runtime:
    """OpenVINO on the CPU with the LATENCY hint, from a saved IR file.

    Args:
        precision: "f32" pins float32 arithmetic; None keeps OpenVINO's default, which is bf16 on
            a CPU with AVX512-BF16 or AMX: faster, but the logits move.
        fp16_weights_file: `openvino.save_model` stores weights as float16 unless told not to;
            True keeps that default, to show what it costs in agreement with TensorFlow.
    """
    import openvino

    tick = time.perf_counter()
    with quiet_stdout():
        converted = openvino.convert_model(
            logits_model, example_input=np.zeros((1, size, size, 3), np.float32))
    path = work_dir / f"openvino-{precision or 'default'}-{int(fp16_weights_file)}.xml"
    openvino.save_model(converted, path, compress_to_fp16=fp16_weights_file)
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = openvino.Core().compile_model(path, "CPU", config)
    seconds = time.perf_counter() - tick
    # One infer request, reused: a request is not safe to use from two threads at once.
    request = compiled.create_infer_request()
    actual_precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    name = f"OpenVINO {actual_precision}" + ("" if precision else " (its default here)")
    if fp16_weights_file:
        name += ", fp16 weights file"
    return Runtime(name, lambda batch: request.infer({0: batch})[0], seconds,
                   openvino.get_version().split("-")[0])


class LiteRTByBatchSize:
    """One LiteRT interpreter per batch size, each with its tensors planned for that size.

    Resizing an interpreter's input re-plans every tensor, too slow to do on each call, so a
    batch of 1 and a batch of 32 get their own interpreter over the same model bytes.
    An interpreter is not safe to call from two threads at once.
    """

    def __init__(self, interpreter_class, model_content: bytes, size: int):
        self._interpreter_class = interpreter_class
        self._model_content = model_content
        self._size = size
        self._interpreters = {}

    def interpreter(self, batch_size: int):
        """The interpreter for this batch size, made and allocated on first use."""
        if batch_size not in self._interpreters:
            interpreter = self._interpreter_class(model_content=self._model_content,
                                                  num_threads=CORES)
            input_index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(input_index, [batch_size, self._size, self._size, 3])
            interpreter.allocate_tensors()
            self._interpreters[batch_size] = interpreter
        return self._interpreters[batch_size]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        interpreter = self.interpreter(len(batch))
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])  # a copy


def build_litert(logits_model, size: int, work_dir: Path) -> Runtime:
    """LiteRT (the TFLite interpreter, XNNPACK on the CPU), float32, no quantization."""
    import tensorflow as tf
    from ai_edge_litert import __version__ as litert_version
    from ai_edge_litert.interpreter import Interpreter

    tick = time.perf_counter()
    # Through a SavedModel in our folder: `from_concrete_functions` on the traced Keras 3 model
    # converts without complaint but every logit comes out NaN (seen with TF 2.21).
    saved_model = work_dir / "litert-saved-model"
    with quiet_stdout():
        logits_model.export(str(saved_model))  # serving signature (None, S, S, 3) float32
        model_content = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    interpreters = LiteRTByBatchSize(Interpreter, model_content, size)
    for batch_size in (1, BATCH_SIZE):  # allocate both now: part of getting ready
        interpreters.interpreter(batch_size)
    seconds = time.perf_counter() - tick
    return Runtime("LiteRT", interpreters.logits, seconds, litert_version)


# (label if it cannot be built, builder); TensorFlow first: it is the reference for every ratio.
BUILDERS = (
    ("TensorFlow (tf.function)", build_tensorflow),
    ("ONNX Runtime", build_onnx_runtime),
    ("OpenVINO f32", functools.partial(build_openvino, precision="f32")),
    ("OpenVINO default precision", functools.partial(build_openvino, precision=None)),
    ("OpenVINO f32, fp16 weights file",
     functools.partial(build_openvino, precision="f32", fp16_weights_file=True)),
    ("LiteRT", build_litert),
)


def try_build(builder, logits_model, size: int, work_dir: Path) -> Runtime | str:
    """A runtime, or the reason it cannot be measured, so one broken runtime spoils no others."""
    try:
        return builder(logits_model, size, work_dir)
    except ImportError as error:
        return f"not installed ({error.name}): pip install -r benchmarks/requirements.txt"
    except Exception as error:  # any converter failure: report it in the table and go on
        first_line = (str(error).strip().splitlines() or [""])[0][:120]
        return f"failed: {type(error).__name__}: {first_line}"


def read_sample_jpegs(data_dir: Path, count: int) -> list[bytes]:
    """`count` real JPEG files spread over the classes: every k-th file of the sorted list."""
    paths = sorted(Path(data_dir).rglob("*.jpg")) if Path(data_dir).is_dir() else []
    if not paths:
        raise ValueError(f"No .jpg files under {data_dir}: pass --data or set HEMATOVISION_DATA.")
    return [path.read_bytes() for path in paths[:: max(1, len(paths) // count)][:count]]


def rotated(runtimes: list[Runtime], round_index: int) -> list[Runtime]:
    """The runtimes starting one further along each round, so none always goes first."""
    start = round_index % len(runtimes)
    return runtimes[start:] + runtimes[:start]


def warm_up(runtimes: list[Runtime], images: np.ndarray) -> None:
    """Untimed first calls at both batch sizes: they trace, allocate and fill caches."""
    for runtime in runtimes:
        for _ in range(WARM_UP_CALLS):
            runtime.logits(images[:1])
            runtime.logits(images[:BATCH_SIZE])


def time_single_images(runtimes: list[Runtime], jpegs: list[bytes], size: int, crop: str,
                       repeats: int) -> dict[str, dict[str, list[float]]]:
    """(a) JPEG bytes -> preprocess -> forward, one image per call; seconds per call.

    Returns {runtime name: {"total": [...], "forward": [...]}}; "forward" leaves out decoding.
    """
    seconds = {runtime.name: {"total": [], "forward": []} for runtime in runtimes}
    for round_index in range(repeats):
        jpeg = jpegs[round_index % len(jpegs)]
        for runtime in rotated(runtimes, round_index):
            start = time.perf_counter()
            image = preprocess(jpeg, size, crop)[None]  # (1, S, S, 3)
            preprocessed = time.perf_counter()
            runtime.logits(image)
            end = time.perf_counter()
            seconds[runtime.name]["total"].append(end - start)
            seconds[runtime.name]["forward"].append(end - preprocessed)
    return seconds


def time_batches(runtimes: list[Runtime], batch: np.ndarray, rounds: int) -> dict[str, list[float]]:
    """(b) Seconds per forward pass of one preprocessed batch, runtimes interleaved."""
    seconds = {runtime.name: [] for runtime in runtimes}
    for round_index in range(rounds):
        for runtime in rotated(runtimes, round_index):
            start = time.perf_counter()
            runtime.logits(batch)
            seconds[runtime.name].append(time.perf_counter() - start)
    return seconds


def all_logits(runtime: Runtime, images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) -> (N, classes), in chunks of BATCH_SIZE."""
    return np.concatenate([runtime.logits(images[start : start + BATCH_SIZE])
                           for start in range(0, len(images), BATCH_SIZE)])


def compare_with_reference(runtimes: list[Runtime], images: np.ndarray) -> dict[str, dict]:
    """(c) Largest |logit difference| from the first runtime and how many argmaxes agree."""
    reference = all_logits(runtimes[0], images)
    comparison = {}
    for runtime in runtimes:
        logits = all_logits(runtime, images)
        comparison[runtime.name] = {
            "max_abs_logit_difference": float(np.max(np.abs(logits - reference))),
            "same_class": int(np.sum(logits.argmax(axis=1) == reference.argmax(axis=1))),
            "images": len(images),
        }
    return comparison


def milliseconds(seconds: list[float], percentile: float) -> float:
    return round(float(np.percentile(seconds, percentile)) * 1000, 1)


def summarize(runtimes: list[Runtime], single: dict, batches: dict, agreement: dict) -> list[dict]:
    """One row of figures per runtime; ratios are to the first runtime, TensorFlow."""
    reference_name = runtimes[0].name
    reference_p50 = float(np.median(single[reference_name]["total"]))
    reference_rate = BATCH_SIZE / float(np.median(batches[reference_name]))
    rows = []
    for runtime in runtimes:
        p50 = float(np.median(single[runtime.name]["total"]))
        rate = BATCH_SIZE / float(np.median(batches[runtime.name]))
        rows.append({
            "runtime": runtime.name,
            "version": runtime.version,
            "single_image_p50_ms": milliseconds(single[runtime.name]["total"], 50),
            "single_image_p95_ms": milliseconds(single[runtime.name]["total"], 95),
            "single_image_time_share_of_tensorflow": round(p50 / reference_p50, 2),
            "forward_only_p50_ms": milliseconds(single[runtime.name]["forward"], 50),
            "batch32_images_per_s": round(rate, 1),
            "batch32_throughput_relative_to_tensorflow": round(rate / reference_rate, 2),
            **agreement[runtime.name],
            "conversion_s": round(runtime.conversion_seconds, 1),
        })
    return rows


def markdown_table(rows: list[dict], unavailable: dict[str, str]) -> str:
    """The rows as one Markdown table; runtimes that could not be measured say why."""
    header = ("| Runtime | version | 1 image from JPEG: p50 ms | p95 ms "
              "| p50 time as a share of TensorFlow's | forward only: p50 ms "
              "| batch 32: images/s | batch 32 images/s ÷ TensorFlow's "
              "| max abs logit diff vs TF | same class as TF | conversion s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        lines.append(
            f"| {row['runtime']} | {row['version']} | {row['single_image_p50_ms']} "
            f"| {row['single_image_p95_ms']} | {row['single_image_time_share_of_tensorflow']:.2f} "
            f"| {row['forward_only_p50_ms']} | {row['batch32_images_per_s']} "
            f"| {row['batch32_throughput_relative_to_tensorflow']:.2f} "
            f"| {row['max_abs_logit_difference']:.2g} | {row['same_class']}/{row['images']} "
            f"| {row['conversion_s']} |")
    for label, reason in unavailable.items():
        lines.append(f"| {label} | {reason} |" + " – |" * 9)
    return "\n".join(lines)


def load_logits_model(model_folder: Path):
    """The checked model folder's logits model (one view), input size and crop."""
    from hematovision_core.keras_model import KerasClassifier

    classifier = KerasClassifier.load(model_folder)  # refuses a folder whose files do not match
    return classifier.logits_model, classifier


def describe_machine() -> str:
    """CPU model and core count, for the notes under the table."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {CORES} cores available"


def notes(classifier, image_count: int, repeats: int) -> list[str]:
    """What the table measured, in words, including what it left out."""
    lines = [
        f"Model: {classifier.folder} ({len(classifier.classes)} classes, input "
        f"{classifier.input_size}x{classifier.input_size}, crop {classifier.crop!r}); "
        f"{image_count} real JPEGs; machine: {describe_machine()}.",
        f"(a) p50/p95 over {repeats} single-image calls (decode + `preprocess` + forward, "
        f"cycling through the images); share < 1 means faster than TensorFlow.",
        f"(b) median of {BATCH_ROUNDS} forward passes of {BATCH_SIZE} preprocessed images; "
        "÷ TensorFlow's > 1 means more images/s than TensorFlow.",
        "(c) over all the images above, against TensorFlow's logits; (d) Keras model -> "
        "ready to call (TensorFlow: tracing the tf.function).",
    ]
    if classifier.views > 1:
        lines.append(f"This model averages {classifier.views} views at test time "
                     f"({classifier.tta!r}); here every runtime runs one view, which is enough "
                     "to compare runtimes (each would pay the 8x alike).")
    return lines


def measure(model_folder: Path, data_dir: Path, image_count: int, repeats: int) -> dict:
    """Build every runtime from one model file and measure them side by side."""
    logits_model, classifier = load_logits_model(model_folder)
    size, crop = classifier.input_size, classifier.crop
    jpegs = read_sample_jpegs(data_dir, image_count)
    images = np.stack([preprocess(jpeg, size, crop) for jpeg in jpegs])  # (N, S, S, 3)
    batch = np.ascontiguousarray(np.resize(images, (BATCH_SIZE, size, size, 3)))  # repeats if N < 32
    runtimes, unavailable = [], {}
    with tempfile.TemporaryDirectory(prefix="hematovision-runtimes-") as folder, \
            temporary_files_in(Path(folder)):
        for label, builder in BUILDERS:
            built = try_build(builder, logits_model, size, Path(folder))
            if isinstance(built, Runtime):
                runtimes.append(built)
            else:
                unavailable[label] = built
            print(f"{label}: {built.conversion_seconds:.1f} s" if isinstance(built, Runtime)
                  else f"{label}: {built}", file=sys.stderr, flush=True)
        if not runtimes or runtimes[0].name != "TensorFlow (tf.function)":
            raise RuntimeError(f"The TensorFlow baseline failed: {unavailable}")
        warm_up(runtimes, batch)
        single = time_single_images(runtimes, jpegs, size, crop, repeats)
        batches = time_batches(runtimes, batch, BATCH_ROUNDS)
        agreement = compare_with_reference(runtimes, images)
    rows = summarize(runtimes, single, batches, agreement)
    return {"model": str(model_folder), "images": len(jpegs), "repeats": repeats,
            "machine": describe_machine(), "rows": rows, "unavailable": unavailable,
            "notes": notes(classifier, len(jpegs), repeats)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=settings.models_dir / "pbc-8class")
    parser.add_argument("--data", type=Path, default=settings.data_dir / "pbc",
                        help="JPEGs to measure on (default $HEMATOVISION_DATA/pbc)")
    parser.add_argument("--images", type=int, default=64, help="images for (c), and cycled in (a)")
    parser.add_argument("--repeats", type=int, default=30, help="single-image calls per runtime")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        raise ValueError("--images and --repeats must be at least 1.")

    results = measure(args.model, args.data, args.images, args.repeats)
    results["command"] = shlex.join(["python", "-m", "benchmarks.runtimes", *argv])
    print(markdown_table(results["rows"], results["unavailable"]))
    print()
    for line in results["notes"]:
        print(f"- {line}")
    print(f"\nCommand: `{results['command']}`")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
