"""Load the course catalogue files (course_catalog/data) into the database.

    .venv/bin/python -m scripts.sync_catalog [--check]
Idempotent: courses are matched by key, so ids stay stable; a file that fails validation is reported
with its path and field, and nothing changes. `--check` only validates the files.
Uses DATABASE_URL (or the embedded PostgreSQL under ./var when it is not set).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from course_catalog.loader import DATA_DIR, CatalogueInvalid, LoadedCourse, load_catalogue
from infra.config import Settings
from infra.db import make_engine, make_session_factory
from infra.embedded import EmbeddedServers
from models.catalog.schemas import SyncReport
from models.catalog.service import sync_catalogue
from server.migrate import upgrade


async def sync(url: str, loaded: list[LoadedCourse]) -> SyncReport:
    engine = make_engine(url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            return await sync_catalogue(session, loaded)
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="validate the files only")
    parser.add_argument(
        "--root", type=Path, default=DATA_DIR, help="catalogue folder (default: the shipped one)"
    )
    args = parser.parse_args()
    try:
        courses = load_catalogue(args.root)
    except CatalogueInvalid as exc:
        print("catalogue files are invalid; nothing was changed:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(courses)} courses, all valid")
        return 0
    settings = Settings()
    embedded = None
    url = settings.database_url
    if not url:
        embedded = EmbeddedServers(settings.data_dir)
        url = embedded.start_postgres()
    try:
        upgrade(url)
        report = asyncio.run(sync(url, courses))
    finally:
        if embedded:
            embedded.stop()
    print(", ".join(f"{name} {count}" for name, count in report.model_dump().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
