"""Pure rules of evening classes: which term a class counts for, the check-in window, rotating tokens."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from infra.clock import SHANGHAI
from models.evening_classes.rules import (
    CHECKIN_PERIOD_SECONDS,
    check_token,
    checkin_open,
    checkin_token,
    term_of,
    valid_term,
)

KEY = b"k" * 32
CLASS = "5a4d6f0e-3c1b-4f55-9a7e-0c7a2b1d9e11"
OTHER_CLASS = "0b0e3a53-9f5e-4a77-8a44-2d7b7e6c0f22"
# A period boundary: 1_760_000_010 is a multiple of 30.
BOUNDARY = datetime.fromtimestamp(1_760_000_010, tz=SHANGHAI)


@pytest.mark.parametrize(
    ("moment", "term"),
    [
        (datetime(2025, 9, 1, 0, 0, tzinfo=SHANGHAI), "2025-2026-1"),
        (datetime(2025, 12, 31, 23, 59, tzinfo=SHANGHAI), "2025-2026-1"),
        (datetime(2026, 1, 31, 23, 59, tzinfo=SHANGHAI), "2025-2026-1"),
        (datetime(2026, 2, 1, 0, 0, tzinfo=SHANGHAI), "2025-2026-2"),
        (datetime(2026, 8, 31, 23, 59, tzinfo=SHANGHAI), "2025-2026-2"),
        # 31 Aug 16:30 UTC is already 1 Sept in Shanghai: the new school year's autumn term.
        (datetime(2025, 8, 31, 16, 30, tzinfo=UTC), "2025-2026-1"),
        (datetime(2026, 1, 31, 16, 30, tzinfo=UTC), "2025-2026-2"),
    ],
)
def test_the_term_a_class_counts_for(moment: datetime, term: str) -> None:
    assert term_of(moment) == term
    assert valid_term(term)


@pytest.mark.parametrize(
    "term",
    ["2025-2026-3", "2025-2026-0", "2025-2027-1", "2026-2025-1", "2025-2026", "2025-26-1", " 2025-2026-1"],
)
def test_malformed_terms(term: str) -> None:
    assert not valid_term(term)


def test_check_in_opens_half_an_hour_before_and_closes_half_an_hour_after() -> None:
    starts = datetime(2025, 10, 16, 19, 0, tzinfo=SHANGHAI)
    ends = starts + timedelta(minutes=90)
    assert not checkin_open(starts, ends, starts - timedelta(minutes=30, seconds=1))
    assert checkin_open(starts, ends, starts - timedelta(minutes=30))
    assert checkin_open(starts, ends, starts + timedelta(minutes=45))
    assert checkin_open(starts, ends, ends + timedelta(minutes=30))
    assert not checkin_open(starts, ends, ends + timedelta(minutes=30, seconds=1))


def test_the_token_rotates_every_period_and_says_when() -> None:
    token, next_at = checkin_token(KEY, CLASS, BOUNDARY)
    assert next_at == BOUNDARY + timedelta(seconds=CHECKIN_PERIOD_SECONDS)
    assert checkin_token(KEY, CLASS, BOUNDARY + timedelta(seconds=29.9))[0] == token
    later, later_next = checkin_token(KEY, CLASS, BOUNDARY + timedelta(seconds=30))
    assert later != token and later_next == next_at + timedelta(seconds=30)
    assert checkin_token(KEY, OTHER_CLASS, BOUNDARY)[0] != token
    # Short enough for a QR code, URL-safe, no padding.
    assert len(token) <= 32 and set(token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_a_token_is_good_for_its_period_and_the_next_only() -> None:
    token, _ = checkin_token(KEY, CLASS, BOUNDARY)
    assert check_token(KEY, CLASS, token, BOUNDARY) == "ok"
    assert check_token(KEY, CLASS, token, BOUNDARY + timedelta(seconds=59)) == "ok"
    assert check_token(KEY, CLASS, token, BOUNDARY + timedelta(seconds=60)) == "expired"
    assert check_token(KEY, CLASS, token, BOUNDARY + timedelta(hours=3)) == "expired"


def test_forged_garbled_and_foreign_tokens_are_invalid() -> None:
    token, _ = checkin_token(KEY, CLASS, BOUNDARY)
    assert check_token(KEY, OTHER_CLASS, token, BOUNDARY) == "invalid"
    assert check_token(b"another key", CLASS, token, BOUNDARY) == "invalid"
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1  # one bit of the signature
    flipped = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert check_token(KEY, CLASS, flipped, BOUNDARY) == "invalid"
    raw[-1] ^= 1
    raw[7] ^= 1  # the period, to make an old token look current
    moved = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert check_token(KEY, CLASS, moved, BOUNDARY) == "invalid"
    for garbage in ("", "!!!!", "签到", token[:-2], token + "AAAA", "A" * 64):
        assert check_token(KEY, CLASS, garbage, BOUNDARY) == "invalid", garbage
