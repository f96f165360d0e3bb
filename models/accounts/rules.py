"""Pure rules of the accounts area: roles, grades, binding-code validity."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    parent = "parent"
    teacher = "teacher"
    school_admin = "school_admin"
    district_admin = "district_admin"
    evaluator = "evaluator"


# Who may call what: the role sets handlers authorise against (scope is checked separately).
STAFF_ROLES = frozenset({Role.teacher, Role.school_admin, Role.district_admin})
ADMIN_ROLES = frozenset({Role.school_admin, Role.district_admin})
PARENTS = frozenset({Role.parent})
DISTRICT_ADMINS = frozenset({Role.district_admin})
DISTRICT_READERS = frozenset({Role.district_admin, Role.evaluator})
# A school's own people, without the district (home visits and follow-ups are the school's work).
SCHOOL_STAFF = frozenset({Role.teacher, Role.school_admin})
SCHOOL_ADMINS = frozenset({Role.school_admin})
TEACHERS = frozenset({Role.teacher})

GUARDIAN_RELATIONS = ("mother", "father", "grandparent", "other")

# Grade numbers as stored on a classroom; bands are what courses are written for.
GRADE_BANDS = {
    "kindergarten": range(0, 1),
    "primary_lower": range(1, 3),
    "primary_middle": range(3, 5),
    "primary_upper": range(5, 7),
    "junior": range(7, 10),
    "senior": range(10, 13),
}


def grade_band(grade: int) -> str:
    for band, grades in GRADE_BANDS.items():
        if grade in grades:
            return band
    raise ValueError(f"grade {grade} outside 0–12")


def binding_code_usable(expires_at: datetime, redeemed_at: datetime | None, now: datetime) -> bool:
    return redeemed_at is None and now < expires_at


def lockout_seconds(lockouts: int, base_seconds: int, max_seconds: int) -> int:
    """The `lockouts`-th lockout in a row lasts twice the one before, from `base_seconds` up to
    `max_seconds`: a typo costs a minute, a guessing script ever longer waits."""
    return min(base_seconds << max(0, lockouts - 1), max_seconds)
