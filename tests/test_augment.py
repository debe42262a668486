"""Augmentations keep shape and dtype, and the cell profile's symmetries are the real 8."""

import numpy as np
import pytest

from hematovision_core.augment import augment, dihedral


def test_dihedral_gives_eight_distinct_symmetries():
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    views = {dihedral(pixels, i).tobytes() for i in range(8)}
    assert len(views) == 8
    assert np.array_equal(dihedral(pixels, 0), pixels)


@pytest.mark.parametrize("profile", ["cell", "smear"])
def test_augment_keeps_shape_dtype_and_changes_pixels(profile):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    out = augment(pixels, profile, rng)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert not np.array_equal(out, pixels)


def test_colour_jitter_is_mild():
    rng = np.random.default_rng(1)
    pixels = np.full((32, 32, 3), 128, np.uint8)
    for _ in range(20):
        assert abs(float(augment(pixels, "cell", rng).mean()) - 128) < 128 * 0.1


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="Unknown augmentation profile"):
        augment(np.zeros((8, 8, 3), np.uint8), "xray", np.random.default_rng(0))
