"""Erase the private notes and circumstances of home visits older than VISIT_SENSITIVE_RETENTION_DAYS
(default 3 years). Run daily from cron or a scheduler:

    .venv/bin/python -m scripts.erase_visit_sensitive
Uses DATABASE_URL (or the embedded PostgreSQL under ./var when it is not set).
"""

from __future__ import annotations

import asyncio
import sys

from infra.clock import shanghai_now
from infra.config import Settings
from infra.db import make_engine, make_session_factory
from infra.embedded import EmbeddedServers
from models.home_visits.retention import erase_expired_sensitive


async def run(url: str, retention_days: int) -> int:
    engine = make_engine(url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            return await erase_expired_sensitive(session, shanghai_now(), retention_days)
    finally:
        await engine.dispose()


def main() -> int:
    settings = Settings()
    embedded = None
    url = settings.database_url
    if not url:
        embedded = EmbeddedServers(settings.data_dir)
        url = embedded.start_postgres()
    try:
        erased = asyncio.run(run(url, settings.visit_sensitive_retention_days))
    finally:
        if embedded:
            embedded.stop()
    print(
        f"erased the sensitive fields of {erased} visits older than "
        f"{settings.visit_sensitive_retention_days} days"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
