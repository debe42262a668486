"""The Transfer Learning Lab's TensorFlow work (ImageNet and random-weight features, inner-block
feature maps) in a worker process of its own, built as `explain_pool` is.

The dashboard's process must not import TensorFlow (see `runtime`). A separate pool, not the
heatmap workers: a first feature pass holds its worker for a minute or more, and quiz heatmaps
must not queue behind it. The worker starts on the lab's first request (not with the server:
most lectures never open the lab), keeps each network it built, and takes one request at a time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Sequence

import numpy as np

from hematovision_core.explain_pool import _no_main_module
from hematovision_core.transfer_features import FeatureSource

log = logging.getLogger(__name__)

_executor: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_pending = 0  # requests submitted and not finished, across all sessions


def _new_executor() -> ProcessPoolExecutor:
    # spawn: a fresh interpreter; forking a multi-threaded server process is unsafe. One worker:
    # it uses both cores of a 2-core server while it runs.
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker)
    with _no_main_module():  # the worker must not re-run the page that asked (see explain_pool)
        executor.submit(os.getpid)
    return executor


def shutdown() -> None:
    """Stop the worker (tests, and the server's exit)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def pending() -> int:
    """Requests waiting or running in the worker right now."""
    return _pending


def _submit(function, *arguments) -> Future:
    global _executor, _pending
    with _lock:
        if _executor is None:
            _executor = _new_executor()
        try:
            future = _executor.submit(function, *arguments)
        except BrokenProcessPool:  # the worker died (killed, out of memory): start afresh
            log.warning("The lab worker broke; starting a new one.")
            _executor.shutdown(wait=False, cancel_futures=True)
            _executor = _new_executor()
            future = _executor.submit(function, *arguments)
        _pending += 1
    future.add_done_callback(_finished)
    return future


def _finished(_: Future) -> None:
    global _pending
    with _lock:
        _pending -= 1


def submit_pooled(source: FeatureSource, paths: Sequence[Path], crop: str) -> Future:
    """Queue pooled features for image files; the result is `keras_pooled`'s (features, usable)."""
    return _submit(_pooled, source, [str(p) for p in paths], crop)


def submit_inside(source: FeatureSource, path: Path, crop: str) -> Future:
    """Queue one image's strongest feature maps per depth; the result is an `InsideView` (or the
    worker's ValueError for an unusable image)."""
    return _submit(_inside, source, str(path), crop)


def pooled_backend(source: FeatureSource, crop: str):
    """A `transfer_features.compute` backend that runs each chunk in the worker."""
    return lambda files: submit_pooled(source, files, crop).result()


# --- in the worker process ------------------------------------------------------------------------

_networks: dict[tuple, object] = {}  # (source, purpose) -> Keras model, one build per worker


def _start_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _model(source: FeatureSource, purpose: str):
    from hematovision_core import inside_network, transfer_features

    key = (source, purpose, repr(source.identity()))  # a retrained model is built afresh
    if key not in _networks:
        network = transfer_features.build_network(source)
        _networks[key] = (transfer_features.pooling_model(network) if purpose == "pooled"
                          else inside_network.layers_model(network))
    return _networks[key]


def _pooled(source: FeatureSource, paths: list[str], crop: str) -> tuple[np.ndarray, np.ndarray]:
    from hematovision_core.transfer_features import keras_pooled

    return keras_pooled(_model(source, "pooled"), [Path(p) for p in paths], crop,
                        source.input_size)


def _inside(source: FeatureSource, path: str, crop: str):
    from hematovision_core.inside_network import layer_responses
    from hematovision_core.preprocessing import ImageError

    try:
        return layer_responses(_model(source, "layers"), source.name, Path(path), crop,
                               source.input_size)
    except (ImageError, OSError) as error:
        raise ValueError(f"{Path(path).name} cannot be read: {error}") from None
