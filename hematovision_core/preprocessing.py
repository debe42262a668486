"""Turn anything a user may upload into the array MobileNetV2 expects, the same way every time.

Training, evaluation and the dashboard all call `preprocess` (or its two halves, `load_image` and
`to_model_input`), so a model never sees pixels prepared differently from those it learned on.
Errors a user can cause raise an `ImageError` subclass whose message can be shown as it is.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

INPUT_SIZE = 224
MAX_PIXELS = 40_000_000  # ~ a 7300x5500 photo; larger files are refused as decompression bombs
BACKGROUND = (255, 255, 255)  # transparent pixels become the bright field of a smear

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
    values = array.astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if np.issubdtype(array.dtype, np.floating) and top <= 1.0:
        values = values * 255.0
    elif top > 255:  # 16-bit (or wider) data
        values = values / (65535.0 if top <= 65535 else top) * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; alpha is composited onto a white background."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_array_to_uint8(np.asarray(image))).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode, check and straighten an image: 8-bit RGB, EXIF orientation applied.

    Raises:
        ImageError: empty, not an image, truncated or corrupt, animated, or over `max_pixels`.
    """
    image = _open(source)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels."
        )
    if width < 1 or height < 1:
        raise EmptyImageError("The image has no pixels.")
    if getattr(image, "is_animated", False):
        raise UnsupportedImageError("Animated images are not supported: upload a single frame.")
    try:
        if image.format == "JPEG" and min(width, height) >= 4 * INPUT_SIZE:
            # Let the JPEG decoder downscale large photos by 2-8x: much faster, same result size.
            image.draft("RGB", (2 * INPUT_SIZE, 2 * INPUT_SIZE))
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"The image is too large to process ({error}).") from error
    except (OSError, SyntaxError, ValueError, TypeError) as error:
        raise CorruptImageError(f"The image is truncated or corrupt ({error}).") from error


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
