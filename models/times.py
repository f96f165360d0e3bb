"""Times in answers: RFC 3339 with the Asia/Shanghai offset (API.md: `2025-10-14T19:00:00+08:00`),
whatever zone they were read in (asyncpg reads timestamptz as UTC). A client that shows the date part of
a time then shows the date a parent in China lives it, not the one in Greenwich."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer

from infra.clock import SHANGHAI


def _in_shanghai(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)


ShanghaiTime = Annotated[datetime, PlainSerializer(_in_shanghai, return_type=datetime)]
