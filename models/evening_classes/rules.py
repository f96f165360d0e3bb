"""Pure rules of evening classes: terms, windows, rotating check-in tokens, how a time reads in a message."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from datetime import datetime, timedelta

from infra.clock import SHANGHAI

# Policy default (PRODUCT.md): every school holds at least 5 evening classes per term.
DEFAULT_CLASSES_PER_TERM = 5
# The QR code on the teacher's screen changes every 30 s; a code stays good for one more period so a
# parent scanning just as it changes is not turned away (so a photo of it is useless a minute later).
CHECKIN_PERIOD_SECONDS = 30
CHECKIN_OPENS_BEFORE = timedelta(minutes=30)
CHECKIN_CLOSES_AFTER = timedelta(minutes=30)
TERM_PATTERN = re.compile(r"^(\d{4})-(\d{4})-([12])$")


def term_of(moment: datetime) -> str:
    """'2025-2026-1' for autumn (Sept–Jan), '2025-2026-2' for spring (Feb–Aug), Asia/Shanghai."""
    local = moment.astimezone(SHANGHAI)
    if local.month >= 9:
        return f"{local.year}-{local.year + 1}-1"
    if local.month == 1:
        return f"{local.year - 1}-{local.year}-1"
    return f"{local.year - 1}-{local.year}-2"


def valid_term(term: str) -> bool:
    match = TERM_PATTERN.match(term)
    return match is not None and int(match.group(2)) == int(match.group(1)) + 1


@functools.lru_cache(maxsize=256)
def message_time(moment: datetime) -> str:
    """A time as messages and refusals show it to a parent: Asia/Shanghai, month, day and minute."""
    return moment.astimezone(SHANGHAI).strftime("%m月%d日 %H:%M")


def checkin_open(starts_at: datetime, ends_at: datetime, now: datetime) -> bool:
    return starts_at - CHECKIN_OPENS_BEFORE <= now <= ends_at + CHECKIN_CLOSES_AFTER


def _period(now: datetime) -> int:
    return int(now.timestamp()) // CHECKIN_PERIOD_SECONDS


def _mac(key: bytes, class_id: str, period: int) -> bytes:
    return hmac.new(key, f"checkin:{class_id}:{period}".encode(), hashlib.sha256).digest()[:12]


def checkin_token(key: bytes, class_id: str, now: datetime) -> tuple[str, datetime]:
    """The token for the current period, and when the screen should show the next one."""
    period = _period(now)
    raw = period.to_bytes(8, "big") + _mac(key, class_id, period)
    next_at = datetime.fromtimestamp((period + 1) * CHECKIN_PERIOD_SECONDS, tz=now.tzinfo)
    return base64.urlsafe_b64encode(raw).decode().rstrip("="), next_at


def check_token(key: bytes, class_id: str, token: str, now: datetime) -> str:
    """'ok', 'expired' (genuine but old) or 'invalid' (forged, garbled or for another class)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return "invalid"
    if len(raw) != 20:
        return "invalid"
    period = int.from_bytes(raw[:8], "big")
    if not hmac.compare_digest(raw[8:], _mac(key, class_id, period)):
        return "invalid"
    current = _period(now)
    return "ok" if current - 1 <= period <= current else "expired"
