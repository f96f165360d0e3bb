"""Authorisation: may this principal act on this school or district?

Wrong role anywhere → 403. The right role, but not on this organisation → 404, exactly as if the
organisation did not exist, so ids of other schools leak nothing.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import Forbidden, NotFound
from models.accounts.principal import Principal
from models.accounts.rules import Role
from models.accounts.tables import District, School


def require_role(principal: Principal, roles: frozenset[Role]) -> None:
    if not principal.has_any(roles):
        raise Forbidden()


def reaches_school(principal: Principal, school: School, roles: frozenset[Role]) -> bool:
    """Holds one of `roles` at the school, or in its district (what a page asks before offering a form)."""
    return bool(
        principal.school_roles(school.id) & roles or principal.district_roles(school.district_id) & roles
    )


async def school_in_scope(
    session: AsyncSession, principal: Principal, school_id: uuid.UUID, roles: frozenset[Role]
) -> School:
    require_role(principal, roles)
    school = await session.get(School, school_id)
    if school is not None and reaches_school(principal, school, roles):
        return school
    raise NotFound("学校不存在")


async def district_in_scope(
    session: AsyncSession, principal: Principal, district_id: uuid.UUID, roles: frozenset[Role]
) -> District:
    require_role(principal, roles)
    district = await session.get(District, district_id)
    if district is not None and principal.district_roles(district.id) & roles:
        return district
    raise NotFound("区县不存在")
