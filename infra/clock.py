"""The one clock: everything that reads the time (tokens, rate limits, sign-up windows, reminders) reads a
`Clock`, so tests move time instead of sleeping and a frozen clock freezes every rule at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

Clock = Callable[[], datetime]


def shanghai_now() -> datetime:
    return datetime.now(SHANGHAI)
