"""The served forward pass (ONNX Runtime) against the original Keras model, and the last-block
heatmap read off it against gradient Grad-CAM.

Tolerances: logits within 1e-4 (absolute). Both runtimes compute in float32; they differ only by
the order of additions in fused convolutions, measured at 1e-5 on the shipped models' logits
(values of order 10), so 1e-4 leaves room for another CPU's kernels while any real difference
(a missed layer, another preprocessing) shows as 1e-1 or more. Heatmaps within 1e-4 on the
[0, 1] scale, for the same reason, far below one grey level (1/255 = 4e-3).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from hematovision_core import gradcam, runtime
from hematovision_core.keras_model import KerasClassifier
from hematovision_core.model_io import ModelFolderError, RUNTIME_FILE
from hematovision_core.predict import Classifier

from conftest import TINY_INPUT_SIZE

MODELS = Path(__file__).resolve().parent.parent / "models"
LOGITS_TOLERANCE = 1e-4
HEATMAP_TOLERANCE = 1e-4


def _random_images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (count, TINY_INPUT_SIZE, TINY_INPUT_SIZE, 3)).astype(np.float32)


def test_tiny_model_runtime_matches_keras(tiny_classifier, tiny_keras):
    batch = _random_images(5)
    np.testing.assert_allclose(tiny_classifier.logits(batch), tiny_keras.logits(batch),
                               atol=LOGITS_TOLERANCE)


def test_forward_gives_pooled_features_and_class_maps(tiny_classifier, tiny_keras):
    batch = _random_images(2, seed=1)
    output = tiny_classifier.forward(batch)
    assert output.pooled.shape == (2, 1280)
    assert output.class_maps.shape == (2, 3, 3, 3)  # 96 px input: a 3x3 last block, 3 classes
    # The head is pooling then dense: the class maps' mean over positions plus the bias is the
    # logit, which ties the third output to the first.
    bias = tiny_keras.model.get_layer("head_logits").get_weights()[1]
    np.testing.assert_allclose(output.class_maps.mean(axis=(1, 2)) + bias, output.logits,
                               atol=LOGITS_TOLERANCE)


@pytest.mark.parametrize("class_index", [0, 1, 2])
def test_cam_from_the_forward_pass_equals_gradient_gradcam(tiny_classifier, tiny_keras,
                                                          class_index):
    pixels = _random_images(1, seed=2)[0]
    ours = tiny_classifier.heatmap(tiny_classifier.forward(pixels[None]).class_maps[0],
                                   class_index)
    theirs = gradcam.compute_heatmap(tiny_keras, pixels, class_index, "Grad-CAM", "last")
    assert (ours.method, ours.layer, ours.class_index) == (theirs.method, theirs.layer,
                                                            theirs.class_index)
    np.testing.assert_allclose(ours.values, theirs.values, atol=HEATMAP_TOLERANCE)


@pytest.mark.parametrize("name", ["pbc-8class", "blood-cells-4class"])
def test_shipped_model_runtime_matches_keras_on_real_images(name, shared_data):
    folder = MODELS / name
    served, original = Classifier.load(folder), KerasClassifier.load(folder)
    dataset = "pbc" if name == "pbc-8class" else "blood-cells/TRAIN"
    files = sorted((shared_data / dataset).glob("*/*"))
    files = files[::len(files) // 8][:8]  # 8 images across the classes
    batch = np.stack([served.prepare(path) for path in files])
    logits, reference = served.logits(batch), original.logits(batch)  # TTA included (4-class)
    np.testing.assert_allclose(logits, reference, atol=LOGITS_TOLERANCE)
    assert (logits.argmax(axis=1) == reference.argmax(axis=1)).all()
    class_maps = served.forward(batch[:2]).class_maps
    for image in range(2):
        for class_index in range(len(served.classes)):
            ours = served.heatmap(class_maps[image], class_index).values
            theirs = gradcam.compute_heatmap(original, batch[image], class_index).values
            np.testing.assert_allclose(ours, theirs, atol=HEATMAP_TOLERANCE)


def test_a_tampered_export_is_refused(tiny_model_folder, tmp_path):
    import shutil

    folder = tmp_path / "tampered"
    shutil.copytree(tiny_model_folder, folder)
    with open(folder / RUNTIME_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFolderError, match="export it again"):
        Classifier.load(folder)


def test_concurrent_passes_share_the_server_wide_slots(tiny_classifier, monkeypatch):
    """No more passes run at once than MODEL_WORK_SLOTS, however many threads ask."""
    running, most = [0], [0]
    lock = threading.Lock()
    session_run = tiny_classifier.runtime.session.run

    def counting_run(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return session_run(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(tiny_classifier.runtime.session, "run", counting_run)
    batch = _random_images(1)
    threads = [threading.Thread(target=tiny_classifier.forward, args=(batch,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= most[0] <= runtime.MODEL_WORK_SLOTS


def test_a_long_batch_runs_in_passes_of_pass_inputs_with_the_same_outputs(tiny_classifier,
                                                                         monkeypatch):
    """ONNX Runtime's arena keeps the largest pass's memory, so no pass carries more than
    PASS_INPUTS images; splitting changes no output."""
    sizes = []
    session_run = tiny_classifier.runtime.session.run

    def recording_run(names, feeds, *args):
        sizes.append(len(next(iter(feeds.values()))))
        return session_run(names, feeds, *args)

    batch = _random_images(runtime.PASS_INPUTS * 2 + 3, seed=3)
    one_by_one = [tiny_classifier.runtime.run(image[None]) for image in batch]
    monkeypatch.setattr(tiny_classifier.runtime.session, "run", recording_run)
    together = tiny_classifier.runtime.run(batch)  # the passes run on several threads at once
    assert sorted(sizes) == sorted(runtime.pass_sizes(len(batch)))
    assert max(sizes) <= runtime.PASS_INPUTS and sum(sizes) == len(batch)
    for name in ("logits", "pooled", "class_maps"):
        expected = np.concatenate([getattr(single, name) for single in one_by_one])
        np.testing.assert_allclose(getattr(together, name), expected, atol=LOGITS_TOLERANCE)


def test_a_batch_is_spread_over_the_slots_in_passes_of_at_most_pass_inputs(monkeypatch):
    monkeypatch.setattr(runtime, "PASS_INPUTS", 8)
    monkeypatch.setattr(runtime, "MODEL_WORK_SLOTS", 2)
    assert runtime.pass_sizes(1) == [1]
    assert runtime.pass_sizes(8) == [4, 4]  # one TTA image's 8 views: a half on each core
    assert runtime.pass_sizes(19) == [8, 8, 3]
    monkeypatch.setattr(runtime, "MODEL_WORK_SLOTS", 1)
    assert runtime.pass_sizes(8) == [8] and runtime.pass_sizes(19) == [8, 8, 3]


def test_loading_the_served_model_puts_numpys_blas_on_one_thread(tiny_model_folder):
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):  # as a fresh process on 2+ cores has it
        runtime.OnnxModel.load(tiny_model_folder)
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)
