"""`Classifier.infer`, the one inference path: paths, bytes and arrays give the same answers,
a bad file is skipped with a reason, and every output is row-aligned with the kept sources."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hematovision_core.calibration import apply_temperature
from hematovision_core.preprocessing import ImageError, load_image, preprocess


@pytest.fixture(scope="module")
def real_images(shared_data):
    """Three real PBC JPEGs of different classes."""
    return [sorted((shared_data / "pbc" / label).glob("*.jpg"))[0]
            for label in ("eosinophil", "lymphocyte", "neutrophil")]


def test_paths_bytes_and_arrays_give_the_same_outputs(tiny_classifier, real_images):
    by_path = tiny_classifier.infer(real_images, features=True)
    by_bytes = tiny_classifier.infer([p.read_bytes() for p in real_images], features=True)
    by_array = tiny_classifier.infer([np.asarray(load_image(p)) for p in real_images],
                                     features=True)
    for other in (by_bytes, by_array):
        np.testing.assert_array_equal(other.kept, [0, 1, 2])
        np.testing.assert_array_equal(other.logits, by_path.logits)
        np.testing.assert_array_equal(other.pooled, by_path.pooled)
    assert by_path.pooled.shape == (3, 1280) and by_path.skipped == ()


def test_outputs_are_the_forward_pass_of_the_preprocessed_images(tiny_classifier, real_images):
    """Reference: `preprocess` (the documented pixel pipeline) and one forward pass."""
    inference = tiny_classifier.infer(real_images, features=True, inputs=True, batch_size=2)
    batch = np.stack([preprocess(p, tiny_classifier.input_size) for p in real_images])
    expected = tiny_classifier.forward(batch)
    np.testing.assert_allclose(inference.logits, expected.logits, atol=1e-5)
    np.testing.assert_allclose(inference.pooled, expected.pooled, atol=1e-5)
    np.testing.assert_allclose(inference.class_maps, expected.class_maps, atol=1e-5)
    np.testing.assert_allclose(inference.probabilities,
                               apply_temperature(expected.logits, tiny_classifier.temperature))
    assert inference.inputs.dtype == np.uint8 and len(inference.views) == 3
    np.testing.assert_allclose(inference.inputs / 127.5 - 1, batch, atol=1e-6)


def test_a_bad_file_is_skipped_with_a_reason_and_the_rest_kept(tiny_classifier, real_images,
                                                               tmp_path):
    missing = tmp_path / "gone.jpg"
    blank = np.full((64, 64, 3), 200, np.uint8)
    sources = [real_images[0], b"not an image", missing, real_images[1], blank]
    progress = []
    inference = tiny_classifier.infer(sources, batch_size=2,
                                      progress=lambda done, total: progress.append((done, total)))
    np.testing.assert_array_equal(inference.kept, [0, 3])
    assert [index for index, _ in inference.skipped] == [1, 2, 4]
    reasons = dict(inference.skipped)
    assert "not an image" in reasons[1] and "gone.jpg" in reasons[2] and "blank" in reasons[4]
    assert inference.logits.shape == inference.probabilities.shape == (2, 3)
    assert inference.pooled is None and inference.class_maps is None  # not asked for
    alone = tiny_classifier.infer([real_images[0], real_images[1]])
    np.testing.assert_allclose(inference.logits, alone.logits, atol=1e-5)
    assert progress[-1] == (5, 5)
    with pytest.raises(ImageError):
        tiny_classifier.infer(sources, skip_unreadable=False)


def test_decode_threads_change_nothing_but_speed(tiny_classifier, real_images):
    inline = tiny_classifier.infer(real_images * 2, batch_size=2)
    threaded = tiny_classifier.infer(real_images * 2, batch_size=2, decode_threads=2)
    np.testing.assert_array_equal(threaded.kept, inline.kept)
    np.testing.assert_array_equal(threaded.logits, inline.logits)


def test_a_perturbation_changes_the_image_before_the_crop(tiny_classifier, real_images):
    darker = tiny_classifier.infer(real_images[:1], perturb=lambda rgb: rgb // 2, inputs=True)
    plain = tiny_classifier.infer(real_images[:1], inputs=True)
    assert darker.inputs.mean() < plain.inputs.mean() * 0.6


def test_no_sources_give_empty_outputs(tiny_classifier):
    inference = tiny_classifier.infer([], features=True, inputs=True)
    assert inference.kept.shape == (0,) and inference.logits.shape == (0, 3)
    assert inference.pooled.shape == (0, 1280) and inference.inputs.shape[0] == 0
    image = Image.new("RGB", (8, 8))  # too small to hold a cell
    assert tiny_classifier.infer([image]).skipped[0][0] == 0
