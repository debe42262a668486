"""Small images made once and kept on disk: gallery thumbnails, Grad-CAM overlays, and JPEG
copies for display (Streamlit cannot show a 16-bit PNG or TIFF, and fails on a corrupt file).

A gallery page shows a few dozen images; decoding the 256x256 (or 320x240) originals on every
page run would be wasted work, so each thumbnail is written once as a small JPEG under
`<cache_dir>/thumbnails/` and served from there. The file name covers the source's path, size
and modification time, so an edited image gets a new thumbnail.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from hematovision_core.preprocessing import load_image

THUMBNAIL_SIZE = 128  # pixels, square; the gallery shows 6 to a row
DISPLAY_SIZE = 1024  # pixels, the longer side of a display copy
JPEG_QUALITY = 85


def _source_key(path: Path) -> str:
    """Identity of an image file: resolved path, size and modification time."""
    stat = os.stat(path)
    return f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"


def _digest(*parts) -> str:
    return hashlib.sha1("\0".join(str(p) for p in parts).encode()).hexdigest()


def jpeg_bytes(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An RGB uint8 array (H, W, 3) as JPEG file bytes: what a page shows, encoded once (a
    shown numpy array is encoded again on every script run)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _save_atomically(image: Image.Image, target: Path) -> None:
    """Write a JPEG to a temporary name then rename it, so readers never see half a file.

    The temporary name is unique (mkstemp), not per process: Streamlit serves every session from
    threads of one process, and several may make the same thumbnail at once. Each writes its own
    file; `os.replace` is atomic, so the last one in wins with a whole, identical image.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.",
                                       suffix=".partial.jpg")
    try:
        os.fchmod(handle, 0o644)  # mkstemp makes 0600; a cache others may read, as before
        with os.fdopen(handle, "wb") as file:
            image.save(file, "JPEG", quality=JPEG_QUALITY)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def thumbnail(cache_dir: Path, image_path: Path, size: int = THUMBNAIL_SIZE) -> Path:
    """The path of a square thumbnail of `image_path`, made on first use.

    Raises:
        ImageError, OSError: the image cannot be read.
    """
    digest = _digest(_source_key(image_path), size)
    target = Path(cache_dir) / "thumbnails" / digest[:2] / f"{digest}.jpg"
    if not target.is_file():
        image = load_image(image_path)
        _save_atomically(ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR), target)
    return target


def display_copy(cache_dir: Path, image_path: Path, max_side: int = DISPLAY_SIZE) -> Path:
    """An 8-bit RGB JPEG of the whole image, made once: EXIF orientation, colour modes and bit
    depths handled as for the model, so any image the model can read can also be shown.

    Raises:
        ImageError, OSError: the image cannot be read.
    """
    digest = _digest(_source_key(image_path), "display", max_side)
    target = Path(cache_dir) / "thumbnails" / digest[:2] / f"{digest}.jpg"
    if not target.is_file():
        image = load_image(image_path)
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)  # never enlarges
        _save_atomically(image, target)
    return target


def heatmap_overlay(cache_dir: Path, classifier, image_path: Path, class_index: int,
                    opacity: float = 0.45) -> Path:
    """The path of a Grad-CAM overlay (input size, JPEG) for one image and class, made once.

    The overlay is drawn on the part of the image the model looks at (a crop around the white
    cell for smear models). Keyed by the model file's checksum as well, so another model never
    shows these maps.
    """
    crop = classifier.crop
    digest = _digest(_source_key(image_path), classifier.model_folder.model_sha256, crop,
                     class_index, opacity, "Grad-CAM/last")
    target = Path(cache_dir) / "heatmaps" / digest[:2] / f"{digest}.jpg"
    if not target.is_file():
        from hematovision_core.heatmap import overlay

        # The one inference path: decoded, checked and cropped as in training; `inputs` gives
        # the uint8 (S, S, 3) image the model saw and its class maps (the image as given).
        seen = classifier.infer([image_path], inputs=True, skip_unreadable=False)
        pixels, class_maps = seen.inputs[0], seen.class_maps[0]
        blended = overlay(pixels, classifier.heatmap(class_maps, class_index), opacity=opacity)
        _save_atomically(Image.fromarray(np.asarray(blended, dtype=np.uint8)), target)
    return target
