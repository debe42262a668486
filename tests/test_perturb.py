"""perturb: each named perturbation changes a real cell image as its name says, and only then."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from hematovision_core import perturb
from hematovision_core.perturb import PERTURBATIONS, apply_perturbations, parse_perturbation


@pytest.fixture(scope="module")
def cell(shared_data) -> np.ndarray:
    path = sorted((shared_data / "pbc" / "neutrophil").glob("*.jpg"))[0]
    return np.asarray(Image.open(path).convert("RGB"))


def test_neutral_levels_give_the_image_back(cell):
    for name, spec in PERTURBATIONS.items():
        np.testing.assert_array_equal(spec.apply(cell, spec.neutral), cell, err_msg=name)
    np.testing.assert_array_equal(apply_perturbations(cell, [("blur", 0.0), ("jpeg", 100)]), cell)


def test_every_table_level_changes_the_image_real_data(cell):
    for name, spec in PERTURBATIONS.items():
        for level in spec.levels:
            changed = spec.apply(cell, level)
            assert changed.shape == cell.shape and changed.dtype == np.uint8
            assert np.abs(changed.astype(int) - cell).mean() > 0.5, (name, level)


def test_brightness_and_contrast_scale_intensity_and_spread_real_data(cell):
    darker = perturb.brightness(cell, 0.5)
    assert darker.mean() == pytest.approx(cell.mean() * 0.5, rel=0.02)
    flatter = perturb.contrast(cell, 0.5)
    assert flatter.std() == pytest.approx(cell.std() * 0.5, rel=0.03)
    assert flatter.mean() == pytest.approx(cell.mean(), abs=1.0)


def test_blur_removes_fine_detail_real_data(cell):
    def sharpness(image):
        return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    assert sharpness(perturb.blur(cell, 2.0)) < 0.3 * sharpness(cell)
    assert sharpness(perturb.blur(cell, 4.0)) < sharpness(perturb.blur(cell, 1.0))


def test_hue_rotates_and_saturation_scales_colour_real_data(cell):
    def hsv(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(float)

    coloured = hsv(cell)[..., 1] > 60  # clearly coloured pixels (the stained cell)
    shift = (hsv(perturb.hue(cell, 40.0))[..., 0] - hsv(cell)[..., 0]) % 180
    assert np.median(shift[coloured]) == pytest.approx(20, abs=2)  # OpenCV hue: degrees / 2
    grey = perturb.saturation(cell, 0.0)
    assert np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 2
    assert hsv(perturb.saturation(cell, 0.5))[..., 1].mean() < 0.6 * hsv(cell)[..., 1].mean()


def test_stain_pales_the_cell_but_keeps_the_white_background():
    image = np.array([[[255, 255, 255], [120, 60, 150]]], np.uint8)  # background, stained cell
    pale = perturb.stain(image, 0.5)
    np.testing.assert_array_equal(pale[0, 0], [255, 255, 255])
    assert (pale[0, 1] > image[0, 1]).all()
    assert (perturb.stain(image, 1.5)[0, 1] < image[0, 1]).all()


def test_jpeg_quality_loses_more_at_lower_quality_real_data(cell):
    def error(quality):
        return np.abs(perturb.jpeg(cell, quality).astype(int) - cell).mean()

    assert error(10) > error(50) > 0


def test_parse_perturbation_names_the_choices():
    assert parse_perturbation("blur=2") == ("blur", 2.0)
    assert parse_perturbation("JPEG=20") == ("jpeg", 20.0)
    for text in ("fog=2", "blur", "blur=much"):
        with pytest.raises(ValueError):
            parse_perturbation(text)
