"""Who the caller is: their roles and the schools, districts and children those roles reach.

Built from the database on a cache miss and kept in Redis (by the server layer) until the user's
bindings or grants change; every authorisation decision reads it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from pydantic import ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts.rules import Role
from models.accounts.schemas import Child, DistrictMembership, Me, SchoolMembership
from models.accounts.tables import (
    Classroom,
    District,
    Guardianship,
    RoleGrant,
    School,
    Student,
    Teacher,
    User,
)


class Principal(Me):
    # One parsed principal serves every request of its user in a process (see handlers.base): frozen.
    model_config = ConfigDict(frozen=True)

    def has_any(self, roles: frozenset[Role] | set[Role]) -> bool:
        return not roles.isdisjoint(self.roles)

    def school_roles(self, school_id: uuid.UUID) -> set[Role]:
        return {r for s in self.schools if s.id == school_id for r in s.roles}

    def district_roles(self, district_id: uuid.UUID) -> set[Role]:
        return {r for d in self.districts if d.id == district_id for r in d.roles}

    def teacher_id(self, school_id: uuid.UUID) -> uuid.UUID | None:
        return next((s.teacher_id for s in self.schools if s.id == school_id), None)

    def child_ids(self) -> set[uuid.UUID]:
        return {c.id for c in self.children}


async def load_principal(session: AsyncSession, user_id: uuid.UUID) -> Principal | None:
    user = await session.get(User, user_id)
    if user is None or user.disabled_at is not None:
        return None

    school_roles: dict[uuid.UUID, set[Role]] = defaultdict(set)
    schools: dict[uuid.UUID, School] = {}
    teacher_ids: dict[uuid.UUID, uuid.UUID] = {}
    district_roles: dict[uuid.UUID, set[Role]] = defaultdict(set)
    districts: dict[uuid.UUID, District] = {}

    for teacher, school in await session.execute(
        select(Teacher, School).join(School, School.id == Teacher.school_id).where(Teacher.user_id == user_id)
    ):
        school_roles[school.id].add(Role.teacher)
        schools[school.id] = school
        teacher_ids[school.id] = teacher.id

    for grant, district, school in await session.execute(
        select(RoleGrant, District, School)
        .join(District, District.id == RoleGrant.district_id)
        .outerjoin(School, School.id == RoleGrant.school_id)
        .where(RoleGrant.user_id == user_id)
    ):
        if school is not None:
            school_roles[school.id].add(Role(grant.role))
            schools[school.id] = school
        else:
            district_roles[district.id].add(Role(grant.role))
            districts[district.id] = district

    children: list[Child] = []
    for guardianship, student, classroom, school in await session.execute(
        select(Guardianship, Student, Classroom, School)
        .join(Student, Student.id == Guardianship.student_id)
        .join(Classroom, Classroom.id == Student.classroom_id)
        .join(School, School.id == Student.school_id)
        .where(Guardianship.parent_user_id == user_id)
        .order_by(Guardianship.created_at)
    ):
        school_roles[school.id].add(Role.parent)
        schools[school.id] = school
        children.append(
            Child(
                id=student.id,
                name=student.name,
                school_id=school.id,
                school_name=school.name,
                classroom_id=classroom.id,
                classroom_name=classroom.name,
                grade=classroom.grade,
                relation=guardianship.relation,
            )
        )

    all_roles = {r for rs in school_roles.values() for r in rs} | {
        r for rs in district_roles.values() for r in rs
    }
    return Principal(
        id=user.id,
        display_name=user.display_name,
        roles=sorted(all_roles),
        schools=[
            SchoolMembership(
                id=s.id,
                name=s.name,
                district_id=s.district_id,
                roles=sorted(school_roles[s.id]),
                teacher_id=teacher_ids.get(s.id),
            )
            for s in sorted(schools.values(), key=lambda s: s.name)
        ],
        districts=[
            DistrictMembership(id=d.id, name=d.name, roles=sorted(district_roles[d.id]))
            for d in sorted(districts.values(), key=lambda d: d.name)
        ],
        children=children,
    )
