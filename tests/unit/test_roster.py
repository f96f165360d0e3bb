"""Reading and checking an uploaded class roster (models/accounts/roster.py), without a database."""

from __future__ import annotations

import io
from typing import Any

import openpyxl
import pytest

from handlers.problems import status_of
from infra.config import Settings
from infra.errors import UnsupportedMediaType
from models.accounts.errors import RosterInvalid
from models.accounts.roster import CSV, XLSX, ParsedRoster, RosterRow, parse_grade, parse_roster

HEADER = "学号,姓名,班级,年级"
MAX_ROWS = Settings().roster_max_rows  # as the service is configured


def csv_of(*lines: str, encoding: str = "utf-8") -> bytes:
    return "\r\n".join(lines).encode(encoding)


def xlsx_of(*rows: list[Any], at: dict[str, Any] | None = None) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    for cell, value in (at or {}).items():
        sheet[cell] = value
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def errors_of(parsed: ParsedRoster) -> list[tuple[int, str]]:
    return [(e.row, e.field) for e in parsed.errors]


def invalid(data: bytes, content_type: str = CSV) -> RosterInvalid:
    with pytest.raises(RosterInvalid) as caught:
        parse_roster(data, content_type, max_rows=MAX_ROWS)
    return caught.value


# ---- encodings and formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_in_the_encodings_excel_and_editors_save(encoding: str) -> None:
    data = csv_of(HEADER, "2025001,张三,三年级1班,3", "2025002,李四,三年级1班,3", encoding=encoding)
    parsed = parse_roster(data, "text/csv; charset=whatever", max_rows=MAX_ROWS)
    assert parsed.errors == []
    assert parsed.rows == [
        RosterRow(2, "2025001", "张三", "三年级1班", 3),
        RosterRow(3, "2025002", "李四", "三年级1班", 3),
    ]


def test_csv_in_an_unknown_encoding_is_rejected_as_unreadable() -> None:
    data = csv_of(HEADER, "2025001,张三,三年级1班,3", encoding="utf-16")
    error = invalid(data)
    assert status_of(error) == 422 and "编码" in error.detail


def test_xlsx_numbers_become_text_and_rows_keep_their_excel_numbers() -> None:
    data = xlsx_of(
        ["某某小学 2025 学年学生名单"],  # a title above the header, as school templates have
        ["序号", "学号", "姓名", "班级", "年级", "备注"],
        [1, 2025001, "张三", "一年级2班", 1, None],
        [2, 2025002.0, " 李四 ", "一年级2班", "一年级", "转入"],
        at={"B6": "2025003", "C6": "王五", "D6": "初一1班", "E6": "初一"},  # row 5 left empty
    )
    parsed = parse_roster(data, XLSX, max_rows=MAX_ROWS)
    assert parsed.errors == []
    assert parsed.rows == [
        RosterRow(3, "2025001", "张三", "一年级2班", 1),
        RosterRow(4, "2025002", "李四", "一年级2班", 1),
        RosterRow(6, "2025003", "王五", "初一1班", 7),
    ]


def test_a_file_that_is_not_really_xlsx_is_unreadable() -> None:
    error = invalid(b"PK\x03\x04 this is no workbook", XLSX)
    assert "Excel" in error.detail
    broken = xlsx_of(["学号", "姓名", "班级", "年级"], ["1", "张三", "1班", 1])
    assert "Excel" in invalid(broken[: len(broken) // 2], XLSX).detail


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/vnd.ms-excel", ""])
def test_other_content_types_are_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_roster(csv_of(HEADER, "1,张三,1班,1"), content_type, max_rows=MAX_ROWS)


# ---- header ------------------------------------------------------------------------------------------
def test_english_headers_in_any_order_and_extra_columns_are_accepted() -> None:
    data = csv_of("Grade,gender,Name,student_no,classroom", "12,女,赵六,S9,高三2班")
    assert parse_roster(data, CSV, max_rows=MAX_ROWS).rows == [RosterRow(2, "S9", "赵六", "高三2班", 12)]


def test_missing_columns_are_named_on_the_header_row() -> None:
    error = invalid(csv_of("学号,姓名", "1,张三"))
    assert status_of(error) == 422
    assert "班级" in error.detail and "年级" in error.detail
    assert error.errors == [
        {"row": 1, "field": "classroom", "msg": "缺少“班级”列（也可写作 classroom）"},
        {"row": 1, "field": "grade", "msg": "缺少“年级”列（也可写作 grade）"},
    ]


def test_a_file_without_any_known_header_lists_every_column_missing() -> None:
    error = invalid(csv_of("a,b,c", "1,2,3"))
    assert [e["field"] for e in error.errors or []] == ["student_no", "name", "classroom", "grade"]


@pytest.mark.parametrize("data", [b"", b"\r\n\r\n", csv_of(HEADER), csv_of(HEADER, ",,,", "")])
def test_a_file_without_students_is_rejected(data: bytes) -> None:
    assert status_of(invalid(data)) == 422


# ---- rows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "grade"),
    [
        ("0", 0),
        ("12", 12),
        ("幼儿园", 0),
        ("大班", 0),
        ("一年级", 1),
        ("六年级", 6),
        ("3年级", 3),
        ("小学五年级", 5),
        ("七年级", 7),
        ("初一", 7),
        ("初二", 8),
        ("初三", 9),
        ("初中三年级", 9),
        ("高一", 10),
        ("高二", 11),
        ("高三", 12),
        (" 高 三 ", 12),
    ],
)
def test_grades_by_number_or_chinese_name(text: str, grade: int) -> None:
    assert parse_grade(text) == grade


@pytest.mark.parametrize("text", ["13", "-1", "3.5", "大一", "三班", "abc"])
def test_what_is_not_a_grade(text: str) -> None:
    assert parse_grade(text) is None


def test_blank_lines_are_skipped_and_row_numbers_stay_those_excel_shows() -> None:
    data = csv_of("", HEADER, "1,张三,1班,1", "", ",,,", "2,李四,1班,1", "")
    parsed = parse_roster(data, CSV, max_rows=MAX_ROWS)
    assert [(r.row, r.student_no) for r in parsed.rows] == [(3, "1"), (6, "2")]


def test_a_template_row_with_only_its_serial_number_is_blank() -> None:
    data = csv_of("序号," + HEADER, "1,A1,张三,1班,1", "2,,,,", "3,,,,")
    assert [r.row for r in parse_roster(data, CSV, max_rows=MAX_ROWS).rows] == [2]


def test_a_duplicate_student_number_is_an_error_on_the_later_row() -> None:
    data = csv_of(HEADER, "A1,张三,1班,1", "A2,李四,1班,1", "A1,王五,1班,1")
    parsed = parse_roster(data, CSV, max_rows=MAX_ROWS)
    assert errors_of(parsed) == [(4, "student_no")]
    assert "第 2 行" in parsed.errors[0].msg
    assert [r.student_no for r in parsed.rows] == ["A1", "A2"]


def test_each_bad_cell_is_reported_with_its_row_and_field() -> None:
    data = csv_of(
        HEADER,
        "A1,张三,1班,13",
        ",李四,1班,1",
        "A3,,,",
        "A4,赵六,1班,大一",
        f"{'9' * 33},钱七,1班,1",
        "A6,孙八,1班,1",
    )
    parsed = parse_roster(data, CSV, max_rows=MAX_ROWS)
    assert errors_of(parsed) == [
        (2, "grade"),
        (3, "student_no"),
        (4, "name"),
        (4, "classroom"),
        (4, "grade"),
        (5, "grade"),
        (6, "student_no"),
    ]
    assert "大一" in parsed.errors[5].msg
    assert [r.row for r in parsed.rows] == [7]


def test_one_classroom_with_two_grades_in_the_file_is_an_error_on_the_later_row() -> None:
    data = csv_of(HEADER, "A1,张三,实验班,三年级", "A2,李四,实验班,3", "A3,王五,实验班,四年级")
    parsed = parse_roster(data, CSV, max_rows=MAX_ROWS)
    assert errors_of(parsed) == [(4, "grade")]
    assert "三年级" in parsed.errors[0].msg and "四年级" in parsed.errors[0].msg


def test_a_student_number_mangled_by_excel_into_scientific_notation_is_an_error() -> None:
    parsed = parse_roster(csv_of(HEADER, "2.02501E+11,张三,1班,1"), CSV, max_rows=MAX_ROWS)
    assert errors_of(parsed) == [(2, "student_no")]
    assert "科学计数法" in parsed.errors[0].msg


def test_at_most_max_rows_students_per_file() -> None:
    lines = [f"N{i},学生{i},1班,1" for i in range(MAX_ROWS)]
    assert len(parse_roster(csv_of(HEADER, *lines), CSV, max_rows=MAX_ROWS).rows) == MAX_ROWS
    error = invalid(csv_of(HEADER, *lines, "X,多一个,1班,1"))
    assert str(MAX_ROWS) in error.detail
