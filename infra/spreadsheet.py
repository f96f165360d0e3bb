"""Writing spreadsheets (CSV and .xlsx) for people to open in Excel or WPS — the one way every export does.

Text that came from users (a student's name, a class, a note) is stored as it was typed; a cell whose text
starts with = + - @ (or a tab or carriage return, which some programs skip before looking) would be run as
a formula when the file is opened (`=cmd|' /C calc'!A0`, `=HYPERLINK(...)` sending data away). Such text is
written with a leading apostrophe, which Excel and WPS show as plain text; numbers and dates stay as they
are (tests/unit/test_spreadsheet.py also checks that no other module writes CSV or .xlsx on its own).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import openpyxl

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, or its text behind an apostrophe when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_bytes(rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 with a BOM (so Excel in China reads it as UTF-8, not GBK), every cell made safe."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    for row in rows:
        writer.writerow(["" if v is None else safe_cell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode()


def xlsx_bytes(rows: Iterable[Sequence[Any]], title: str = "Sheet1") -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title)
    for row in rows:
        sheet.append([safe_cell(v) for v in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
