"""Pure rules of the learning area: school years, requirements, heartbeat judgement."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from models.learning.rules import (
    BUCKET_SECONDS,
    buckets_needed,
    judge_beat,
    requirement_met,
    school_year_of,
    valid_school_year,
)

SH = ZoneInfo("Asia/Shanghai")


def test_school_year_rolls_over_on_september_first_in_shanghai() -> None:
    assert school_year_of(datetime(2026, 8, 31, 23, 59, tzinfo=SH)) == "2025-2026"
    assert school_year_of(datetime(2026, 9, 1, 0, 0, tzinfo=SH)) == "2026-2027"
    # 2026-08-31 16:30 UTC is already Sept 1 in Shanghai
    assert school_year_of(datetime(2026, 8, 31, 16, 30, tzinfo=ZoneInfo("UTC"))) == "2026-2027"
    assert school_year_of(date(2026, 1, 15)) == "2025-2026"


def test_valid_school_year() -> None:
    assert valid_school_year("2025-2026")
    assert not valid_school_year("2025-2027")
    assert not valid_school_year("2025")


def test_requirement_met_needs_every_tier() -> None:
    required = {"foundation": Decimal(8), "online": Decimal(2), "general": Decimal(0)}
    assert not requirement_met(required, {"foundation": Decimal(8)})
    assert requirement_met(required, {"foundation": Decimal(8), "online": Decimal("2.0")})
    assert not requirement_met({"foundation": Decimal(0)}, {"foundation": Decimal(10)})


def beat(prev_pos: float | None, prev_at: float | None, pos: float, at: float, length: int = 600) -> int:
    judged = judge_beat(
        previous_position=prev_pos, previous_at=prev_at, position=pos, at=at, video_seconds=length
    )
    return 0 if judged.empty else (judged.last_bucket - judged.first_bucket + 1) * BUCKET_SECONDS


def test_first_beat_credits_nothing() -> None:
    assert beat(None, None, 15, 100) == 0


def test_normal_playback_credits_the_interval() -> None:
    assert beat(0, 100, 15, 115) == 15
    assert beat(15, 115, 30, 130) == 15


def test_seeking_ahead_credits_nothing() -> None:
    assert beat(15, 115, 300, 130) == 0


def test_never_more_than_wall_clock() -> None:
    # 2x playback moves 30 s of video in 15 s of wall clock: at most 15 s are credited
    assert beat(0, 100, 30, 115) <= 16


def test_rewind_pause_and_replay_credit_nothing() -> None:
    assert beat(300, 100, 100, 115) == 0  # rewound
    assert beat(100, 100, 100, 115) == 0  # paused
    assert beat(100, 100, 115, 100) == 0  # the same beat replayed at the same instant


def test_a_long_gap_is_not_watch_time() -> None:
    assert beat(0, 100, 15, 100 + 600) == 0


def test_credit_stops_at_the_end_of_the_video() -> None:
    assert beat(590, 100, 605, 115, length=600) == 10


def test_completion_threshold_is_ninety_percent() -> None:
    assert buckets_needed(600) == 108  # 120 buckets of 5 s
    assert buckets_needed(7) == 2
