"""Thumbnails and Grad-CAM overlays are made once, then served from disk."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image

from hematovision_core import predict, thumbnails
from hematovision_core.preprocessing import ImageError
from hematovision_core.predict import Classifier
from synthetic import cell_image


def counting_loads(monkeypatch, name: str = "load_image", module=thumbnails) -> list:
    """Count calls of the decoding function `name` that `module` uses."""
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name,
                        lambda path, *rest: calls.append(path) or original(path, *rest))
    return calls


def test_a_thumbnail_is_made_once(tmp_path, monkeypatch):
    source = tmp_path / "cell.png"
    cell_image((300, 200), (180, 60, 120)).save(source)
    loads = counting_loads(monkeypatch)
    first = thumbnails.thumbnail(tmp_path / "cache", source)
    second = thumbnails.thumbnail(tmp_path / "cache", source)
    assert first == second and len(loads) == 1
    assert first.is_relative_to(tmp_path / "cache" / "thumbnails")
    with Image.open(first) as image:
        assert image.size == (thumbnails.THUMBNAIL_SIZE, thumbnails.THUMBNAIL_SIZE)
    # An edited image gets a new thumbnail.
    cell_image((300, 200), (20, 60, 120)).save(source)
    os.utime(source, ns=(1, 1))
    assert thumbnails.thumbnail(tmp_path / "cache", source) != first


def test_a_display_copy_shows_a_16_bit_tiff_as_8_bit_rgb(tmp_path, monkeypatch):
    # A 16-bit greyscale TIFF, as a microscope camera writes it: Streamlit cannot show it.
    tiff = tmp_path / "camera.tif"
    ramp = np.tile(np.linspace(0, 65535, 3000, dtype=np.uint16), (1500, 1))
    Image.fromarray(ramp).save(tiff)
    loads = counting_loads(monkeypatch)
    copy = thumbnails.display_copy(tmp_path / "cache", tiff)
    assert copy.suffix == ".jpg" and copy.is_relative_to(tmp_path / "cache")
    assert thumbnails.display_copy(tmp_path / "cache", tiff) == copy and len(loads) == 1
    with Image.open(copy) as image:  # the whole image, aspect kept, at most DISPLAY_SIZE
        assert image.mode == "RGB" and image.size == (thumbnails.DISPLAY_SIZE,
                                                      thumbnails.DISPLAY_SIZE // 2)
        row = np.asarray(image)[0, :, 0].astype(int)
    assert row[0] < 10 and row[-1] > 245  # the 16-bit ramp, scaled to 8 bits
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n then nothing")
    with pytest.raises(ImageError):
        thumbnails.display_copy(tmp_path / "cache", broken)


def test_a_heatmap_overlay_is_made_once_per_model(owning_classifier, small_data, tmp_path,
                                                  monkeypatch):
    image = next((small_data / "pbc" / "eosinophil").iterdir())
    # Decodes: the overlay goes through the one inference path (`Classifier.infer`).
    loads = counting_loads(monkeypatch, "model_view", module=predict)
    first = thumbnails.heatmap_overlay(tmp_path, owning_classifier, image, class_index=0)
    assert thumbnails.heatmap_overlay(tmp_path, owning_classifier, image, class_index=0) == first
    assert len(loads) == 1
    with Image.open(first) as overlay:
        assert overlay.size == (owning_classifier.input_size,) * 2
    other = Classifier(owning_classifier.runtime,
                       {**owning_classifier.metadata, "model_sha256": "1" * 64})
    assert thumbnails.heatmap_overlay(tmp_path, other, image, class_index=0) != first


def run_at_once(make, threads: int = 16) -> tuple[list, list]:
    """Call `make()` from `threads` threads released together; (results, errors)."""
    barrier = threading.Barrier(threads)
    results, errors = [], []

    def work() -> None:
        barrier.wait()
        try:
            results.append(make())
        except Exception as error:  # noqa: BLE001 - the test reports every failure
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results, errors


def assert_one_whole_jpeg(results, errors, folder) -> None:
    assert not errors, errors
    assert len(set(results)) == 1
    with Image.open(results[0]) as image:
        image.load()  # a truncated file would raise here
        assert image.format == "JPEG"
    assert not list(folder.rglob("*.partial*"))  # no temporary file left behind


def test_sixteen_threads_make_the_same_thumbnail_and_display_copy_at_once(tmp_path):
    source = tmp_path / "cell.png"
    noise = np.random.default_rng(0).integers(0, 255, (900, 1200, 3), np.uint8)
    Image.fromarray(noise).save(source)
    for make in (lambda: thumbnails.thumbnail(tmp_path / "cache", source),
                 lambda: thumbnails.display_copy(tmp_path / "cache", source)):
        assert_one_whole_jpeg(*run_at_once(make), tmp_path / "cache")


def test_sixteen_threads_make_the_same_heatmap_overlay_at_once(owning_classifier, small_data,
                                                                tmp_path, monkeypatch):
    from hematovision_core import gradcam

    fake = lambda classifier, pixels, class_index: gradcam.Heatmap(  # noqa: E731
        np.linspace(0, 1, pixels.shape[0] ** 2, dtype=np.float32).reshape(pixels.shape[:2]),
        "Grad-CAM", class_index, "out_relu")
    monkeypatch.setattr(gradcam, "compute_heatmap", fake)
    image = next((small_data / "pbc" / "neutrophil").iterdir())
    results, errors = run_at_once(
        lambda: thumbnails.heatmap_overlay(tmp_path, owning_classifier, image, class_index=1))
    assert_one_whole_jpeg(results, errors, tmp_path)
