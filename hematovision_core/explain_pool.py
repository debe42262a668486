"""Gradient heatmaps (Grad-CAM at early and middle blocks, Grad-CAM++, Score-CAM, SmoothGrad) in a
small pool of worker processes.

They need TensorFlow's gradients, and the dashboard's process must not import TensorFlow (see
`runtime`). The workers are started with the server (`start`), each loads TensorFlow and the
models once, and takes one request at a time from the pool's queue, so a burst of explanations
waits its turn instead of starving the quiz. The last-block Grad-CAM never comes here: it is read
off the forward pass (`heatmap.cam_heatmap`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import types
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Sequence

import numpy as np

from hematovision_core.heatmap import Heatmap
from hematovision_core.runtime import cpu_count

log = logging.getLogger(__name__)

# One TensorFlow process costs ~0.5 GB and uses every core it is given; on 2 cores, one worker
# leaves the other core to the server while a SmoothGrad runs.
WORKERS = max(1, cpu_count() // 2)

_executor: ProcessPoolExecutor | None = None
_preload: tuple[str, ...] = ()
_lock = threading.Lock()
_pending = 0  # requests submitted and not finished, across all sessions


def start(model_folders: Sequence[str | Path] = ()) -> None:
    """Start the workers now (idempotent); each loads TensorFlow and these models at once."""
    global _executor, _preload
    with _lock:
        if _executor is not None:
            return
        _preload = tuple(str(folder) for folder in model_folders)
        _executor = _new_executor()


def _new_executor() -> ProcessPoolExecutor:
    # spawn: a fresh interpreter; forking a multi-threaded server process is unsafe.
    executor = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(_preload,))
    with _no_main_module():
        for _ in range(WORKERS):  # each submit to a pool with no idle worker spawns one, now
            executor.submit(os.getpid)
    return executor


@contextlib.contextmanager
def _no_main_module():
    """Hide `__main__` while workers are spawned.

    A spawned worker first re-runs the parent's `__main__` file. While Streamlit runs a page, its
    `__main__` is that page, which must not run in a worker (it would draw a page there). The
    workers need nothing from `__main__`: their functions live in this module.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def shutdown() -> None:
    """Stop the workers (tests, and the server's exit)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def pending() -> int:
    """Requests waiting or running in the pool right now (for "n ahead of you" notices)."""
    return _pending


def submit(model_folder: str | Path, pixels: np.ndarray, class_index: int, method: str,
           layer: str) -> Future:
    """Queue one heatmap; the future's result is a `Heatmap` (or the worker's ValueError)."""
    global _executor, _pending
    start(_preload)
    arguments = (str(model_folder), np.asarray(pixels, np.float32), int(class_index), method,
                 layer)
    with _lock:
        try:
            future = _executor.submit(_explain, *arguments)
        except BrokenProcessPool:  # a worker died (killed, out of memory): start afresh
            log.warning("The heatmap worker pool broke; starting new workers.")
            _executor.shutdown(wait=False, cancel_futures=True)
            _executor = _new_executor()
            future = _executor.submit(_explain, *arguments)
        _pending += 1
    future.add_done_callback(_finished)
    return future


def _finished(_: Future) -> None:
    global _pending
    with _lock:
        _pending -= 1


# --- in the worker process ----------------------------------------------------------------------

# (model folder, model file checksum) -> KerasClassifier: one load per worker and model version
_models: dict[tuple[str, str], object] = {}


def _start_worker(model_folders: tuple[str, ...]) -> None:
    """Import TensorFlow and load the models once, before the first request."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for folder in model_folders:
        try:
            _model(folder)
        except Exception as error:  # a broken folder must not stop the worker serving the rest
            log.warning("Heatmap worker could not preload %s: %s", folder, error)


def _model(folder: str):
    from hematovision_core.keras_model import KerasClassifier
    from hematovision_core.model_io import ModelFolder

    key = (folder, ModelFolder.read(folder).model_sha256)  # a retrained model is loaded afresh
    if key not in _models:
        _models[key] = KerasClassifier.load(folder)
    return _models[key]


def _explain(folder: str, pixels: np.ndarray, class_index: int, method: str,
             layer: str) -> Heatmap:
    from hematovision_core.gradcam import compute_heatmap

    return compute_heatmap(_model(folder), pixels, class_index, method, layer)
