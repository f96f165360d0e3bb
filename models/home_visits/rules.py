"""Pure rules of home visits and follow-ups: the fixed lists, due dates, the state machine, and who may
read the sensitive part of a visit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum


class Mode(StrEnum):
    home = "home"  # 入户
    school = "school"  # 到校
    phone = "phone"  # 电话
    video = "video"  # 视频


class Circumstance(StrEnum):
    """困境儿童 categories: a fixed list, so figures can be counted and nothing identifying is typed in."""

    left_behind = "left_behind"  # 留守儿童
    disability = "disability"  # 残疾儿童
    orphan = "orphan"  # 孤儿
    de_facto_unsupported = "de_facto_unsupported"  # 事实无人抚养儿童
    special_family = "special_family"  # 特殊家庭
    migrant = "migrant"  # 随迁子女


class Kind(StrEnum):
    feedback = "feedback"  # 家长反馈
    demand = "demand"  # 家长诉求
    suggestion = "suggestion"  # 家长建议


class Source(StrEnum):
    home_visit = "home_visit"
    mailbox = "mailbox"  # 校长信箱
    hotline = "hotline"
    meeting = "meeting"  # 家长会


class State(StrEnum):
    open = "open"
    in_progress = "in_progress"
    answered = "answered"
    closed = "closed"
    closed_without_reply = "closed_without_reply"  # answered, and the parent never acted on it


FOUR_TO_HOME = ("care", "policy", "opinions", "resources")

# Days to answer, per kind (a school setting later; these are the defaults): a demand waits on
# the family, feedback and suggestions can take a fortnight.
DUE_DAYS = {Kind.demand: 7, Kind.feedback: 14, Kind.suggestion: 14}
# An answered item the parent does not confirm or reopen closes itself after this long.
AUTO_CLOSE_DAYS = 14
# A visit cannot be logged ahead of time; phones' clocks drift a little.
FUTURE_SKEW = timedelta(minutes=5)

OPEN_STATES = frozenset({State.open, State.in_progress})
DONE_STATES = frozenset({State.closed, State.closed_without_reply})


def due_at(kind: Kind, raised_at: datetime) -> datetime:
    return raised_at + timedelta(days=DUE_DAYS[kind])


def overdue(state: str, due: datetime, now: datetime) -> bool:
    return state in OPEN_STATES and due < now


# (action, from state) → to state. Anything else is an illegal transition (409).
TRANSITIONS: dict[tuple[str, State], State] = {
    ("start", State.open): State.in_progress,
    ("answer", State.open): State.answered,
    ("answer", State.in_progress): State.answered,
    ("answer", State.answered): State.answered,  # a better answer before the parent acts
    ("confirm", State.answered): State.closed,
    ("reopen", State.answered): State.in_progress,
    ("assign", State.open): State.open,
    ("assign", State.in_progress): State.in_progress,
    ("escalate", State.open): State.in_progress,
    ("escalate", State.in_progress): State.in_progress,
    ("auto_close", State.answered): State.closed_without_reply,
}


def next_state(action: str, current: str) -> State | None:
    return TRANSITIONS.get((action, State(current)))


def may_read_sensitive(
    *,
    is_school_admin: bool,
    teacher_id: uuid.UUID | None,
    visiting_teacher_ids: Iterable[uuid.UUID],
    head_teacher_ids: Iterable[uuid.UUID | None],
) -> bool:
    """The visiting teachers, the head teacher of a visited child's classroom now, the school's admins;
    nobody else (not another teacher, not the district, not the parent)."""
    if is_school_admin:
        return True
    if teacher_id is None:
        return False
    return teacher_id in set(visiting_teacher_ids) or teacher_id in set(head_teacher_ids)


def suppressed(count: int, threshold: int = 5) -> int | None:
    """A count of children in difficult circumstances shown to a district: below 5 it could single out
    a family, so it is withheld (None)."""
    return count if count >= threshold else None
