"""The white-cell localiser: a square centred on the stained nucleus, in training and inference."""

import numpy as np
from PIL import Image, ImageDraw

from hematovision_core import localize

PALE, PINK, PURPLE = (235, 225, 215), (215, 150, 150), (110, 60, 170)


def _smear(nucleus_centre, size=(320, 240), radius=22):
    """A pale field with pink red cells and one purple nucleus."""
    image = Image.new("RGB", size, PALE)
    draw = ImageDraw.Draw(image)
    for x, y in [(40, 40), (200, 60), (260, 190), (90, 180)]:
        draw.ellipse((x - 25, y - 25, x + 25, y + 25), fill=PINK)
    x, y = nucleus_centre
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=PURPLE)
    return image


def _purple_centre(image: Image.Image) -> np.ndarray:
    ys, xs = np.nonzero(localize.purple_mask(np.asarray(image)))
    return np.array([xs.mean(), ys.mean()])


def test_crop_is_a_square_centred_on_the_nucleus():
    crop = localize.apply_crop(_smear((150, 110)), "white-cell")
    width, height = crop.size
    assert width == height
    # 1.5x the blob's 45 px side, at least 30% of the 240 px shorter side.
    assert width == max(int(45 * localize.CROP_SCALE), int(240 * localize.MIN_CROP_SHARE))
    np.testing.assert_allclose(_purple_centre(crop), [width / 2, height / 2], atol=2)


def test_a_cell_at_the_edge_stays_centred():
    """A shifted field can push the cell to a border: the crop mirrors the field past the edge
    instead of sliding the cell off-centre."""
    crop = localize.apply_crop(_smear((300, 20)), "white-cell")
    side = crop.size[0]
    assert crop.size == (side, side) == localize.apply_crop(_smear((150, 110)), "white-cell").size
    mask = localize.purple_mask(np.asarray(crop))
    assert mask[side // 2 - 5:side // 2 + 5, side // 2 - 5:side // 2 + 5].all()


def test_no_nucleus_leaves_the_image_whole():
    field = Image.new("RGB", (320, 240), PALE)
    assert localize.white_cell_box(field) is None
    assert localize.apply_crop(field, "white-cell").size == (320, 240)


def test_crop_mode_none_and_unknown():
    field = _smear((150, 110))
    assert localize.apply_crop(field, "none") is field
    try:
        localize.apply_crop(field, "nucleus")
    except ValueError as error:
        assert "white-cell" in str(error)
    else:
        raise AssertionError("an unknown crop mode was accepted")


def test_real_smears_crop_around_a_purple_nucleus_real_data(shared_data):
    for label in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"):
        path = sorted((shared_data / "blood-cells" / "TRAIN" / label).glob("*.jpg"))[0]
        field = Image.open(path).convert("RGB")
        crop = localize.apply_crop(field, "white-cell")
        assert crop.size[0] == crop.size[1] < min(field.size)
        share = localize.purple_mask(np.asarray(crop)).mean()
        assert share > 2 * localize.purple_mask(np.asarray(field)).mean()


def test_the_field_is_shown_with_the_found_cell_boxed():
    field = _smear((150, 110))
    boxed = localize.boxed_field(field)
    assert boxed.shape == (240, 320, 3) and boxed.dtype == np.uint8
    left, top, right, bottom = localize.white_cell_box(field)
    box_pixels = np.all(boxed == localize.BOX_COLOUR, axis=-1)
    assert box_pixels[top, left:right].all() and box_pixels[top:bottom, left].all()
    assert not box_pixels[110, 150]  # the nucleus itself is left as it is
    np.testing.assert_array_equal(boxed[0, 0], PALE)  # and the rest of the field
    assert localize.boxed_field(Image.new("RGB", (320, 240), PALE)) is None
