"""The Classify page through AppTest: uploads, bad files, batch table and CSV, Grad-CAM controls.

Fast tests use the tiny random model (its predictions mean nothing, its maps still change with
every setting); tests named `shipped_model` use the trained models in models/ and real images.
"""

from __future__ import annotations

import csv
import html
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = str(REPO_ROOT / "pages" / "1_Classify.py")
SHIPPED_MODELS = ("pbc-8class", "blood-cells-4class")
TIMEOUT = 120  # seconds: a gradient heatmap waits for a worker process to import TensorFlow

MEDIA: dict[str, bytes] = {}  # file id -> bytes of every image and download the page produced


@pytest.fixture(autouse=True)
def record_media(monkeypatch):
    """Keep a copy of every media file (images, downloads) so tests can read them back."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    class RecordingStorage(MemoryMediaFileStorage):
        def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
            file_id = super().load_and_get_id(path_or_data, mimetype, kind, filename)
            MEDIA[file_id] = self._files_by_id[file_id].content
            return file_id

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", RecordingStorage)


def media(url: str) -> bytes:
    """The bytes behind a media URL such as /mock/media/<id>.png."""
    return MEDIA[Path(url).stem]


@pytest.fixture
def tiny_env(monkeypatch, tmp_path, tiny_model_folder, shared_data):
    monkeypatch.setenv("HEMATOVISION_MODELS", str(tiny_model_folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(shared_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    return shared_data


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(PAGE, default_timeout=TIMEOUT)


def real_image(shared_data: Path, cell: str, index: int = 0) -> tuple[str, bytes, str]:
    path = sorted((shared_data / "pbc" / cell).glob("*.jpg"))[index]
    return path.name, path.read_bytes(), "image/jpeg"


def heatmap_images(at) -> dict[str, str]:
    """caption -> URL of the three explanation images (original, heatmap, overlay)."""
    found = {}
    for element in at.get("image"):
        for caption, url in zip(element.captions, element.value):
            found[html.unescape(caption)] = url  # file names are written as references
    return found


def the_heatmap(at) -> str:
    return next(url for caption, url in heatmap_images(at).items() if ": evidence for" in caption)


def the_overlay(at) -> str:
    return next(url for caption, url in heatmap_images(at).items() if caption.startswith("Overlay"))


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_classify_page_renders_with_the_disclaimer_and_no_input(tiny_env):
    at = new_app().run()
    no_exception(at)
    assert any("not a diagnostic device" in c.value for c in at.caption)
    assert at.file_uploader(key="uploads").accept_multiple_files
    assert set(at.file_uploader(key="uploads").allowed_type) >= {".jpg", ".png", ".tif", ".bmp"}


def test_upload_shows_prediction_chart_heatmap_morphology_and_report(tiny_env):
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([real_image(tiny_env, "eosinophil")])
    at.run()
    no_exception(at)
    predicted = at.metric[0].value
    assert predicted in ("Eosinophil", "Lymphocyte", "Neutrophil")
    assert at.get("plotly_chart"), "no probability chart"
    assert any(e.label.startswith(f"Morphology: {predicted}") for e in at.expander)
    images = heatmap_images(at)
    assert "Original" in images and len(images) >= 4  # the upload, original, heatmap, overlay
    assert not [b for b in at.get("download_button") if "report" in b.proto.label], \
        "the report was made before anyone asked for it"
    at.button(key="report_prepare").click().run()
    no_exception(at)
    report = media(at.download_button(key="report").proto.url).decode("utf-8")
    assert predicted in report and "data:image/png;base64," in report
    assert "http://" not in report and "https://" not in report  # one file, no external links
    at.run()  # another run of the page keeps the report it made
    assert at.download_button(key="report")
    colormap = at.selectbox(key="colormap")
    colormap.select(next(c for c in colormap.options if c != colormap.value)).run()
    assert at.button(key="report_prepare"), "a report of the old colours was still offered"


def switch_and_check(at, steps) -> None:
    """Apply (widget key, value) steps one by one; each must draw a heatmap not seen before."""
    seen = [the_heatmap(at)]
    for widget, value in steps:
        if widget == "depth":
            at.radio(key=widget).set_value(value)
        else:
            at.selectbox(key=widget).set_value(value)
        at.run()
        no_exception(at)
        assert the_heatmap(at) not in seen, f"{widget}={value} did not change the heatmap"
        seen.append(the_heatmap(at))


def test_switching_class_layer_and_method_changes_the_heatmap(tiny_env):
    # The random tiny model predicts Eosinophil (uniform probabilities) for this image; its
    # early and middle maps for eosinophil are empty (no positive evidence), so the walk goes
    # through neutrophil, whose maps are not. The shipped_model test below walks every control.
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([real_image(tiny_env, "neutrophil", 3)])
    at.run()
    switch_and_check(at, [("explain_class", "neutrophil"), ("depth", "middle"),
                          ("method", "Grad-CAM++")])
    assert "evidence for Neutrophil" in " ".join(heatmap_images(at))


def test_score_cam_waits_for_a_click(tiny_env):
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([real_image(tiny_env, "eosinophil", 5)])
    at.run()
    at.selectbox(key="method").set_value("Score-CAM").run()
    assert not any(": evidence for" in caption for caption in heatmap_images(at))
    at.button(key="run_scorecam").click().run()
    no_exception(at)
    assert any("Score-CAM: evidence for" in caption for caption in heatmap_images(at))
    # Its job done, the notice and the button go: they no longer sit above the map.
    assert "run_scorecam" not in [button.key for button in at.button]
    assert not any("Score-CAM runs the model" in notice.value for notice in at.info)


def test_opacity_change_redraws_the_overlay_without_recomputing(tiny_env, monkeypatch):
    from hematovision_core import explain_pool
    from hematovision_core.predict import Classifier

    passes, queued = [], []
    forward, submit = Classifier.forward, explain_pool.submit
    monkeypatch.setattr(Classifier, "forward",
                        lambda self, *args, **kwargs: passes.append(1) or forward(self, *args,
                                                                                 **kwargs))
    monkeypatch.setattr(explain_pool, "submit",
                        lambda *args, **kwargs: queued.append(args[2:]) or submit(*args, **kwargs))
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([real_image(tiny_env, "lymphocyte", 7)])
    at.run()
    # The last-block map comes from the classification's own forward pass: one pass, no worker.
    assert (len(passes), len(queued)) == (1, 0)
    blended = the_overlay(at)
    at.slider(key="opacity").set_value(0.9).run()
    at.selectbox(key="colormap").set_value("viridis").run()
    no_exception(at)
    assert (len(passes), len(queued)) == (1, 0), "an opacity or colour-map change recomputed"
    assert the_overlay(at) != blended
    at.radio(key="depth").set_value("early").run()  # needs gradients: one request to a worker
    assert len(queued) == 1
    at.slider(key="opacity").set_value(0.3).run()
    no_exception(at)
    assert len(queued) == 1, "an opacity change sent the early-block map to a worker again"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def _animated_png() -> bytes:
    # The uploader only takes the listed extensions, so an animation arrives as an APNG
    # (or a GIF renamed .png; both are animated to Pillow).
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _tiff_16_bit() -> bytes:
    values = (np.random.default_rng(0).random((64, 64)) * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="TIFF")
    return buffer.getvalue()


def test_mixed_batch_shows_good_results_one_error_per_bad_file_and_a_csv(tiny_env):
    _, jpeg, _ = real_image(tiny_env, "eosinophil", 1)
    good = [real_image(tiny_env, "eosinophil", 1), real_image(tiny_env, "lymphocyte", 1),
            real_image(tiny_env, "neutrophil", 1), ("grey16.tif", _tiff_16_bit(), "image/tiff")]
    bad = [("notes.png", b"this is not an image", "image/png"),
           ("empty.jpg", b"", "image/jpeg"),
           ("truncated.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"),
           ("huge.png", _png_claiming(9000, 9000), "image/png"),
           ("moving.png", _animated_png(), "image/png"),
           ("icon.png", _png(Image.new("RGB", (16, 16), "purple")), "image/png"),
           ("blank.png", _png(Image.new("RGB", (256, 256), "white")), "image/png")]
    at = new_app().run()
    at.file_uploader(key="uploads").set_value(bad[:2] + good[:2] + bad[2:] + good[2:])
    at.run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert len(errors) == len(bad)
    for (name, _, _), message in zip(bad, errors):
        assert f"**{name}**" in html.unescape(message)  # the name shown as typed, in bold
    assert "empty" in errors[1] and "MB of memory" in errors[3] and "Animated" in errors[4]
    assert "only 16 x 16 pixels" in errors[5] and "blank" in errors[6]
    assert at.selectbox(key="selected_file").options == [name for name, _, _ in good]
    rows = list(csv.DictReader(io.StringIO(
        media(at.download_button(key="csv").proto.url).decode("utf-8"))))
    assert [row["file"] for row in rows] == [name for name, _, _ in good]
    assert {"prediction", "confidence", "uncertain"} <= set(rows[0])
    assert at.get("plotly_chart"), "no differential chart"
    # choosing another row shows that file's image and heatmap
    at.selectbox(key="selected_file").set_value(2).run()
    assert good[2][0] in heatmap_images(at)


def test_random_example_shows_the_true_label(tiny_env):
    at = new_app()
    at.session_state["source"] = "Random example"
    at.run()
    no_exception(at)
    assert any(m.value.startswith("**True label:**") for m in at.markdown)
    assert at.metric[0].value


def test_random_example_without_data_shows_the_download_command(tiny_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATOVISION_DATA", str(tmp_path / "no-data"))
    at = new_app()
    at.session_state["source"] = "Random example"
    at.run()
    no_exception(at)
    assert "python -m hematovision_core.data download pbc" in at.warning[0].value
    assert not at.metric


def test_camera_photo_is_classified(tiny_env):
    at = new_app()
    at.session_state["source"] = "Camera"
    at.run()
    _, jpeg, _ = real_image(tiny_env, "lymphocyte", 2)
    at.camera_input(key="camera").upload("photo.jpg", jpeg).run()
    no_exception(at)
    assert at.metric[0].label == "Predicted cell type"


def _shipped(name: str) -> Path:
    folder = REPO_ROOT / "models" / name
    if not (folder / "model.json").is_file():
        pytest.skip(f"shipped model {name} is not in models/ yet")
    return folder


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_shipped_model_classify_shows_a_clear_example_as_its_class(model_name, monkeypatch,
                                                                    shared_data):
    folder = _shipped(model_name)
    from hematovision_core.batch import example_records
    from hematovision_core.model_io import ModelFolder
    from hematovision_core.predict import Classifier

    monkeypatch.setenv("HEMATOVISION_MODELS", str(folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(shared_data))
    cell = "eosinophil"
    model = ModelFolder.read(folder)
    records = [r for r in example_records(model, shared_data) if r.label == cell][:8]
    assert records, f"no {cell} test images for {model_name}"
    # A clear example: of a few unseen eosinophils, the one the model is surest is eosinophil.
    classifier = Classifier.load(folder)
    column = classifier.classes.index(cell)
    confidences = [p.probabilities[column] for p in classifier.classify([r.path for r in records])]
    clear = records[int(np.argmax(confidences))]
    assert max(confidences) > 0.5, f"{model_name} finds no clear {cell} among {len(records)}"
    at = new_app()
    at.session_state["model_name"] = model_name
    at.run()
    no_exception(at)
    # The uploader asks for what the model reads: single cells, or whole smear fields.
    smears = model.crop != "none"
    wanted = "blood-smear fields" if smears else "single-cell images"
    assert wanted in at.file_uploader(key="uploads").label
    at.file_uploader(key="uploads").set_value([(clear.path.name, clear.path.read_bytes(),
                                                "image/jpeg")])
    at.run()
    no_exception(at)
    assert at.metric[0].value == "Eosinophil"
    assert at.get("plotly_chart"), "no probability chart"
    assert any("evidence for Eosinophil" in caption for caption in heatmap_images(at))


def test_shipped_model_switching_method_class_and_layer_changes_the_heatmap(monkeypatch,
                                                                            shared_data):
    folder = _shipped("pbc-8class")
    monkeypatch.setenv("HEMATOVISION_MODELS", str(folder.parent))
    at = new_app()
    at.session_state["model_name"] = "pbc-8class"
    at.run()
    at.file_uploader(key="uploads").set_value([real_image(shared_data, "neutrophil", 3)])
    at.run()
    predicted = at.metric[0].value
    other = "eosinophil" if predicted != "Eosinophil" else "neutrophil"
    switch_and_check(at, [("depth", "middle"), ("depth", "early"), ("explain_class", other),
                          ("method", "Grad-CAM++")])


def test_a_file_name_with_markdown_is_shown_as_typed(tiny_env):
    _, jpeg, _ = real_image(tiny_env, "eosinophil", 2)
    name = "**bold** :red[alarm] <b>x</b> [l](http://x) $x^2$.jpg"
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([(name, jpeg, "image/jpeg")])
    at.run()
    no_exception(at)
    captions = [caption for element in at.get("image") for caption in element.captions]
    shown = next(caption for caption in captions if "bold" in caption)
    assert html.unescape(shown) == name
    assert not {"*", "<", "[", "$", ":"} & set(shown)


def test_a_disallowed_file_type_gets_one_message_and_the_batch_goes_on(tiny_env):
    # The browser only offers the listed types; a crafted request can still send another.
    good = [real_image(tiny_env, "eosinophil", 3), real_image(tiny_env, "neutrophil", 3)]
    at = new_app().run()
    at.file_uploader(key="uploads").set_value(
        [good[0], ("payload.exe", b"MZ not an image", "application/octet-stream"), good[1]])
    at.run()
    no_exception(at)
    errors = [html.unescape(e.value) for e in at.error]
    assert len(errors) == 1 and "payload.exe" in errors[0] and "not accepted" in errors[0]
    assert at.selectbox(key="selected_file").options == [name for name, _, _ in good]


def test_what_if_panel_perturbs_the_image_and_predicts_it_live(tiny_env, tiny_model_folder):
    from hematovision_core.perturb import apply_perturbations
    from hematovision_core.predict import Classifier

    name, data, mime = real_image(tiny_env, "eosinophil")
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([(name, data, mime)]).run()
    assert any(e.label.startswith("What if?") for e in at.expander)
    assert not [m for m in at.metric if m.label == "Prediction on the changed image"]
    at.slider(key="whatif_blur").set_value(4.0).run()
    at.slider(key="whatif_stain").set_value(0.5).run()
    no_exception(at)
    changed = next(m for m in at.metric if m.label == "Prediction on the changed image")
    classifier = Classifier.load(tiny_model_folder)
    view = np.asarray(classifier.view(data))
    expected = classifier.classify_view(apply_perturbations(view, [("blur", 4.0),
                                                                    ("stain", 0.5)]))
    assert changed.value == expected.display_name
    assert f"{expected.confidence:.1%}" in html.unescape(changed.proto.delta)
    assert "blur 4, stain 0.5" in heatmap_images(at)  # the changed image, captioned
    assert at.get("plotly_chart")


@pytest.fixture
def guarded_env(monkeypatch, tmp_path, tiny_model_folder, shared_data):
    """The tiny model with a guard that flags every image (threshold below any distance)."""
    import shutil

    from hematovision_core import ood

    folder = shutil.copytree(tiny_model_folder, tmp_path / "models" / "tiny-3class")
    guard = ood.DomainGuard("mahalanobis", -1.0, np.eye(1280, dtype=np.float32),
                            np.zeros((3, 1280), np.float32))
    ood.save_guard(folder, guard, {"threshold_on": "a test"})
    monkeypatch.setenv("HEMATOVISION_MODELS", str(folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(shared_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    return shared_data


def test_an_out_of_domain_image_is_named_in_plain_words_with_the_csv(guarded_env):
    at = new_app().run()
    at.file_uploader(key="uploads").set_value([real_image(guarded_env, "eosinophil"),
                                               real_image(guarded_env, "neutrophil")]).run()
    no_exception(at)
    assert any("Unlike the images this model learned from" in e.value for e in at.error)
    assert any("2 of 2 images flagged out of domain" in w.value for w in at.warning)
    rows = list(csv.DictReader(io.StringIO(
        media(at.download_button(key="csv").proto.url).decode("utf-8"))))
    assert [row["out_of_domain"] for row in rows] == ["True", "True"]
    assert "another lab, stain or magnification" in rows[0]["note"]
