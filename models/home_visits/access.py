"""Who reaches which visit, student and follow-up (least privilege). Outside it: 404, as if absent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from models.accounts.principal import Principal
from models.accounts.rules import Role


@dataclass(frozen=True)
class Standing:
    """What the caller is at one school."""

    school_admin: bool
    teacher_id: uuid.UUID | None
    parent_of: frozenset[uuid.UUID]

    @property
    def staff(self) -> bool:
        return self.school_admin or self.teacher_id is not None


def standing(principal: Principal, school_id: uuid.UUID) -> Standing:
    roles = principal.school_roles(school_id)
    return Standing(
        school_admin=Role.school_admin in roles,
        teacher_id=principal.teacher_id(school_id) if Role.teacher in roles else None,
        parent_of=frozenset(c.id for c in principal.children if c.school_id == school_id),
    )


def staff_school_ids(principal: Principal) -> list[uuid.UUID]:
    """Schools where the caller is a teacher or a school admin."""
    return [s.id for s in principal.schools if {Role.teacher, Role.school_admin} & set(s.roles)]
