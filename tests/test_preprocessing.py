"""Every kind of image a user may upload becomes a (224, 224, 3) array in [-1, 1], or a clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from hematovision_core import preprocessing as pp


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def check_output(array):
    assert array.shape == (224, 224, 3) and array.dtype == np.float32
    assert array.min() >= -1.0 and array.max() <= 1.0


def test_real_pbc_image_real_data(shared_data):
    path = next((shared_data / "pbc" / "eosinophil").glob("*.jpg"))
    array = pp.preprocess(path)
    check_output(array)
    assert array.std() > 0.05  # real content, not a flat image
    assert np.allclose(array, pp.preprocess(path.read_bytes()))  # path and bytes agree


def test_scaling_matches_mobilenet_v2():
    pixels = np.array([[[0, 127.5, 255]]], dtype=np.float32)
    assert np.allclose(pp.scale_pixels(pixels), [[[-1.0, 0.0, 1.0]]])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I", "F"])
def test_colour_modes(mode):
    image = Image.new("RGB", (50, 40), (180, 60, 120)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode in ("I", "F") else "PNG")
    check_output(pp.preprocess(encode(image, fmt)))


def test_transparent_pixels_become_white_background():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert np.allclose(pp.preprocess(encode(image, "PNG")), 1.0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.full((30, 30), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    data = encode(Image.fromarray(values), "TIFF")
    array = pp.preprocess(data)
    check_output(array)
    assert abs(float(array.mean())) < 0.02  # ~0, not saturated white


def test_cmyk_jpeg_keeps_its_colour():
    image = Image.new("RGB", (64, 64), (200, 30, 30)).convert("CMYK")
    rgb = pp.load_image(encode(image, "JPEG"))
    r, g, b = np.asarray(rgb).reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 30, 30))  # white on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    upright = pp.load_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert upright.size == (30, 60)  # portrait once rotated
    top, bottom = np.asarray(upright)[:30].mean(), np.asarray(upright)[30:].mean()
    assert top > bottom  # the white half is now on top


def test_tiny_and_large_images():
    check_output(pp.preprocess(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")))
    check_output(pp.preprocess(encode(Image.new("RGB", (4000, 3000), (10, 20, 30)), "JPEG")))


def test_uint16_and_float_arrays():
    check_output(pp.preprocess(np.full((20, 20, 3), 60000, np.uint16)))
    check_output(pp.preprocess(np.random.default_rng(0).random((20, 20, 3))))


def test_empty_file():
    with pytest.raises(pp.EmptyImageError):
        pp.preprocess(b"")


def test_not_an_image():
    with pytest.raises(pp.NotAnImageError, match="not an image"):
        pp.preprocess(b"%PDF-1.4 this is a document")


def test_truncated_jpeg():
    data = encode(Image.new("RGB", (300, 300), (120, 40, 200)), "JPEG")
    with pytest.raises(pp.ImageError):
        pp.preprocess(data[: len(data) // 3])


def test_pixel_limit_refuses_decompression_bombs():
    data = encode(Image.new("1", (9000, 9000)), "PNG")  # 81 MP, tiny file
    with pytest.raises(pp.ImageTooLargeError, match="megapixels"):
        pp.preprocess(data)


def test_animated_gif_is_refused():
    frames = [Image.new("RGB", (20, 20), (80 * i, 40, 200 - 60 * i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(pp.UnsupportedImageError, match="Animated"):
        pp.preprocess(buffer.getvalue())


def test_errors_are_value_errors_for_callers():
    assert issubclass(pp.ImageError, ValueError)
