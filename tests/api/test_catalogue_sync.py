"""Loading the catalogue into the database: first load, idempotent reload, edits, removals, bad files."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import func, select

from course_catalog.loader import load_catalogue
from handlers.deps import Deps
from models.catalog.service import sync_catalogue
from models.catalog.tables import Course
from tests.unit.test_catalogue_files import GOOD, write

ROOT = Path(__file__).resolve().parents[2]


async def courses_by_key(deps: Deps) -> dict[str | None, Course]:
    async with deps.sessions() as s:
        return {c.key: c for c in (await s.execute(select(Course))).scalars()}


async def sync(deps: Deps, root: Path | None = None) -> dict[str, int]:
    loaded = load_catalogue(root) if root else load_catalogue()
    async with deps.sessions() as s, s.begin():
        return (await sync_catalogue(s, loaded)).model_dump()


async def test_first_load_then_reload_is_idempotent_and_keeps_ids(deps: Deps) -> None:
    first = await sync(deps)
    shipped = len(load_catalogue())
    assert first == {"created": shipped, "updated": 0, "unchanged": 0, "archived": 0}
    before = {k: c.id for k, c in (await courses_by_key(deps)).items()}
    assert await sync(deps) == {"created": 0, "updated": 0, "unchanged": shipped, "archived": 0}
    after = {k: c.id for k, c in (await courses_by_key(deps)).items()}
    assert after == before


async def test_edits_update_in_place_and_removed_courses_are_archived(deps: Deps, tmp_path: Path) -> None:
    write(tmp_path, "foundation/a.yaml", GOOD + GOOD.split("courses:\n")[1].replace("t-one", "t-two"))
    assert await sync(deps, tmp_path) == {"created": 2, "updated": 0, "unchanged": 0, "archived": 0}
    original = (await courses_by_key(deps))["t-one"].id
    write(tmp_path, "foundation/a.yaml", GOOD.replace("第一课", "第一课（修订）"))
    assert await sync(deps, tmp_path) == {"created": 0, "updated": 1, "unchanged": 0, "archived": 1}
    rows = await courses_by_key(deps)
    assert rows["t-one"].id == original and rows["t-one"].title == "第一课（修订）"
    assert rows["t-two"].archived_at is not None


async def run_script(deps: Deps, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.sync_catalog",
        *args,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": deps.settings.database_url or ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_script_refuses_an_invalid_file_and_changes_nothing(deps: Deps, tmp_path: Path) -> None:
    await sync(deps)
    write(tmp_path, "foundation/a.yaml", GOOD.replace("topic: family_education", "topic: astrology"))
    code, _, err = await run_script(deps, "--root", str(tmp_path))
    assert code == 1
    assert "foundation/a.yaml: courses.0.topic:" in err
    async with deps.sessions() as s:
        archived = await s.scalar(
            select(func.count()).select_from(Course).where(Course.archived_at.is_not(None))
        )
    assert archived == 0


async def test_script_loads_the_shipped_catalogue(deps: Deps) -> None:
    code, out, err = await run_script(deps)
    assert code == 0, err
    assert f"created {len(load_catalogue())}" in out
    assert len(await courses_by_key(deps)) == len(load_catalogue())
