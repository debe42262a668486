"""The explorer's figures carry what a click needs: cell labels and row numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hematovision_core import charts

NAMES = {"eosinophil": "Eosinophil", "neutrophil": "Neutrophil", "basophil": "Basophil"}


def test_every_confusion_cell_can_be_clicked():
    confusion = pd.DataFrame([[5, 1], [2, 7], [0, 3]], columns=["eosinophil", "neutrophil"],
                             index=["eosinophil", "neutrophil", "basophil"])
    figure = charts.confusion_matrix_chart(confusion, NAMES, selected=("neutrophil", "eosinophil"))
    heatmap, cells, frame = figure.data
    assert heatmap.type == "heatmap" and heatmap.hoverinfo == "skip"
    pairs = [tuple(pair) for pair in cells.customdata]
    assert len(pairs) == 6 and ("basophil", "neutrophil") in pairs
    assert list(cells.text) == ["5", "1", "2", "7", "0", "3"]  # same order as the pairs
    assert frame.x == ("Eosinophil",) and frame.y == ("Neutrophil",)  # the selected cell


def test_map_points_carry_their_row_and_thinning_keeps_every_mistake(monkeypatch):
    count = 1000
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "x": rng.normal(size=count), "y": rng.normal(size=count),
        "label": rng.choice(["eosinophil", "neutrophil"], size=count),
        "predicted": "eosinophil", "confidence": 0.9,
    })
    table["correct"] = table["label"] == table["predicted"]
    figure = charts.feature_map_chart(table, NAMES, (0.4, 0.2))
    rows = np.concatenate([np.asarray(trace.customdata) for trace in figure.data])
    assert sorted(rows.tolist()) == list(range(count))
    monkeypatch.setattr(charts, "MAP_POINT_LIMIT", 600)
    thinned = charts.feature_map_chart(table, NAMES)
    rows = np.concatenate([np.asarray(trace.customdata) for trace in thinned.data])
    wrong = set(table.index[~table["correct"]])
    assert wrong <= set(rows.tolist()) and len(rows) <= 600


def test_the_distribution_chart_has_one_bar_group_per_split():
    counts = pd.DataFrame({"train": [7, 9], "test": [2, 3]}, index=["eosinophil", "neutrophil"])
    figure = charts.class_distribution_chart(counts, NAMES, highlight="test")
    assert [trace.name for trace in figure.data] == ["train", "test"]
    assert list(figure.data[1].y) == [2, 3]
