"""CSV exports neutralise formula-looking text (OWASP CSV injection) and keep numbers as numbers."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from hematovision_core.csv_safety import frame_to_csv, safe_cell, to_csv

ATTACKS = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+SUM(1,2)", "@SUM(1)", "-1+2",
           "\t=1", "\r=1", "\n=1", "  =1+1", "\uff1dSUM(1)"]


def read_back(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


@pytest.mark.parametrize("text", ATTACKS)
def test_formula_text_gets_a_leading_quote(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["ana", "cell 01.png", "", "a=b", "x-1", "'=already", 0.5])
def test_ordinary_values_are_left_alone(value):
    assert safe_cell(value) == value


def test_numbers_stay_numbers_but_number_like_text_is_quoted():
    assert safe_cell(-0.25) == -0.25 and safe_cell(-3) == -3 and safe_cell(np.float64(-1.5)) == -1.5
    assert safe_cell(True) is True and safe_cell(None) is None
    assert safe_cell("-1") == "'-1"  # text from a user is untrusted, whatever it looks like


def test_to_csv_quotes_cells_and_keeps_the_structure():
    rows = [{"file": text, "confidence": -0.5} for text in ATTACKS]
    rows.append({"file": 'a,"b"\nc', "confidence": 0.9})
    table = read_back(to_csv(rows))
    assert table[0] == ["file", "confidence"]
    assert [row[0] for row in table[1:-1]] == ["'" + text for text in ATTACKS]
    assert all(row[1] == "-0.5" for row in table[1:-1])  # a number is never prefixed
    assert table[-1] == ['a,"b"\nc', "0.9"]  # commas, quotes and newlines quoted (RFC 4180)
    assert to_csv([]) == b""


def test_frame_to_csv_matches_pandas_except_for_the_neutralised_cells():
    frame = pd.DataFrame({"nickname": ["ana", "=1+1", "@x"], "correct": [True, False, True],
                          "model_confidence": [0.9, np.nan, -0.1], "points": [10, 0, 5]})
    table = read_back(frame_to_csv(frame))
    expected = read_back(frame.to_csv(index=False).encode())
    assert table[0] == expected[0]
    assert [row[0] for row in table[1:]] == ["ana", "'=1+1", "'@x"]
    assert [row[1:] for row in table[1:]] == [row[1:] for row in expected[1:]]
