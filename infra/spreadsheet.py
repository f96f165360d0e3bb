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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import openpyxl
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

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


@dataclass(frozen=True)
class Column:
    header: str
    width: int = 12
    number_format: str | None = None  # e.g. "0.0%"; "@" keeps typed digits as text (学号 with leading zeros)


HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
FLAGGED_FONT = Font(color="C00000", bold=True)


def report_xlsx(
    sheet_title: str,
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
    flagged: Callable[[Sequence[Any]], Iterable[int]] = lambda row: (),
    formatted_rows: int = 0,
) -> bytes:
    """A report as schools print it: an optional caption line, a bold header row that stays in view, the
    rows (every cell made safe), the columns' widths and formats, and the cells `flagged(row)` names (by
    column index) in red. `formatted_rows` pre-formats that many empty rows below (a template to fill)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = sheet_title
    if caption is not None:
        sheet.append([safe_cell(caption)])
    sheet.append([c.header for c in columns])
    header_row = sheet.max_row
    for cell in sheet[header_row]:
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
    last = header_row
    for row in rows:
        sheet.append([safe_cell(v) for v in row])
        last = sheet.max_row
        for index in flagged(row):
            sheet.cell(last, index + 1).font = FLAGGED_FONT
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
        if column.number_format is not None:
            for line in range(header_row + 1, max(last, header_row + formatted_rows) + 1):
                sheet.cell(line, index).number_format = column.number_format
    sheet.freeze_panes = sheet.cell(header_row + 1, 1).coordinate
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def new_workbook() -> openpyxl.Workbook:
    """A workbook for an export with several sheets or charts; write it out with `workbook_bytes`."""
    return openpyxl.Workbook()


def workbook_bytes(book: openpyxl.Workbook) -> bytes:
    """Every text cell of every sheet made safe, then the file."""
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    cell.value = safe_cell(cell.value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
