"""Gradient heatmaps (Grad-CAM at early and middle blocks, Grad-CAM++, Score-CAM, SmoothGrad) in a
small pool of worker processes.

They need TensorFlow's gradients, and the dashboard's process must not import TensorFlow (see
`runtime`). The workers are started with the server (`start`), each loads TensorFlow and the
models once, and takes one request at a time from the pool's queue, so a burst of explanations
waits its turn instead of starving the quiz. The last-block Grad-CAM never comes here: it is read
off the forward pass (`heatmap.cam_heatmap`).

Replicas on one machine (`replica_set.py`) share one pool, kept by their supervisor (`share`):
`WORKERS` is sized for the machine's cores, and a TensorFlow worker holds ~0.7 GB, so a pool per
replica would double both. A replica then sends its requests over a Unix socket
(`SHARED_POOL_ENV`) and starts no workers of its own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import sys
import threading
import types
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Client, Listener
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
_listener: Listener | None = None  # `share`'s socket, while it answers replicas


def start(model_folders: Sequence[str | Path] = ()) -> None:
    """Start the workers now (idempotent); each loads TensorFlow and these models at once.
    A replica whose supervisor keeps the pool (`SHARED_POOL_ENV`) starts none."""
    global _executor, _preload
    if _shared_pool() is not None:
        return
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
    """Stop the workers (tests, and the server's exit), and the socket of a shared pool."""
    global _executor, _listener
    listener, _listener = _listener, None
    if listener is not None:
        folder = os.path.dirname(listener.address)
        listener.close()  # removes the socket file
        shutil.rmtree(folder, ignore_errors=True)
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def pending() -> int:
    """Requests waiting or running in the pool right now (for "n ahead of you" notices), from
    every replica where the pool is shared."""
    if _shared_pool() is not None:
        try:
            return _ask_shared_pool("pending", ())
        except RuntimeError:  # the request itself says so
            return 0
    return _pending


def submit(model_folder: str | Path, pixels: np.ndarray, class_index: int, method: str,
           layer: str) -> Future:
    """Queue one heatmap; the future's result is a `Heatmap` (or the worker's ValueError)."""
    arguments = (str(model_folder), np.asarray(pixels, np.float32), int(class_index), method,
                 layer)
    if _shared_pool() is not None:
        return _messengers.submit(_ask_shared_pool, "explain", arguments)
    return _submit_here(arguments)


def _submit_here(arguments: tuple) -> Future:
    global _executor, _pending
    start(_preload)
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


# --- one pool for a machine's replicas ----------------------------------------------------------

SHARED_POOL_ENV = "HEMATOVISION_HEATMAP_POOL"  # "<Unix socket path> <authentication key, hex>"
# A replica's requests wait for their heatmaps in these threads (one connection each).
_messengers = ThreadPoolExecutor(16, thread_name_prefix="heatmap-request")


def _shared_pool() -> tuple[str, bytes] | None:
    value = os.environ.get(SHARED_POOL_ENV, "")
    if not value:
        return None
    path, _, key = value.rpartition(" ")
    return path, bytes.fromhex(key)


def _ask_shared_pool(kind: str, arguments: tuple):
    """One request to the supervisor's pool: its answer, or the exception it raised there
    (a worker's ValueError, BrokenProcessPool when a worker died); RuntimeError, which the
    pages show, when the pool cannot be reached."""
    path, key = _shared_pool()
    try:
        with Client(path, family="AF_UNIX", authkey=key) as connection:
            connection.send((kind, arguments))
            ok, value = connection.recv()
    except (OSError, EOFError) as error:  # the supervisor is stopping, or was restarted
        raise RuntimeError(f"the heatmap workers could not be reached ({error})") from error
    if not ok:
        raise value
    return value


def share(model_folders: Sequence[str | Path]) -> dict[str, str]:
    """Start the workers here and answer other processes' requests on a Unix socket (in a
    folder only this user can enter, and with a random key). Returns the environment that
    points a replica at this pool."""
    import secrets
    import tempfile

    global _listener
    start(model_folders)
    key = secrets.token_bytes(32)
    folder = tempfile.mkdtemp(prefix="hematovision-heatmaps.")  # mode 0700
    path = str(Path(folder) / "pool.sock")
    listener = _listener = Listener(path, family="AF_UNIX", authkey=key)

    def accept() -> None:
        while _listener is listener:
            try:
                connection = listener.accept()
            except Exception as error:  # noqa: BLE001 - a bad handshake must not end the pool
                if _listener is listener:
                    log.warning("Refused a heatmap pool connection: %s", error)
                continue
            threading.Thread(target=_answer, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, name="heatmap-pool", daemon=True).start()
    return {SHARED_POOL_ENV: f"{path} {key.hex()}"}


def _answer(connection) -> None:
    with connection:
        try:
            kind, arguments = connection.recv()
        except (EOFError, OSError):
            return
        try:
            value = _pending if kind == "pending" else _submit_here(arguments).result()
            reply = (True, value)
        except Exception as error:  # noqa: BLE001 - the replica raises it where it asked
            reply = (False, error)
        with contextlib.suppress(OSError):
            connection.send(reply)


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
