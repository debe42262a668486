"""CSV exports that a spreadsheet opens as data, never as formulas (CSV or formula injection).

Nicknames and file names are typed by students; the instructor opens the exports in Excel or
LibreOffice, which run any cell that starts like a formula (`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`,
`@SUM(...)`). Following OWASP's CSV injection advice, a text cell whose first character (or first
after leading whitespace, which some spreadsheets skip) is one of = + - @ tab carriage-return
line-feed or NUL, or their full-width forms, gets a single quote in front: spreadsheets read
`'=1` as the text "=1". Quoting of commas, quotes and newlines is left to the csv module (RFC 4180).

Only text is changed. Numbers stay numbers, so a negative confidence or score column is written as
`-0.25`, not `'-0.25`: a float cannot hold a formula. Text that merely looks like a negative
number ("-1") is still quoted, because from a user it is as untrusted as "-1+2".
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Mapping, Sequence

# OWASP's list (= + - @ tab CR), plus LF and NUL (ASVS 1.2.10) and the full-width forms that
# East-Asian Excel locales also accept as formula starts.
FORMULA_STARTS = frozenset("=+-@\t\r\n\0" "\uff1d\uff0b\uff0d\uff20")


def safe_cell(value: Any) -> Any:
    """`value` with a leading ' if it is text a spreadsheet would read as a formula; else as is."""
    if not isinstance(value, str):
        return value
    stripped = value.lstrip(" \t\r\n\0")
    if value[:1] in FORMULA_STARTS or stripped[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def to_csv(rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> bytes:
    """Rows of dicts as UTF-8 CSV bytes with a header, every text cell passed through `safe_cell`.

    Header names go through `safe_cell` too. `fieldnames` defaults to the first row's keys; with no
    rows and no `fieldnames` the result is empty.
    """
    rows = list(rows)
    fieldnames = list(fieldnames if fieldnames is not None else (rows[0] if rows else []))
    buffer = io.StringIO()
    if fieldnames:
        writer = csv.writer(buffer)
        writer.writerow([safe_cell(name) for name in fieldnames])
        for row in rows:
            writer.writerow([safe_cell(_blank_if_missing(row.get(name))) for name in fieldnames])
    return buffer.getvalue().encode("utf-8")


def frame_to_csv(frame) -> bytes:
    """A pandas DataFrame as `to_csv` writes it (index left out); NaN becomes an empty cell."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return to_csv(records, [str(column) for column in frame.columns])


def _blank_if_missing(value: Any) -> Any:
    return "" if value is None else value
