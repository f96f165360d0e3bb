"""Class roster import: a school admin uploads the school's student list as CSV or XLSX.

Parsing and row validation are pure (`parse_roster`: bytes + content type → rows and row errors), so they
can be tested without a database. `import_roster` adds the checks that need the database, and writes only
when the whole file is valid: one bad row and nothing is imported, so an admin never has to work out which
half of a file made it in.

An upload is untrusted input that expands: a 92 KB .xlsx declaring a row three million rows down made
openpyxl yield every empty row in between (32 s of one worker's event loop). So `parse_upload` parses in a
small thread pool, off the event loop, within limits on rows (blank ones counted), cells, the zip's
unpacked size (checked from its directory before openpyxl opens it) and time.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import re
import time
import uuid
import zipfile
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import openpyxl
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import UnsupportedMediaType
from models.accounts.auth import audit
from models.accounts.errors import DuplicateName, RosterInvalid
from models.accounts.schemas import RosterReport, RosterRowError
from models.accounts.tables import Classroom, Guardianship, School, Student
from models.base import Change, note_change

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Every error is checked, but a file that is wrong throughout (a shifted column, say) needs only the first
# screenful listed for the admin to see what is wrong.
MAX_LISTED_ERRORS = 200
# Templates often put a title ("XX小学2025学年学生名单") above the header row.
HEADER_SEARCH_ROWS = 5
# Excel in China saves CSV as GBK (GB18030 is its superset); UTF-8 (with or without BOM) is tried first
# because GBK text is almost never valid UTF-8, while the reverse decodes to garbage.
CSV_ENCODINGS = ("utf-8-sig", "gb18030")

# Limits on what a file may make us read, whatever it holds: rows as the reader yields them (blank and
# padding rows included; a template has a few dozen blank rows at most), cells over all those rows, the
# unpacked size of an .xlsx (a 5,000-student sheet unpacks to about 1 MB) and seconds of parsing.
MAX_TABLE_ROWS = 20_000  # twice the most students one file may hold (Settings.roster_max_rows ≤ 10,000)
MAX_TABLE_CELLS = 1_000_000  # 50 columns of MAX_TABLE_ROWS; a real roster has four to ten
MAX_XLSX_UNPACKED = 64 * 1024 * 1024
MAX_XLSX_MEMBERS = 1000
PARSE_SECONDS = 10.0
# Uploads parsed at once per process: more wait their turn (a parse holds the GIL part of the time).
PARSERS = 2
_parsers = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="roster-parse")

# Column lengths of the student and classroom tables.
MAX_STUDENT_NO = 32
MAX_NAME = 50


@dataclass(frozen=True)
class Column:
    field: str
    label: str
    aliases: tuple[str, ...]


COLUMNS = (
    Column("student_no", "学号", ("学号", "student_no")),
    Column("name", "姓名", ("姓名", "学生姓名", "name")),
    Column("classroom", "班级", ("班级", "班级名称", "classroom")),
    Column("grade", "年级", ("年级", "grade")),
)
_HEADER_NAMES = {alias.lower(): col.field for col in COLUMNS for alias in col.aliases}

_CHINESE_NUMBERS = ("一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二")
GRADE_NAMES: dict[str, int] = {
    "幼儿园": 0,
    "学前班": 0,
    "小班": 0,
    "中班": 0,
    "大班": 0,
    **{f"{cn}年级": n for n, cn in enumerate(_CHINESE_NUMBERS, start=1)},
    **{f"{n}年级": n for n in range(1, 13)},
    **{f"小学{cn}年级": n for n, cn in enumerate(_CHINESE_NUMBERS[:6], start=1)},
    **{f"初{cn}": 6 + n for n, cn in enumerate(_CHINESE_NUMBERS[:3], start=1)},
    **{f"初中{cn}年级": 6 + n for n, cn in enumerate(_CHINESE_NUMBERS[:3], start=1)},
    **{f"高{cn}": 9 + n for n, cn in enumerate(_CHINESE_NUMBERS[:3], start=1)},
    **{f"高中{cn}年级": 9 + n for n, cn in enumerate(_CHINESE_NUMBERS[:3], start=1)},
}
# What Excel shows (and saves to CSV) for a long number in a "General" column: the digits are lost.
_SCIENTIFIC = re.compile(r"^\d+(\.\d+)?[eE]\+\d+$")


@dataclass(frozen=True)
class RosterRow:
    row: int  # the row number the admin sees in Excel (the header is usually row 1)
    student_no: str
    name: str
    classroom: str
    grade: int


@dataclass
class ParsedRoster:
    rows: list[RosterRow] = field(default_factory=list)
    errors: list[RosterRowError] = field(default_factory=list)


# ---- reading the file -------------------------------------------------------------------------------
Table = Generator[tuple[int, list[str]], None, None]


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def read_table(data: bytes, content_type: str, deadline: float | None = None) -> Table:
    """Rows of the file as (row number as Excel shows it, cell texts); unreadable files, and files past
    the limits above or past `deadline` (time.monotonic()), → 422."""
    kind = media_type(content_type)
    if kind == CSV:
        return _bounded(_csv_rows(data), deadline)
    if kind == XLSX:
        _check_unpacked_size(data)
        return _bounded(_xlsx_rows(data), deadline)
    raise UnsupportedMediaType("请上传 CSV（text/csv）或 Excel（.xlsx）文件")


def _too_big() -> RosterInvalid:
    return _unreadable(
        f"文件过大或空行过多：一次最多读取 {MAX_TABLE_ROWS} 行（含空行），请删除多余的空行后分批导入"
    )


def _bounded(table: Table, deadline: float | None) -> Table:
    rows = cells = 0
    with closing(table):
        for number, values in table:
            rows += 1
            cells += len(values)
            if rows > MAX_TABLE_ROWS or cells > MAX_TABLE_CELLS:
                raise _too_big()
            if deadline is not None and rows % 100 == 0 and time.monotonic() > deadline:
                raise _unreadable("文件处理超时，请删除多余的行和列后分批导入")
            yield number, values


def _check_unpacked_size(data: bytes) -> None:
    """An .xlsx is a zip: refuse one that would unpack past the limit before openpyxl unpacks anything.
    (zipfile reads a member only up to the size its directory declares, so the directory is the bound.)"""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise _unreadable(XLSX_UNREADABLE) from exc
    if len(members) > MAX_XLSX_MEMBERS or sum(m.file_size for m in members) > MAX_XLSX_UNPACKED:
        raise _unreadable(
            f"Excel 文件解压后超过 {MAX_XLSX_UNPACKED // (1024 * 1024)} MB，请删除多余的内容后重试"
        )


async def parse_upload(data: bytes, content_type: str, *, max_rows: int) -> ParsedRoster:
    """parse_roster in the parsing pool, off the event loop, within PARSE_SECONDS."""
    deadline = time.monotonic() + PARSE_SECONDS
    parse = functools.partial(parse_roster, data, content_type, max_rows=max_rows, deadline=deadline)
    return await asyncio.get_running_loop().run_in_executor(_parsers, parse)


XLSX_UNREADABLE = "无法读取 Excel 文件，请确认是 .xlsx 格式（旧版 .xls 请先另存为 .xlsx）"


def _unreadable(detail: str) -> RosterInvalid:
    return RosterInvalid(detail, errors=[])


def _csv_rows(data: bytes) -> Table:
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise _unreadable("无法识别 CSV 文件的编码，请另存为 UTF-8 或 GBK 编码的 CSV")
    if "\x00" in text:
        raise _unreadable("这不是 CSV 文本文件，请检查文件类型")
    # One record is one Excel row, even when a quoted cell spans several lines.
    records = enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
    try:
        for number, cells in records:
            yield number, [c.strip() for c in cells]
    except csv.Error as exc:  # e.g. a cell over the csv module's 128 KiB field limit
        raise _unreadable(f"CSV 文件格式有误：{exc}") from exc


def _xlsx_rows(data: bytes) -> Table:
    # openpyxl reports a damaged or foreign file through many exception types (zip, XML, KeyError,
    # ValueError...), while reading as well as while opening; for an upload they all mean "unreadable".
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise _unreadable(XLSX_UNREADABLE) from exc
    try:
        sheet = workbook.worksheets[0]
        # The dimension a file declares may be wrong (some generators never update it); read everything.
        sheet.reset_dimensions()
        # Read-only rows pad the gaps between stored rows, so the position is the row number Excel shows.
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(v) for v in values]
    except Exception as exc:
        raise _unreadable(XLSX_UNREADABLE) from exc
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # numbers typed into Excel: 20250101 and 3, not 20250101.0 and 3.0
    return str(value).strip()


def _find_header(table: Table) -> tuple[int, dict[str, int]]:
    """The header row's number and the position of each known column in it."""
    first: tuple[int, dict[str, int]] | None = None
    looked_at = 0
    for number, cells in table:
        if not any(cells):
            continue
        positions: dict[str, int] = {}
        for index, cell in enumerate(cells):
            name = _HEADER_NAMES.get(cell.replace("*", "").replace("＊", "").strip().lower())
            if name is not None:
                positions.setdefault(name, index)
        if positions:
            return number, positions
        first = first or (number, positions)
        looked_at += 1
        if looked_at == HEADER_SEARCH_ROWS:
            break
    if first is None:
        raise _unreadable("文件是空的，没有找到学生名单")
    return first


# ---- validating rows --------------------------------------------------------------------------------
def parse_grade(text: str) -> int | None:
    """0–12 from a number or a Chinese grade name (一年级, 初二, 高三, 幼儿园); None if not a grade."""
    compact = text.replace(" ", "").replace("\u3000", "")
    if compact in GRADE_NAMES:
        return GRADE_NAMES[compact]
    try:
        grade = int(compact)
    except ValueError:
        return None
    return grade if 0 <= grade <= 12 else None


def grade_label(grade: int) -> str:
    """How a school names a grade: 幼儿园, 三年级, 初二, 高一."""
    if grade == 0:
        return "幼儿园"
    if grade <= 6:
        return f"{_CHINESE_NUMBERS[grade - 1]}年级"
    return ("初" if grade <= 9 else "高") + _CHINESE_NUMBERS[(grade - 7) % 3]


@dataclass
class _FileState:
    """What earlier rows of the file established, for checks across rows."""

    row_of_number: dict[str, int] = field(default_factory=dict)  # student_no → row it first appeared on
    grade_of_classroom: dict[str, tuple[int, int]] = field(default_factory=dict)  # → (grade, row)


def _check_row(row: int, values: dict[str, str], state: _FileState) -> RosterRow | list[RosterRowError]:
    errors: list[RosterRowError] = []

    def fail(name: str, msg: str) -> None:
        errors.append(RosterRowError(row=row, field=name, msg=msg))

    student_no, name, classroom, grade_text = (values[c.field] for c in COLUMNS)
    if not student_no:
        fail("student_no", "学号不能为空")
    elif _SCIENTIFIC.match(student_no):
        fail("student_no", f"学号“{student_no}”被 Excel 变成了科学计数法，请把学号列设为文本后重新导出")
    elif len(student_no) > MAX_STUDENT_NO:
        fail("student_no", f"学号不能超过 {MAX_STUDENT_NO} 个字符")
    elif student_no in state.row_of_number:
        fail("student_no", f"学号 {student_no} 与第 {state.row_of_number[student_no]} 行重复")
    else:
        state.row_of_number[student_no] = row

    if not name:
        fail("name", "姓名不能为空")
    elif len(name) > MAX_NAME:
        fail("name", f"姓名不能超过 {MAX_NAME} 个字符")

    if not classroom:
        fail("classroom", "班级不能为空")
    elif len(classroom) > MAX_NAME:
        fail("classroom", f"班级名称不能超过 {MAX_NAME} 个字符")

    grade = parse_grade(grade_text)
    if not grade_text:
        fail("grade", "年级不能为空")
    elif grade is None:
        fail(
            "grade", f"无法识别的年级“{grade_text}”，请填 0–12 的数字（0 为幼儿园），或如“三年级”“初一”“高二”"
        )
    elif classroom:
        first_grade, first_row = state.grade_of_classroom.setdefault(classroom, (grade, row))
        if first_grade != grade:
            was, now = grade_label(first_grade), grade_label(grade)
            fail("grade", f"班级“{classroom}”在第 {first_row} 行是{was}，这里是{now}")

    if errors or grade is None:
        return errors
    return RosterRow(row, student_no, name, classroom, grade)


def parse_roster(
    data: bytes, content_type: str, *, max_rows: int, deadline: float | None = None
) -> ParsedRoster:
    """Rows and row errors of an uploaded roster. File-level problems raise at once: an unsupported
    content type → 415; an unreadable file, missing columns, no rows or more than `max_rows` rows
    (Settings.roster_max_rows) → 422."""
    with closing(read_table(data, content_type, deadline)) as table:
        header_row, positions = _find_header(table)
        missing = [c for c in COLUMNS if c.field not in positions]
        if missing:
            raise RosterInvalid(
                f"缺少必需的列：{'、'.join(c.label for c in missing)}（表头应包含：学号、姓名、班级、年级）",
                errors=[
                    {"row": header_row, "field": c.field, "msg": f"缺少“{c.label}”列（也可写作 {c.field}）"}
                    for c in missing
                ],
            )
        parsed = ParsedRoster()
        state = _FileState()
        count = 0
        for row, cells in table:
            values = {f: cells[i] if i < len(cells) else "" for f, i in positions.items()}
            if not any(values.values()):
                continue  # a blank line, or a template row with only its serial number filled in
            count += 1
            if count > max_rows:
                raise _unreadable(f"一次最多导入 {max_rows} 名学生，请分批导入")
            checked = _check_row(row, values, state)
            if isinstance(checked, RosterRow):
                parsed.rows.append(checked)
            else:
                parsed.errors.extend(checked)
    if count == 0:
        raise _unreadable("文件中没有学生数据")
    return parsed


# ---- importing ----------------------------------------------------------------------------------------
def _reject(errors: Sequence[RosterRowError]) -> RosterInvalid:
    ordered = sorted(errors, key=lambda e: e.row)
    detail = f"名单中有 {len(ordered)} 处错误，未导入任何数据"
    if len(ordered) > MAX_LISTED_ERRORS:
        detail += f"（仅列出前 {MAX_LISTED_ERRORS} 处）"
    return RosterInvalid(detail, errors=[e.model_dump() for e in ordered[:MAX_LISTED_ERRORS]])


async def import_roster(
    session: AsyncSession, school: School, roster: ParsedRoster, actor: uuid.UUID
) -> RosterReport:
    """Create missing classrooms, create new students and update known ones (matched by student_no) —
    all of it, or nothing if any row is wrong."""
    # One import per school at a time: two concurrent uploads would both create the same classroom.
    # Nothing is added to the session before the checks, so autoflush writes nothing early.
    await session.execute(select(School.id).where(School.id == school.id).with_for_update())
    classrooms = {
        c.name: c
        for c in (await session.execute(select(Classroom).where(Classroom.school_id == school.id))).scalars()
    }
    numbers = [row.student_no for row in roster.rows]
    students = {
        s.student_no: s
        for s in (
            await session.execute(
                select(Student).where(Student.school_id == school.id, Student.student_no.in_(numbers))
            )
        ).scalars()
    }
    errors = list(roster.errors)
    for row in roster.rows:
        existing = classrooms.get(row.classroom)
        if existing is not None and existing.grade != row.grade:
            errors.append(
                RosterRowError(
                    row=row.row,
                    field="grade",
                    msg=f"本校已有班级“{row.classroom}”（{grade_label(existing.grade)}），这里填的是{grade_label(row.grade)}",
                )
            )
    if errors:
        raise _reject(errors)

    created_classrooms = 0
    for row in roster.rows:
        if row.classroom not in classrooms:
            # The id is set here, not at flush, so students can point at it before the one flush below.
            classroom = Classroom(id=uuid.uuid4(), school_id=school.id, name=row.classroom, grade=row.grade)
            classrooms[row.classroom] = classroom
            session.add(classroom)
            created_classrooms += 1

    created = 0
    changed: list[uuid.UUID] = []
    for row in roster.rows:
        classroom_id = classrooms[row.classroom].id
        student = students.get(row.student_no)
        if student is None:
            session.add(
                Student(
                    school_id=school.id, classroom_id=classroom_id, student_no=row.student_no, name=row.name
                )
            )
            created += 1
        elif (student.name, student.classroom_id) != (row.name, classroom_id):
            student.name, student.classroom_id = row.name, classroom_id
            changed.append(student.id)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a student or classroom added through the API meanwhile
        raise DuplicateName("导入期间名单被他人修改，请重新导入") from exc

    # Guardians see their child's name and classroom in their cached profile.
    if changed:
        for parent_id in (
            await session.execute(
                select(Guardianship.parent_user_id).where(Guardianship.student_id.in_(changed))
            )
        ).scalars():
            note_change(session, Change.principal, parent_id)

    report = RosterReport(
        rows=len(roster.rows),
        created_classrooms=created_classrooms,
        created_students=created,
        updated_students=len(changed),
    )
    audit(
        session,
        "roster.imported",
        actor=actor,
        school_id=school.id,
        target_type="school",
        target_id=school.id,
        **report.model_dump(),
    )
    return report
