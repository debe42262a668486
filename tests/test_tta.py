"""Test-time augmentation: a model folder with `"tta": "dihedral"` averages its logits over the
8 flips and rotations of the square, on arrays and on image files (`Classifier.infer`)."""

import numpy as np
import pytest

from hematovision_core.model_io import ModelFolderError
from hematovision_core.predict import Classifier

from conftest import TINY_INPUT_SIZE


def _dihedral_numpy(batch: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(batch, k, axes=(1, 2)) for k in range(4)]
    return rotations + [r[:, :, ::-1] for r in rotations]


@pytest.fixture(scope="module")
def averaged(tiny_classifier):
    return Classifier(tiny_classifier.runtime, {**tiny_classifier.metadata, "tta": "dihedral"})


def _images(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (count, TINY_INPUT_SIZE, TINY_INPUT_SIZE, 3)).astype(np.float32)


def test_dihedral_logits_are_the_mean_over_the_eight_views(tiny_classifier, averaged):
    batch = _images()
    expected = np.mean([tiny_classifier.logits(np.ascontiguousarray(view))
                        for view in _dihedral_numpy(batch)], axis=0)
    np.testing.assert_allclose(averaged.logits(batch), expected, rtol=1e-3, atol=1e-15)


def test_dihedral_predictions_ignore_orientation(tiny_classifier, averaged):
    batch = _images()
    turned = np.ascontiguousarray(np.rot90(batch, 1, axes=(1, 2)))
    flipped = np.ascontiguousarray(batch[:, :, ::-1])
    for view in (turned, flipped):
        np.testing.assert_allclose(averaged.logits(view), averaged.logits(batch), rtol=1e-3,
                                   atol=1e-15)
    # Without TTA the network is not orientation-free: the checks above can fail.
    assert not np.allclose(tiny_classifier.logits(turned), tiny_classifier.logits(batch),
                           rtol=1e-3, atol=1e-15)


def test_batches_split_the_same_with_tta(averaged):
    batch = _images(count=5, seed=1)
    np.testing.assert_allclose(averaged.logits(batch, batch_size=8),
                               np.concatenate([averaged.logits(batch[i:i + 1]) for i in range(5)]),
                               rtol=1e-3, atol=1e-15)


def test_one_path_averages_the_eight_views_of_each_file(tiny_classifier, averaged, small_data):
    """`Classifier.infer` (every caller's path, the explorer's included) on image files: its
    logits and pooled features are the means over the 8 views of each decoded image."""
    paths = sorted((small_data / "pbc").glob("*/*.jpg"))[:4]
    inference = averaged.infer(paths, features=True, batch_size=16, decode_threads=2)
    assert list(inference.kept) == [0, 1, 2, 3] and inference.pooled.shape == (4, 1280)
    batch = np.stack([tiny_classifier.prepare(p) for p in paths])
    views = [tiny_classifier.forward(np.ascontiguousarray(view)) for view in _dihedral_numpy(batch)]
    np.testing.assert_allclose(inference.logits, np.mean([v.logits for v in views], axis=0),
                               rtol=1e-3, atol=1e-15)
    np.testing.assert_allclose(inference.pooled, np.mean([v.pooled for v in views], axis=0),
                               rtol=1e-3, atol=1e-6)


def test_unknown_tta_mode_is_refused(tiny_classifier):
    with pytest.raises(ModelFolderError, match="test-time augmentation"):
        Classifier(tiny_classifier.runtime, {**tiny_classifier.metadata, "tta": "rotate-45"})
