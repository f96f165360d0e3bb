"""Create a district (if new) and its first district-admin account.

    .venv/bin/python -m scripts.create_district_admin --district 渝中区 --username yz-admin
The password is read from the PARENT_SCHOOL_ADMIN_PASSWORD variable or asked for on the terminal.
Uses DATABASE_URL (or the embedded PostgreSQL under ./var when it is not set).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from infra.config import Settings
from infra.db import make_engine, make_session_factory
from infra.embedded import EmbeddedServers
from models.accounts.organisation import grant_district_admin
from server.migrate import upgrade

MIN_PASSWORD_LENGTH = 10


async def create(url: str, district: str, username: str, password: str) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            await grant_district_admin(session, district, username, password)
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--district", required=True, help="district name, e.g. 渝中区")
    parser.add_argument("--username", required=True)
    args = parser.parse_args()
    password = os.environ.get("PARENT_SCHOOL_ADMIN_PASSWORD") or getpass.getpass("password: ")
    if len(password) < MIN_PASSWORD_LENGTH:
        print(f"password must be at least {MIN_PASSWORD_LENGTH} characters", file=sys.stderr)
        return 2
    settings = Settings()
    embedded = None
    url = settings.database_url
    if not url:
        embedded = EmbeddedServers(settings.data_dir)
        url = embedded.start_postgres()
    try:
        upgrade(url)
        asyncio.run(create(url, args.district, args.username, password))
    except Exception as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded:
            embedded.stop()
    print(f"district admin {args.username!r} of {args.district} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
