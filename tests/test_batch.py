"""batch: the results CSV keeps user file names inert in a spreadsheet."""

from __future__ import annotations

import csv
import io

import numpy as np

from hematovision_core.batch import ImageResult, results_csv
from hematovision_core.predict import Prediction

NAMES = ["Eosinophil", "Lymphocyte", "Neutrophil"]


def result(name: str) -> ImageResult:
    probabilities = np.array([0.7, 0.2, 0.1], dtype=np.float32)
    prediction = Prediction(probabilities, 0, "eosinophil", "Eosinophil", 0.7)
    return ImageResult(name, "0" * 40, np.zeros((4, 4, 3), np.uint8),
                       np.zeros((4, 4, 3), np.float32), prediction, None)


def test_results_csv_neutralises_formula_file_names():
    names = ['=HYPERLINK("http://x","y").png', "=cmd|' /C calc'!A0.jpg", "+SUM(1,2).png",
             "@SUM(1).png", "-1+2.png", "\t=1.png", "\r=1.png", "cell 1.png"]
    rows = list(csv.DictReader(io.StringIO(
        results_csv([result(n) for n in names], NAMES).decode("utf-8"))))
    assert [row["file"] for row in rows] == ["'" + n for n in names[:-1]] + ["cell 1.png"]
    assert all(row["confidence"] == "0.7" for row in rows)  # numbers are not prefixed
