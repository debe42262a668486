"""The served forward pass: a model folder's `model.onnx` on ONNX Runtime, and one server-wide
limit on concurrent model work.

This module never imports TensorFlow or Keras, so neither does the dashboard's process (Streamlit
calls `keras.backend.clear_session()` after every script run once keras is imported: 0.2 s a
run, and it resets Keras' global state under other sessions' threads).
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hematovision_core.model import FORWARD_OUTPUTS, LOGITS_LAYER
from hematovision_core.model_io import RUNTIME_FILE, ModelFolderError


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, as a container or `taskset` sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# All model work in the process (classification, heatmaps, the explorer's passes) takes a slot
# first: more passes at once than the cores can run only slow every one of them down, and a burst
# of uploads would starve the quiz. A pass runs on one thread and there is a slot per core:
# MobileNetV2's small depthwise layers split poorly over threads. On this project's 2-core
# machine (pbc-8class, passes of 8, `python -m benchmarks.pass_threads`) two one-thread passes
# at once gave 1.13x and 1.31x the images/s of one two-thread pass at a time (two runs), and
# one image alone took 10-13 ms against 8.5-9. So two uploads run side by side, and a batch is
# spread over the slots (see `pass_sizes`).
THREADS_PER_PASS = 1
MODEL_WORK_SLOTS = max(1, cpu_count() // THREADS_PER_PASS)
_model_work = threading.BoundedSemaphore(MODEL_WORK_SLOTS)
_waiting = 0  # threads queued for a slot, for "n ahead of you" notices
_waiting_lock = threading.Lock()

# ONNX Runtime's CPU arena grows to the largest pass it has run and keeps that memory for the
# life of the process. Measured on pbc-8class (2 cores, `python -m benchmarks.pass_size`): RSS
# after passes of 1, 8 and 32 images 87, 170 and 456 MiB, while throughput is flat from 4 images
# up within each run (100-170 images/s across runs on this shared machine). So a pass carries at
# most PASS_INPUTS images (one image's 8 dihedral views) and a longer batch runs as several
# passes, each taking a slot (an explorer batch no longer holds the cores for 200 ms while an
# upload waits). The warm-up runs a full pass on every slot at once, so the arena has its working
# size before the first visitor and does not grow with a lecture.
PASS_INPUTS = 8


def pass_sizes(count: int) -> list[int]:
    """How a batch of `count` images is cut into passes: spread evenly over the slots (8 images
    on 2 cores: two passes of 4, one per core), none longer than PASS_INPUTS."""
    per_pass = max(1, min(PASS_INPUTS, -(-count // MODEL_WORK_SLOTS)))
    return [min(per_pass, count - start) for start in range(0, count, per_pass)]


def limit_blas_threads() -> None:
    """Run NumPy's BLAS (OpenBLAS) on one thread in this process, from now on.

    OpenBLAS starts a thread per core, and after each product they spin a while waiting for the
    next, on the cores that ONNX Runtime's passes and the JPEG decoders need. The products next to
    the forward pass are small (the domain guard's whitening: 16 x 1280 by 1280 x 1280, under a
    millisecond on one thread). The explorer's pass over 1,600 PBC images (2 cores, alternating
    runs, medians of 3): 90.6 images/s as it was, 113.5 with BLAS on one thread, 123.0 with that
    and a thread per pass. threadpoolctl finds whichever BLAS NumPy loaded and sets it at run
    time; the OPENBLAS_NUM_THREADS variable counts only if set before NumPy is first imported.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def session_options(threads: int = THREADS_PER_PASS):
    """ONNX Runtime's options for the served pass, on `threads` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the server log is for people
    # ONNX Runtime's threads spin on a core after each pass, waiting for the next. In a server
    # whose Python threads (and the explorer's decoders) need that core, it is waste: with
    # spinning off the explorer's pass took 96-102 images per CPU-second instead of 69-78.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@contextlib.contextmanager
def model_work_slot() -> Iterator[None]:
    """Hold one of the server's MODEL_WORK_SLOTS for the duration (waits for a free one)."""
    global _waiting
    with _waiting_lock:
        _waiting += 1
    try:
        _model_work.acquire()
    finally:
        with _waiting_lock:
            _waiting -= 1
    try:
        yield
    finally:
        _model_work.release()


def queued_model_work() -> int:
    """How many passes are waiting for a slot right now."""
    return _waiting


@dataclass(frozen=True, eq=False)
class ForwardPass:
    logits: np.ndarray  # (N, num_classes) float32, uncalibrated
    pooled: np.ndarray  # (N, 1280) float32: global average pool of the last block
    class_maps: np.ndarray  # (N, h, w, num_classes) float32: class evidence per position (CAM)

    @classmethod
    def concatenate(cls, parts: list["ForwardPass"]) -> "ForwardPass":
        """The outputs of consecutive passes as one, in order."""
        return cls(*(np.concatenate([getattr(part, name) for part in parts])
                     for name in ("logits", "pooled", "class_maps")))


class OnnxModel:
    """An ONNX Runtime session over `model.onnx`; `run` is safe to call from several threads."""

    OUTPUTS = FORWARD_OUTPUTS  # logits, pooled features, class maps: see model.forward_model

    def __init__(self, path: str | Path):
        import onnxruntime

        limit_blas_threads()  # every process that runs the served pass: see there
        try:
            self.session = onnxruntime.InferenceSession(str(path), session_options(),
                                                        providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelFolderError(f"{path} cannot be loaded by ONNX Runtime: {error}") from error
        self.input_name = self.session.get_inputs()[0].name
        names = [output.name for output in self.session.get_outputs()]
        missing = [name for name in self.OUTPUTS if name not in names]
        if missing:
            raise ModelFolderError(f"{path} lacks the outputs {', '.join(missing)}; export it "
                                   "again with `python -m hematovision_core.export`.")
        shape = self.session.get_inputs()[0].shape  # [N, size, size, 3], N symbolic
        self.input_size = int(shape[1])
        self.num_classes = int(self.session.get_outputs()[names.index(LOGITS_LAYER)].shape[-1])

    @classmethod
    def load(cls, folder: str | Path) -> "OnnxModel":
        return cls(Path(folder) / RUNTIME_FILE)

    def run(self, batch: np.ndarray) -> ForwardPass:
        """(N, size, size, 3) float32 in [-1, 1] -> the three outputs. The batch runs as the
        passes `pass_sizes` cuts, at once on as many threads as there are slots, each pass under
        a model-work slot (ONNX Runtime releases the GIL while it runs)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        sizes = pass_sizes(len(batch))
        if len(sizes) <= 1:
            return self._pass(batch)
        passes = np.split(batch, np.cumsum(sizes)[:-1])
        # A pool per call: a few threads cost microseconds against a pass's milliseconds, and
        # no pass can wait on a shared pool that its own caller is holding.
        with ThreadPoolExecutor(min(len(passes), MODEL_WORK_SLOTS)) as pool:
            return ForwardPass.concatenate(list(pool.map(self._pass, passes)))

    def warm_up(self) -> None:
        """A full pass on every slot at once: ONNX Runtime's set-up, and its arena at the size
        that later passes need (see PASS_INPUTS)."""
        self.run(np.zeros((PASS_INPUTS * MODEL_WORK_SLOTS, self.input_size, self.input_size, 3),
                          np.float32))

    def _pass(self, batch: np.ndarray) -> ForwardPass:
        with model_work_slot():
            logits, pooled, class_maps = self.session.run(list(self.OUTPUTS),
                                                          {self.input_name: batch})
        return ForwardPass(logits, pooled, class_maps)
