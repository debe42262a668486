"""batch: the results CSV keeps user file names inert in a spreadsheet."""

from __future__ import annotations

import csv
import io

import numpy as np

from hematovision_core.batch import ImageResult, refuse_other_types, results_csv
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


def test_files_of_other_types_are_refused_one_by_one():
    files = [("a.JPG", b"1"), ("b.png.exe", b"2"), ("c.tiff", b"3"), ("readme", b"4"),
             ("d.png\0.exe", b"5"), ("e.svg", b"6"), ("f.bmp", b"7")]
    kept, refused = refuse_other_types(files)
    assert [name for name, _ in kept] == ["a.JPG", "c.tiff", "f.bmp"]
    assert [failure.name for failure in refused] == ["b.png.exe", "readme", "d.png\0.exe", "e.svg"]
    assert all("not accepted" in failure.message and ".tif" in failure.message
               for failure in refused)


def test_results_csv_carries_the_out_of_domain_verdict_in_plain_words():
    from dataclasses import replace

    from hematovision_core.ood import NOTICE

    flagged, familiar = result("smear.png"), result("cell.png")
    flagged = replace(flagged, prediction=replace(flagged.prediction, out_of_domain=True,
                                                  ood_score=4321.5))
    familiar = replace(familiar, prediction=replace(familiar.prediction, out_of_domain=False,
                                                    ood_score=12.25))
    rows = list(csv.DictReader(io.StringIO(results_csv([flagged, familiar], NAMES).decode())))
    assert [row["out_of_domain"] for row in rows] == ["True", "False"]
    assert [row["ood_score"] for row in rows] == ["4321.5", "12.25"]
    assert rows[0]["note"] == NOTICE and rows[1]["note"] == ""
    assert "another lab, stain or magnification" in NOTICE


def test_results_without_a_guard_have_no_verdict_column():
    rows = list(csv.DictReader(io.StringIO(results_csv([result("a.png")], NAMES).decode())))
    assert "out_of_domain" not in rows[0]
