"""Gradient heatmaps in worker processes: the same maps as in-process, errors come back, and a
worker that dies is replaced."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing import AuthenticationError

import numpy as np
import pytest

from hematovision_core import explain_pool, gradcam

from conftest import TINY_INPUT_SIZE


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.uniform(-1, 1, (TINY_INPUT_SIZE, TINY_INPUT_SIZE, 3)).astype(np.float32)


def test_a_worker_gives_the_in_process_map(tiny_model_folder, tiny_keras, pixels):
    explain_pool.start([tiny_model_folder])
    future = explain_pool.submit(tiny_model_folder, pixels, 2, "Grad-CAM", "middle")
    assert explain_pool.pending() >= 1 or future.done()
    heatmap = future.result(timeout=120)
    expected = gradcam.compute_heatmap(tiny_keras, pixels, 2, "Grad-CAM", "middle")
    assert heatmap.layer == expected.layer == "block_10_expand_relu"
    np.testing.assert_allclose(heatmap.values, expected.values, atol=1e-5)
    assert explain_pool.pending() == 0


def test_a_bad_request_raises_in_the_caller(tiny_model_folder, pixels):
    future = explain_pool.submit(tiny_model_folder, pixels, 0, "Grad-CAM", "deepest")
    with pytest.raises(ValueError, match="no layer"):
        future.result(timeout=120)


def test_a_killed_worker_is_replaced(tiny_model_folder, pixels):
    first = explain_pool.submit(tiny_model_folder, pixels, 1, "Grad-CAM", "early")
    first.result(timeout=120)
    for pid in list(explain_pool._executor._processes):  # the workers this test suite started
        os.kill(pid, signal.SIGKILL)
    time.sleep(2)  # the pool's manager thread notices the death and marks the pool broken
    heatmap = explain_pool.submit(tiny_model_folder, pixels, 1, "Grad-CAM",
                                  "early").result(timeout=120)
    assert heatmap.values.shape == (TINY_INPUT_SIZE, TINY_INPUT_SIZE)


def test_replicas_share_one_pool_over_its_socket(tiny_model_folder, tiny_keras, pixels,
                                                 monkeypatch):
    """replica_set's supervisor keeps the pool (`share`); a replica with the environment it hands
    out sends its requests there: the same maps, the worker's errors, the queue length."""
    pool_env = explain_pool.share([tiny_model_folder])
    try:
        workers = set(explain_pool._executor._processes)
        monkeypatch.setenv(explain_pool.SHARED_POOL_ENV, pool_env[explain_pool.SHARED_POOL_ENV])
        explain_pool.start([tiny_model_folder])  # a replica's start: no workers of its own
        assert set(explain_pool._executor._processes) == workers
        heatmap = explain_pool.submit(tiny_model_folder, pixels, 2, "Grad-CAM",
                                      "middle").result(timeout=120)
        expected = gradcam.compute_heatmap(tiny_keras, pixels, 2, "Grad-CAM", "middle")
        np.testing.assert_allclose(heatmap.values, expected.values, atol=1e-5)
        assert explain_pool.pending() == 0
        with pytest.raises(ValueError, match="no layer"):
            explain_pool.submit(tiny_model_folder, pixels, 0, "Grad-CAM",
                                "deepest").result(timeout=120)
        path = pool_env[explain_pool.SHARED_POOL_ENV].rpartition(" ")[0]
        assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0  # only this user gets in
        monkeypatch.setenv(explain_pool.SHARED_POOL_ENV, f"{path} {'00' * 32}")  # a wrong key
        with pytest.raises(AuthenticationError):
            explain_pool.submit(tiny_model_folder, pixels, 2, "Grad-CAM",
                                "middle").result(timeout=120)
    finally:
        explain_pool.shutdown()
    assert not os.path.exists(path)  # the socket's folder goes with the pool
    monkeypatch.setenv(explain_pool.SHARED_POOL_ENV, pool_env[explain_pool.SHARED_POOL_ENV])
    with pytest.raises(RuntimeError, match="could not be reached"):  # a message the page shows
        explain_pool.submit(tiny_model_folder, pixels, 2, "Grad-CAM", "middle").result(timeout=60)
    assert explain_pool.pending() == 0
