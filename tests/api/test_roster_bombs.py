"""Roster uploads built to exhaust the server: an .xlsx whose rows lie three million rows apart, one
that unpacks to far more than it weighs, rows thousands of cells wide. Each is refused with a 422 in
Chinese, and the process keeps answering (/healthz) while it is being looked at."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile

import openpyxl
import pytest

from handlers.deps import Deps
from models.accounts.errors import RosterInvalid
from models.accounts.roster import MAX_TABLE_ROWS, MAX_XLSX_UNPACKED, XLSX, parse_roster
from tests.api.test_roster_import import row_counts, upload, xlsx_of
from tests.builders import make_world
from tests.client import Api

SHEET = "xl/worksheets/sheet1.xml"


def _rewritten(
    data: bytes, member: str, change: dict[str, str], extra: dict[str, bytes] | None = None
) -> bytes:
    """The same .xlsx with text replaced in one member (and members added)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            content = source.read(info)
            if info.filename == member:
                text = content.decode()
                for old, new in change.items():
                    assert old in text, old
                    text = text.replace(old, new)
                content = text.encode()
            target.writestr(info.filename, content)
        for name, content in (extra or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def three_million_empty_rows() -> bytes:
    """A header, and one student on row 3,000,000: a reader that pads the gap yields every row between."""
    plain = xlsx_of(["S1", "张三", "三年级1班", "3"])
    far = "3000000"
    return _rewritten(
        plain, SHEET, {'<row r="2"': f'<row r="{far}"', **{f'r="{c}2"': f'r="{c}{far}"' for c in "ABCD"}}
    )


async def _health_latencies(api: Api, until: asyncio.Future[object]) -> list[float]:
    latencies = []
    while not until.done():
        started = time.perf_counter()
        response = await api.get("/healthz", request_timeout=10)
        assert response.status == 200
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return latencies


async def test_three_million_empty_rows_are_refused_and_the_process_keeps_answering(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    bomb = three_million_empty_rows()
    assert len(bomb) < 10 * 1024
    before = await row_counts(deps)
    started = time.perf_counter()
    uploading = asyncio.ensure_future(upload(api, w, bomb, XLSX))
    latencies = await _health_latencies(api, uploading)
    response = await uploading
    took = time.perf_counter() - started
    assert response.status == 422 and response.code == "roster_invalid", response.body
    assert f"一次最多读取 {MAX_TABLE_ROWS} 行（含空行）" in response.json()["detail"]
    assert took < 5, took
    assert latencies and max(latencies) < 0.5, latencies
    assert await row_counts(deps) == before


async def test_an_xlsx_that_unpacks_past_the_limit_is_refused_before_it_is_opened(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    padding = b"\0" * (MAX_XLSX_UNPACKED + 1)
    bomb = _rewritten(xlsx_of(["S1", "张三", "三年级1班", "3"]), SHEET, {}, {"xl/media/padding.bin": padding})
    assert len(bomb) < 200 * 1024
    started = time.perf_counter()
    response = await upload(api, w, bomb, XLSX)
    assert response.status == 422 and response.code == "roster_invalid", response.body
    assert "解压后超过 64 MB" in response.json()["detail"]
    assert time.perf_counter() - started < 2


async def test_rows_thousands_of_cells_wide_are_refused(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["学号", "姓名", "班级", "年级"])
    for row in range(2, 80):
        sheet.cell(row=row, column=1, value=f"S{row}")
        sheet.cell(row=row, column=16384, value="x")  # column XFD: every row padded to 16,384 cells
    out = io.BytesIO()
    workbook.save(out)
    response = await upload(api, w, out.getvalue(), XLSX)
    assert response.status == 422 and response.code == "roster_invalid", response.body
    assert "文件过大或空行过多" in response.json()["detail"]


def test_a_parse_past_its_deadline_stops() -> None:
    rows = [[f"S{i}", "张三", "三年级1班", "3"] for i in range(500)]
    with pytest.raises(RosterInvalid, match="文件处理超时"):
        parse_roster(xlsx_of(*rows), XLSX, max_rows=5000, deadline=time.monotonic() - 1)
    assert len(parse_roster(xlsx_of(*rows), XLSX, max_rows=5000, deadline=time.monotonic() + 60).rows) == 500
