"""Turn anything a user may upload into the array MobileNetV2 expects, the same way every time.

Training, evaluation and the dashboard all call `preprocess` (or its two halves, `load_image` and
`to_model_input`), so a model never sees pixels prepared differently from those it learned on.
Errors a user can cause raise an `ImageError` subclass whose message can be shown as it is.

`load_image` refuses, before decoding, an image whose decode would need more memory than
`MAX_DECODED_BYTES` (estimated from the header's size and mode), and, after decoding, an image too
small to hold a cell or blank. Every image a model is given passes through it (uploads, training
data, quiz and explorer images), so these checks live here rather than in each page.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageMode, ImageOps, ImageStat, UnidentifiedImageError

INPUT_SIZE = 224
# Memory one image may take to open: the decoded pixels plus the copies made converting them to
# 8-bit RGB (see `estimate_decoded_bytes`). A pixel limit cannot bound this: a 77 KB 16-bit
# 6300x6300 PNG (just under the old 40-megapixel limit) peaked at 1.1 GB, and five such uploads
# took the server to 5.1 GB. 160 MB lets through, with room to spare, a 40-megapixel 8-bit JPEG
# photo (the JPEG decoder reduces it 8x: ~8 MB), any 8-bit RGB PNG or TIFF up to ~12.9
# megapixels, 8-bit grey up to ~24 and 16-bit grey up to ~8.0 (a 2448x2048 microscope camera
# frame needs 100 MB), while five uploads at once stay under 1 GB. A real 320x240 smear field
# needs 1 MB. This replaces the old 40-megapixel limit, which refused big phone JPEGs that cost
# almost nothing after reduced decoding yet let through 16-bit images costing a gigabyte. Pillow's
# own decompression-bomb check (over ~179 megapixels, at `Image.open`) still applies.
MAX_DECODED_BYTES = 160 * 2**20
# Shorter side under this: too small to hold a white cell. PBC crops hold one cell in 256x256 and
# smear fields are 320x240 (no real image has a side under 240); a white cell's nucleus and
# granules need a few dozen pixels, and a 32-pixel image would already be stretched 7x to 224.
MIN_SIDE = 32
# Standard deviation of grey levels (0-255) under this: blank (one flat colour, or JPEG noise on
# one). Over all 15,662 real images (15,385 PBC, 277 smear fields) the smallest is 12.0 (a smear
# field, BloodImage_00280) and 13.1 (a PBC platelet), 6x this threshold; a flat white or black
# image saved as JPEG measures under 1.
MIN_GREY_SPREAD = 2.0
BACKGROUND = (255, 255, 255)  # transparent pixels become the bright field of a smear
MEBIBYTE = 2**20

ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that cannot be used as a blood-cell image; the message is meant for the user."""


class EmptyImageError(ImageError):
    pass


class NotAnImageError(ImageError):
    pass


class CorruptImageError(ImageError):
    pass


class ImageTooLargeError(ImageError):
    pass


class UnsupportedImageError(ImageError):
    pass


class ImageTooSmallError(ImageError):
    pass


class BlankImageError(ImageError):
    pass


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(_array_to_uint8(source))
    if isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:  # a file-like object such as Streamlit's UploadedFile
        data = source.read()
    if not data:
        raise EmptyImageError("The file is empty.")
    try:
        with warnings.catch_warnings():
            # Pillow warns (then errors) on huge images; we apply our own, lower limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"The image is too large to process ({error}).") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise NotAnImageError("The file is not an image format we can read.") from error


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit and float pixel arrays to 0..255 without clipping their content."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)  # one working copy, scaled in place (8 bytes a pixel)
    top = float(values.max()) if values.size else 0.0
    if np.issubdtype(array.dtype, np.floating) and top <= 1.0:
        values *= 255.0
    elif top > 255:  # 16-bit (or wider) data
        values /= 65535.0 if top <= 65535 else top
        values *= 255.0
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; alpha is composited onto a white background."""
    if image.mode in HIGH_BIT_MODES:
        return Image.fromarray(_array_to_uint8(np.asarray(image))).convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel in `mode`, from its mode descriptor.

    Pillow keeps every 8-bit mode with more than one band (LA, RGB, RGBA, CMYK...) in 4 bytes a
    pixel, so RGB costs 4, not 3; "1" is unpacked to a byte a pixel; 16-bit modes take 2 bytes,
    "I" and "F" 4.
    """
    try:
        descriptor = ImageMode.getmode(mode)
    except KeyError:
        return 8  # a mode Pillow cannot describe: assume the widest
    sample_bytes = int(descriptor.typestr[-1])  # "|u1" -> 1, "<u2" -> 2, "<f4" -> 4
    if sample_bytes == 1 and len(descriptor.bands) > 1:
        return 4
    return sample_bytes * len(descriptor.bands)


def _bits_per_sample(mode: str) -> int:
    """Bit depth of one sample, as a user would name it: 1, 8, 16 or 32."""
    if mode == "1":
        return 1
    try:
        return 8 * int(ImageMode.getmode(mode).typestr[-1])
    except KeyError:
        return 8


def _conversion_bytes_per_pixel(image: Image.Image) -> int:
    """Bytes a pixel the conversion to 8-bit RGB allocates, following `_to_rgb`'s path, plus the
    grey copy `_check_not_blank` makes."""
    rgb_and_grey = _bytes_per_pixel("RGB") + 1  # 4 + 1: the RGB result and its grey copy
    if image.mode in HIGH_BIT_MODES:
        # numpy copy of the samples, float64 working array, uint8 array, "L" image
        return _bytes_per_pixel(image.mode) + 8 + 1 + 1 + rgb_and_grey
    if _has_alpha(image):
        # RGBA copy, white RGBA background, composited RGBA
        return 3 * _bytes_per_pixel("RGBA") + rgb_and_grey
    return rgb_and_grey


def estimate_decoded_bytes(image: Image.Image) -> int:
    """Bytes that decoding and converting `image` to 8-bit RGB will allocate, read from its header.

    An upper bound, adding up every buffer as if all were alive at once: the decoded pixels, the
    copy `ImageOps.exif_transpose` makes, and the conversion's buffers. Measured peak memory is
    60-100% of it (16-bit 6300x6300: 493 MiB of 795; 8-bit RGB 4000x3000: 93 of 149; 8-bit L:
    58 of 80). For a JPEG, call it after `Image.draft`, so that it counts the reduced size the
    decoder will produce.
    """
    width, height = image.size
    decoded = 2 * _bytes_per_pixel(image.mode)  # the decoded pixels and the upright copy
    return width * height * (decoded + _conversion_bytes_per_pixel(image))


def _check_size(image: Image.Image) -> None:
    """Refuse images with no pixels, or too small to hold a cell (before decoding them)."""
    width, height = image.size
    if width < 1 or height < 1:
        raise EmptyImageError("The image has no pixels.")
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmallError(
            f"The image is only {width} x {height} pixels; a blood cell needs at least "
            f"{MIN_SIDE} pixels on each side. Upload the original image, not a thumbnail or icon."
        )


def _check_memory(image: Image.Image, max_decoded_bytes: int) -> None:
    """Refuse, before decoding, an image whose decode would take more than the memory budget."""
    needed = estimate_decoded_bytes(image)
    if needed > max_decoded_bytes:
        width, height = image.size
        raise ImageTooLargeError(
            f"This image would take {needed / MEBIBYTE:,.0f} MB of memory to open "
            f"({width} x {height}, {_bits_per_sample(image.mode)}-bit); the limit is "
            f"{max_decoded_bytes / MEBIBYTE:,.0f} MB. Save it as an 8-bit JPEG or PNG, or crop it."
        )


def _check_not_blank(rgb: Image.Image) -> None:
    """Refuse an image of one flat colour: nothing for a model to classify.

    The spread is computed from Pillow's grey-level histogram, so it costs one 8-bit copy.
    """
    spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
    if spread < MIN_GREY_SPREAD:
        raise BlankImageError(
            "The image is blank (one flat colour, no detail): upload a photo of a stained "
            "blood cell or smear."
        )


def _decode(source: ImageSource, max_decoded_bytes: int) -> Image.Image:
    """Open, check, decode (large JPEGs reduced), straighten and convert to 8-bit RGB.

    One function from `_open` to `_to_rgb`, rebinding `image` at each step, so that no caller's
    frame keeps the decoded pixels alive while the converted copy is being made.
    """
    image = _open(source)  # outside the `try`: a missing file stays an OSError
    _check_size(image)
    if getattr(image, "is_animated", False):
        raise UnsupportedImageError("Animated images are not supported: upload a single frame.")
    try:
        if image.format == "JPEG" and min(image.size) >= 4 * INPUT_SIZE:
            # Let the JPEG decoder downscale large photos by 2-8x: much faster, same result size,
            # and the memory check below counts the reduced size.
            image.draft("RGB", (2 * INPUT_SIZE, 2 * INPUT_SIZE))
        _check_memory(image, max_decoded_bytes)
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"The image is too large to process ({error}).") from error
    except (OSError, SyntaxError, ValueError, TypeError) as error:
        raise CorruptImageError(f"The image is truncated or corrupt ({error}).") from error


def load_image(source: ImageSource, max_decoded_bytes: int = MAX_DECODED_BYTES) -> Image.Image:
    """Decode, check and straighten an image: 8-bit RGB, EXIF orientation applied.

    Raises:
        ImageError: empty, not an image, too small to hold a cell, animated, needing more than
            `max_decoded_bytes` to decode, truncated or corrupt, or blank.
    """
    rgb = _decode(source, max_decoded_bytes)
    _check_not_blank(rgb)
    return rgb


def resize_for_model(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize an RGB image to size x size; returns uint8 (size, size, 3)."""
    resized = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """Map 0..255 pixels to [-1, 1] as MobileNetV2 expects (`x / 127.5 - 1`)."""
    return (np.asarray(pixels, dtype=np.float32) / 127.5) - 1.0


def to_model_input(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """RGB image -> float32 (size, size, 3) in [-1, 1]."""
    return scale_pixels(resize_for_model(image, size))


def model_view(source: ImageSource, crop: str = "none") -> Image.Image:
    """The RGB image a model looks at: decoded, upright, and cropped as the model was trained
    (`crop` from model.json: "none", or "white-cell" for whole-field smears)."""
    from hematovision_core.localize import apply_crop

    return apply_crop(load_image(source), crop)


def preprocess(source: ImageSource, size: int = INPUT_SIZE, crop: str = "none") -> np.ndarray:
    """The one preprocessing function: any image source -> float32 (size, size, 3) in [-1, 1]."""
    return to_model_input(model_view(source, crop), size)
