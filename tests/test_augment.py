"""Augmentations keep shape and dtype, and the cell profile's symmetries are the real 8."""

import numpy as np
import pytest

from hematovision_core.augment import augment, dihedral


def test_dihedral_gives_eight_distinct_symmetries():
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    views = {dihedral(pixels, i).tobytes() for i in range(8)}
    assert len(views) == 8
    assert np.array_equal(dihedral(pixels, 0), pixels)


@pytest.mark.parametrize("profile", ["cell", "smear", "crosslab"])
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


def test_smear_views_are_augmented_whole_then_cropped_real_data(shared_data):
    """A training view of a smear is a rotated/shifted field, cropped around its white cell as
    inference would crop it: a square of model size with the purple nucleus near the centre."""
    from PIL import Image

    from hematovision_core.features import augmented_view
    from hematovision_core.localize import purple_mask

    path = sorted((shared_data / "blood-cells" / "TRAIN" / "NEUTROPHIL").glob("*.jpg"))[0]
    field = Image.open(path).convert("RGB")
    rng = np.random.default_rng(0)
    for _ in range(4):
        view = augmented_view(field, "smear", "white-cell", rng, 96)
        assert view.shape == (96, 96, 3) and view.dtype == np.uint8
        ys, xs = np.nonzero(purple_mask(view))
        assert abs(xs.mean() - 48) < 20 and abs(ys.mean() - 48) < 20


def test_crosslab_views_vary_stain_zoom_and_sharpness_but_keep_a_centred_cell():
    """A dark disc on a pale field: crosslab views differ in darkness, size and edge sharpness,
    and the disc stays at the centre (zoom is about the centre)."""
    yy, xx = np.mgrid[:96, :96]
    inside = ((yy - 48) ** 2 + (xx - 48) ** 2 < 20 ** 2)[..., None]
    disc = np.where(inside, [90, 40, 140], [235, 225, 230])
    pixels = disc.astype(np.uint8)
    rng = np.random.default_rng(3)
    views = [augment(pixels, "crosslab", rng) for _ in range(24)]
    dark = [(v.mean(axis=2) < 150) for v in views]
    areas = [d.sum() for d in dark]
    assert max(areas) > 1.4 * min(areas)  # zoomed in and out
    assert np.ptp([v[48, 48].astype(int).sum() for v in views]) > 40  # stain and hue vary
    for d in dark:
        ys, xs = np.nonzero(d)
        assert abs(ys.mean() - 48) < 3 and abs(xs.mean() - 48) < 3
