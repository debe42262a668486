"""Charts, model-card facts, batch processing and the HTML report (no TensorFlow model needed
except the tiny one for `classify_files`)."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from hematovision_core import charts, model_card
from hematovision_core.batch import (ImageResult, classify_files, differential, draw_example,
                                     results_csv, uncertainty)
from hematovision_core.gradcam import Heatmap
from hematovision_core.predict import Prediction
from hematovision_core.model_io import ModelFolder
from hematovision_core.report import html_report
from synthetic import cell_image

NAMES = ["Basophil", "Eosinophil", "Lymphocyte"]
METADATA = {
    "name": "demo", "classes": ["basophil", "eosinophil", "lymphocyte"], "display_names": NAMES,
    "model_sha256": "ab" * 32, "library_versions": {"tensorflow": "2.21.0"},
    "data": {"dataset": "pbc", "counts": {"train": {"basophil": 5, "eosinophil": 7,
                                                    "lymphocyte": 6},
                                          "test": {"basophil": 2, "eosinophil": 2,
                                                   "lymphocyte": 2}}},
    "metrics": {"test": {"n": 6, "accuracy": 0.5, "macro_f1": 0.4, "top2_accuracy": 0.9,
                         "ece": 0.1, "confusion_matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 1]],
                         "per_class": {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                           "support": 2}
                                       for c in ("basophil", "eosinophil", "lymphocyte")}},
                "note": "internal split"},
}
MODEL = ModelFolder.from_metadata(METADATA)  # what model_card and report read


def prediction(probabilities) -> Prediction:
    probabilities = np.asarray(probabilities, dtype=np.float32)
    index = int(np.argmax(probabilities))
    return Prediction(probabilities, index, METADATA["classes"][index], NAMES[index],
                      float(probabilities[index]))


def result(name="cell.jpg", probabilities=(0.1, 0.8, 0.1), true_label=None) -> ImageResult:
    p = prediction(probabilities)
    return ImageResult(name, "f" * 40, np.full((20, 30, 3), 128, np.uint8),
                       np.zeros((8, 8, 3), np.float32), p, uncertainty(p, NAMES), true_label)


def test_probability_bars_put_the_best_class_on_top_and_highlight_it():
    figure = charts.probability_bars([0.2, 0.7, 0.1], NAMES)
    assert isinstance(figure, go.Figure)
    bar = figure.data[0]
    assert bar.orientation == "h" and list(bar.y)[-1] == "Eosinophil"  # last bar drawn on top
    assert bar.marker.color[-1] == charts.ACCENT and bar.marker.color[0] == charts.MUTED
    with pytest.raises(ValueError):
        charts.probability_bars([0.5, 0.5], NAMES)


def test_confusion_matrix_colours_row_shares_and_labels_counts():
    figure = charts.confusion_matrix_heatmap([[1, 1, 0], [0, 2, 0], [1, 0, 1]], NAMES)
    heatmap = figure.data[0]
    assert np.allclose(np.asarray(heatmap.z)[0], [0.5, 0.5, 0.0])
    assert np.asarray(heatmap.text)[1, 1] == 2
    with pytest.raises(ValueError):
        charts.confusion_matrix_heatmap([[1, 2]], NAMES)


def test_training_curves_and_differential():
    history = {"epochs": [{"stage": "head", "epoch": 1, "accuracy": 0.5, "val_accuracy": 0.6},
                          {"stage": "fine_tune", "epoch": 1, "accuracy": 0.8,
                           "val_accuracy": 0.85, "val_macro_f1": 0.8}]}
    figure = charts.training_curves(history)
    assert {trace.name for trace in figure.data} == {"train accuracy", "validation accuracy",
                                                      "validation macro-F1"}
    assert figure.layout.shapes, "the start of fine-tuning is marked"
    with pytest.raises(ValueError):
        charts.training_curves({"epochs": []})
    shares = differential([result(), result(probabilities=(0.9, 0.05, 0.05))], NAMES)
    assert shares == {"Basophil": 0.5, "Eosinophil": 0.5, "Lymphocyte": 0.0}
    assert list(charts.differential_chart(shares).data[0].y) == NAMES


def test_uncertainty_names_both_candidates():
    assert uncertainty(prediction([0.05, 0.9, 0.05]), NAMES) is None
    low = uncertainty(prediction([0.2, 0.5, 0.3]), NAMES)  # 0.5 vs 0.3: low, not close
    assert "low confidence" in low and "Eosinophil (50%)" in low and "Lymphocyte (30%)" in low
    assert uncertainty(prediction([0.32, 0.66, 0.02]), NAMES) is None  # 0.66, margin 0.34
    close = uncertainty(prediction([0.41, 0.5, 0.09]), NAMES)
    assert "top two are close" in close and close.index("Eosinophil") < close.index("Basophil")


def test_model_card_facts():
    assert model_card.split_sizes(MODEL) == {"train": 18, "test": 6}
    headline = model_card.headline_metrics(MODEL)
    assert list(headline["split"]) == ["internal test"]
    table = model_card.per_class_table(MODEL, "test")
    assert list(table["class"]) == NAMES and list(table["training images"]) == [5, 7, 6]
    assert model_card.confusion(MODEL, "test")[1][1] == 2
    assert model_card.version_line(MODEL).startswith("demo (sha256 abababababab)")


def test_model_card_tables_read_as_text_with_a_dash_for_a_missing_figure():
    import pandas as pd

    table = pd.DataFrame([{"split": "validation", "images": 1539, "accuracy": 0.98176,
                           "top-2 accuracy": None, "ECE": 0.0049, "unrecorded": None},
                          {"split": "cross-validation", "images": 222, "accuracy": 0.892,
                           "top-2 accuracy": 0.97, "ECE": float("nan"), "unrecorded": None}])
    shown = model_card.as_text(table, percent=("accuracy", "top-2 accuracy"),
                               decimals={"ECE": 3})
    assert list(shown.columns) == ["split", "images", "accuracy", "top-2 accuracy", "ECE"]
    assert shown.iloc[0].tolist() == ["validation", "1,539", "98.2%", "–", "0.005"]
    assert shown.iloc[1].tolist() == ["cross-validation", "222", "89.2%", "97.0%", "–"]


def test_read_history_tolerates_missing_and_broken_files(tmp_path):
    assert model_card.read_history(tmp_path) is None
    (tmp_path / "history.json").write_text("{not json")
    assert model_card.read_history(tmp_path) is None
    (tmp_path / "history.json").write_text('{"epochs": [{"stage": "head", "epoch": 1}]}')
    assert model_card.read_history(tmp_path)["epochs"][0]["epoch"] == 1


def test_html_report_is_one_self_contained_file():
    heatmap = Heatmap(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "Grad-CAM", 1,
                      "out_relu")
    page = html_report(result("a<b>.jpg", (0.3, 0.45, 0.25), true_label="eosinophil"),
                       np.zeros((20, 30, 3), np.uint8), heatmap, MODEL)
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 2
    assert "a&lt;b&gt;.jpg" in page and "a<b>.jpg" not in page  # names are escaped
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from elsewhere
    assert "Uncertain" in page and "True label" in page and "not a diagnostic device" in page
    assert "Eosinophil: morphology" in page and "sha256 abababababab" in page


def test_classify_files_keeps_good_files_and_explains_bad_ones(tiny_classifier):
    buffer = io.BytesIO()
    cell_image((64, 48), (200, 120, 180)).save(buffer, format="PNG")
    png = buffer.getvalue()
    results, failures = classify_files(tiny_classifier, [("a.png", png), ("b.txt", b"hello"),
                                                         ("c.png", png), ("d.jpg", b"")])
    assert [r.name for r in results] == ["a.png", "c.png"]
    assert [f.name for f in failures] == ["b.txt", "d.jpg"]
    assert "empty" in failures[1].message
    first = results[0]
    assert first.image_rgb.shape == (48, 64, 3) and first.pixels.shape == (96, 96, 3)
    assert first.digest == results[1].digest  # the same bytes, the same cache key
    rows = list(csv.DictReader(io.StringIO(results_csv(results, tiny_classifier.display_names)
                                           .decode("utf-8"))))
    assert [row["file"] for row in rows] == ["a.png", "c.png"]
    assert classify_files(tiny_classifier, []) == ([], [])


def test_draw_example_is_reproducible():
    records = [("a", "x"), ("b", "y"), ("c", "z")]
    assert draw_example(records, seed=1) == draw_example(records, seed=1)
    with pytest.raises(ValueError):
        draw_example([])
