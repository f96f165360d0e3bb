"""Pure rules: school years, requirements, and what a heartbeat may credit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from infra.clock import SHANGHAI

# Policy default (PRODUCT.md): 4 foundation sessions of 2 class hours per parent per school year.
DEFAULT_REQUIREMENTS: dict[str, Decimal] = {
    "foundation": Decimal(8),
    "general": Decimal(0),
    "custom": Decimal(0),
    "online": Decimal(0),
}
# District course-resource targets (Yuzhong 2025).
DEFAULT_CATALOGUE_TARGETS = {"foundation": 120, "general": 20, "custom": 50, "online": 2000}

# Heartbeats come every 15 s while playing. A gap longer than this means the player stopped (app
# closed, phone locked): the time in between is not watch time.
HEARTBEAT_MAX_GAP = 30.0
# Players run at up to 2x; anything faster between two beats is a seek, which earns nothing.
MAX_PLAYBACK_RATE = 2.0
# Network jitter allowed between the client's clock and ours, per beat.
JITTER_SECONDS = 2.0
# Watch time is tracked as covered buckets of the video, so re-watching a part earns nothing twice.
BUCKET_SECONDS = 5
COMPLETION_SHARE = 0.9


def school_year_of(moment: datetime | date) -> str:
    """'2025-2026' for any moment from 2025-09-01 00:00 to 2026-08-31 24:00, Asia/Shanghai."""
    day = moment.astimezone(SHANGHAI).date() if isinstance(moment, datetime) else moment
    start = day.year if day.month >= 9 else day.year - 1
    return f"{start}-{start + 1}"


def valid_school_year(value: str) -> bool:
    parts = value.split("-")
    return (
        len(parts) == 2
        and all(p.isdigit() and len(p) == 4 for p in parts)
        and int(parts[1]) == int(parts[0]) + 1
    )


def requirement_met(required: dict[str, Decimal], earned: dict[str, Decimal]) -> bool:
    if not any(hours > 0 for hours in required.values()):
        return False  # nothing required: nothing to certify
    return all(earned.get(tier, Decimal(0)) >= hours for tier, hours in required.items())


@dataclass(frozen=True)
class Beat:
    """What a heartbeat may credit: the buckets [first, last] (inclusive) of the video now watched."""

    first_bucket: int
    last_bucket: int

    @property
    def empty(self) -> bool:
        return self.last_bucket < self.first_bucket


NO_CREDIT = Beat(0, -1)


def judge_beat(
    *,
    previous_position: float | None,
    previous_at: float | None,
    position: float,
    at: float,
    video_seconds: int,
) -> Beat:
    """Decide which part of the video a heartbeat proves was watched.

    Credit the stretch between the previous and the current position only when it is plausible:
    forward, within the video, not faster than 2x the wall-clock time between the beats (so never more
    than the time that passed, once buckets are deduplicated), and not after a long gap.
    """
    if previous_position is None or previous_at is None:
        return NO_CREDIT
    elapsed = at - previous_at
    if elapsed <= 0 or elapsed > HEARTBEAT_MAX_GAP:
        return NO_CREDIT
    start = max(0.0, previous_position)
    end = min(float(video_seconds), position)
    advance = end - start
    if advance <= 0 or advance > elapsed * MAX_PLAYBACK_RATE + JITTER_SECONDS:
        return NO_CREDIT  # paused, rewound, or a seek ahead
    # Never more than the wall-clock time that passed: trim the stretch to what real time allows.
    end = min(end, start + elapsed + JITTER_SECONDS / 2)
    first = int(start // BUCKET_SECONDS)
    last = int(end // BUCKET_SECONDS) - 1  # only buckets fully passed
    if end >= video_seconds:
        # Played to the end: the last bucket, shorter than the others when the length is not a multiple
        # of BUCKET_SECONDS, is fully passed too (else a 42 s lesson could never reach 90%).
        last = -(-video_seconds // BUCKET_SECONDS) - 1
    return Beat(first, last)


def buckets_needed(video_seconds: int) -> int:
    """Covered buckets that make a lesson complete (90% of its length)."""
    total = -(-video_seconds // BUCKET_SECONDS)
    return max(1, int(total * COMPLETION_SHARE + 0.999999))
