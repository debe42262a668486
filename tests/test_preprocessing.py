"""Every kind of image a user may upload becomes a (224, 224, 3) array in [-1, 1], or a clear error."""

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hematovision_core import preprocessing as pp
from synthetic import cell_image

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    image = cell_image((50, 40)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode in ("I", "F") else "PNG")
    check_output(pp.preprocess(encode(image, fmt)))


def test_transparent_pixels_become_white_background():
    image = cell_image((64, 64)).convert("RGBA")
    image.putalpha(0)
    image.paste(cell_image((32, 32)), (16, 16))  # an opaque cell on a transparent frame
    rgb = np.asarray(pp.load_image(encode(image, "PNG")))
    assert (rgb[:16] == 255).all() and (rgb[:, :16] == 255).all()  # the frame became white
    assert rgb[16:48, 16:48].min() < 200  # the cell kept its colours


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    # A 16-bit ramp from 1/4 to 3/4 of full scale: mid-grey on average
    values = np.tile(np.linspace(16384, 49151, 64), (64, 1)).astype(np.uint16)
    data = encode(Image.fromarray(values), "TIFF")
    array = pp.preprocess(data)
    check_output(array)
    assert abs(float(array.mean())) < 0.02  # ~0, not saturated white
    assert array.max() < 0.6  # 3/4 of full scale stays 3/4 (0.5), not clipped to white


def test_cmyk_jpeg_keeps_its_colour():
    image = cell_image((64, 64), background=(200, 30, 30)).convert("CMYK")
    rgb = pp.load_image(encode(image, "JPEG"))
    r, g, b = np.median(np.asarray(rgb).reshape(-1, 3), axis=0)  # the red background
    assert r > 150 and g < 80 and b < 80


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (120, 60), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 60, 60))  # white on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    upright = pp.load_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert upright.size == (60, 120)  # portrait once rotated
    top, bottom = np.asarray(upright)[:60].mean(), np.asarray(upright)[60:].mean()
    assert top > bottom  # the white half is now on top


def test_smallest_accepted_and_large_images():
    check_output(pp.preprocess(encode(cell_image((pp.MIN_SIDE, pp.MIN_SIDE)), "PNG")))
    check_output(pp.preprocess(encode(cell_image((4000, 3000)), "JPEG")))


def test_uint16_and_float_arrays():
    ramp = np.linspace(0, 60000, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint16)
    check_output(pp.preprocess(ramp))
    check_output(pp.preprocess(np.random.default_rng(0).random((64, 64, 3))))


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


def test_memory_budget_refuses_decompression_bombs():
    data = encode(Image.new("1", (9000, 9000)), "PNG")  # 81 MP, tiny file
    with pytest.raises(pp.ImageTooLargeError, match=r"MB of memory to open \(9000 x 9000, 1-bit\)"):
        pp.preprocess(data)


def test_animated_gif_is_refused():
    frames = [cell_image((64, 64), background=(80 * i, 40, 200 - 60 * i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(pp.UnsupportedImageError, match="Animated"):
        pp.preprocess(buffer.getvalue())


def test_errors_are_value_errors_for_callers():
    assert issubclass(pp.ImageError, ValueError)


# A subprocess starts with a fresh address space, so its peak resident memory (VmHWM, reset by
# writing 5 to clear_refs) counts Pillow's C allocations too, which tracemalloc cannot see.
PEAK_MEMORY_SCRIPT = textwrap.dedent("""
    import re, sys
    from pathlib import Path
    from hematovision_core import preprocessing as pp

    def status_kib(key):
        return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))

    data = Path(sys.argv[1]).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # peak := current
    before = status_kib("VmRSS")
    try:
        pp.load_image(data)
        outcome = "accepted"
    except pp.ImageTooLargeError as error:
        outcome = str(error)
    print((status_kib("VmHWM") - before) // 1024)
    print(outcome)
""")


def sixteen_bit_png(side: int) -> bytes:
    """A 16-bit greyscale PNG, side x side, nearly all zeros: tens of KB on disk."""
    values = np.zeros((side, side), np.uint16)
    values[::97, ::89] = 40000  # a few bright dots
    return encode(Image.fromarray(values), "PNG")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_sixteen_bit_bomb_is_refused_before_decoding(tmp_path):
    data = sixteen_bit_png(6300)  # 40 MP; decoding and converting it took 1.1 GB
    assert len(data) < 200_000
    image = Image.open(io.BytesIO(data))
    assert image.mode.startswith("I;16") and pp.estimate_decoded_bytes(image) > 500 * 2**20
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(path)],
                            capture_output=True, text=True, env=environment, check=True)
    peak_mib, message = result.stdout.strip().split("\n", 1)
    assert message.startswith("This image would take") and "(6300 x 6300, 16-bit)" in message
    assert "the limit is 160 MB" in message and "8-bit JPEG" in message
    # The raw 16-bit pixels alone are 76 MiB: refusing must not have decoded them.
    assert int(peak_mib) < 20


def test_sixteen_bit_image_within_budget_is_accepted():
    values = np.tile(np.linspace(0, 65535, 1024), (1024, 1)).astype(np.uint16)  # 1 MP ramp
    rgb = pp.load_image(encode(Image.fromarray(values), "PNG"))
    assert rgb.size == (1024, 1024) and rgb.mode == "RGB"


def test_large_phone_jpeg_is_decoded_reduced():
    # 8000x6000 (48 MP, over the old 40-MP limit): smooth noise, like a photo's content
    small = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((8000, 6000), Image.Resampling.BILINEAR)
    data = encode(photo, "JPEG", quality=80)
    rgb = pp.load_image(data)
    assert rgb.size == (1000, 750)  # decoded at 1/8 by the JPEG decoder
    assert min(rgb.size) >= 2 * pp.INPUT_SIZE  # still more detail than the model uses
    check_output(pp.to_model_input(rgb))


@pytest.mark.parametrize("size", [(1, 1), (20, 20), (400, 31)])
def test_images_too_small_to_hold_a_cell_are_refused(size):
    with pytest.raises(pp.ImageTooSmallError, match=f"only {size[0]} x {size[1]} pixels"):
        pp.preprocess(encode(Image.new("RGB", size, (180, 60, 120)), "PNG"))


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (200, 150, 190)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_blank_images_are_refused(colour, fmt):
    with pytest.raises(pp.BlankImageError, match="blank"):
        pp.preprocess(encode(Image.new("RGB", (256, 256), colour), fmt))


def test_near_flat_noise_is_blank_but_faint_detail_is_not():
    rng = np.random.default_rng(0)
    noise = np.clip(240 + rng.normal(0, 1.0, (256, 256, 3)), 0, 255).astype(np.uint8)  # std ~1
    with pytest.raises(pp.BlankImageError):
        pp.load_image(encode(Image.fromarray(noise), "PNG"))
    faint = cell_image((256, 256), background=(240, 240, 240))
    pp.load_image(encode(faint, "PNG"))  # a cell on a bright field is not blank


def test_real_smear_field_real_data(shared_data):
    path = next((shared_data / "blood-cells" / "TRAIN" / "NEUTROPHIL").iterdir())
    rgb = pp.load_image(path)
    assert rgb.size == (320, 240)
    check_output(pp.preprocess(path))


def test_real_pbc_image_is_far_from_the_checks_real_data(shared_data):
    path = next((shared_data / "pbc" / "platelet").glob("*.jpg"))
    rgb = pp.load_image(path)
    assert min(rgb.size) >= 4 * pp.MIN_SIDE
    image = Image.open(path)
    assert pp.estimate_decoded_bytes(image) < pp.MAX_DECODED_BYTES / 100
