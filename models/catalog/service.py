"""Catalogue use cases: sync the shipped files, list and read what a caller may see, add and assign."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from course_catalog.loader import LoadedCourse
from course_catalog.schema import Tier
from infra.errors import NotFound, ValidationFailed
from models.accounts.auth import audit
from models.accounts.principal import Principal
from models.accounts.rules import STAFF_ROLES
from models.accounts.tables import District, School, Student
from models.base import Change, note_change
from models.catalog.lessons import LessonInfo
from models.catalog.schemas import AssignmentIn, AssignmentOut, CourseIn, CourseOut, CourseQuery, SyncReport
from models.catalog.tables import Course, CourseAssignment
from models.pagination import PageQuery, keyset_page

SYNCED_FIELDS = (
    "series",
    "tier",
    "title",
    "summary",
    "topic",
    "grade_bands",
    "class_hours",
    "video_seconds",
    "media_url",
)


def course_out(course: Course) -> CourseOut:
    scope = (
        "catalogue" if course.district_id is None else ("district" if course.school_id is None else "school")
    )
    return CourseOut.model_validate(
        {**{c: getattr(course, c) for c in CourseOut.model_fields if c != "scope"}, "scope": scope}
    )


# ---- sync from course_catalog/ ---------------------------------------------------------------------
async def sync_catalogue(session: AsyncSession, loaded: list[LoadedCourse]) -> SyncReport:
    """Upsert the shipped catalogue by key; courses dropped from the files are archived, never deleted
    (credits and sign-ups still point at them). Idempotent: a second run changes nothing."""
    existing = {
        c.key: c for c in (await session.execute(select(Course).where(Course.key.is_not(None)))).scalars()
    }
    created = updated = unchanged = 0
    for item in loaded:
        values: dict[str, Any] = {
            "series": item.series,
            "tier": item.tier.value,
            "title": item.course.title,
            "summary": item.course.summary,
            "topic": item.course.topic.value,
            "grade_bands": [b.value for b in item.course.grade_bands],
            "class_hours": item.course.class_hours,
            "video_seconds": item.course.video_seconds,
            "media_url": str(item.course.media_url) if item.course.media_url else None,
        }
        row = existing.pop(item.course.key, None)
        if row is None:
            session.add(Course(key=item.course.key, **values))
            created += 1
        elif any(getattr(row, f) != values[f] for f in SYNCED_FIELDS) or row.archived_at is not None:
            for name, value in values.items():
                setattr(row, name, value)
            row.archived_at = None
            updated += 1
        else:
            unchanged += 1
    archived = 0
    for row in existing.values():
        if row.archived_at is None:
            row.archived_at = func.now()
            archived += 1
    if created or updated or archived:
        note_change(session, Change.catalogue, "all")
    await session.flush()
    return SyncReport(created=created, updated=updated, unchanged=unchanged, archived=archived)


# ---- visibility -----------------------------------------------------------------------------------
def visible_to(principal: Principal) -> ColumnElement[bool]:
    """SQL condition: courses this principal may see."""
    school_ids = [s.id for s in principal.schools]
    district_ids = list({s.district_id for s in principal.schools} | {d.id for d in principal.districts})
    admin_districts = [d.id for d in principal.districts]
    staff_schools = [s.id for s in principal.schools if STAFF_ROLES & set(s.roles)]
    staff_districts = list(
        {s.district_id for s in principal.schools if STAFF_ROLES & set(s.roles)} | set(admin_districts)
    )
    child_ids = list(principal.child_ids())

    def scoped(schools: list[uuid.UUID], districts: list[uuid.UUID]) -> ColumnElement[bool]:
        return or_(
            Course.district_id.is_(None),
            and_(
                Course.district_id.in_(districts),
                or_(
                    Course.school_id.is_(None),
                    Course.school_id.in_(schools),
                    Course.district_id.in_(admin_districts),
                ),
            ),
        )

    assigned = (
        Course.id.in_(select(CourseAssignment.course_id).where(CourseAssignment.student_id.in_(child_ids)))
        if child_ids
        else false()
    )
    staff_sees_custom = scoped(staff_schools, staff_districts) if staff_districts else false()
    return and_(
        Course.archived_at.is_(None),
        scoped(school_ids, district_ids),
        or_(Course.tier != Tier.custom.value, staff_sees_custom, assigned),
    )


def may_watch(principal: Principal, lesson: LessonInfo) -> bool:
    """visible_to() for an online lesson (never custom), decided without the database."""
    if lesson.district_id is None:
        return True
    if lesson.district_id in {d.id for d in principal.districts}:
        return True
    schools = [s for s in principal.schools if s.district_id == lesson.district_id]
    return bool(schools) and (lesson.school_id is None or lesson.school_id in {s.id for s in schools})


def visibility_signature(principal: Principal) -> str:
    """What determines the visible set, for cache keys: equal signatures see equal catalogues."""
    parts = sorted(f"s{s.id}:{','.join(sorted(s.roles))}" for s in principal.schools)
    parts += sorted(f"d{d.id}:{','.join(sorted(d.roles))}" for d in principal.districts)
    parts += sorted(f"c{c}" for c in principal.child_ids())
    return "|".join(parts) or "none"


async def list_courses(
    session: AsyncSession, principal: Principal, query: CourseQuery
) -> tuple[list[Course], str | None]:
    stmt = select(Course).where(visible_to(principal))
    if query.tier:
        stmt = stmt.where(Course.tier == query.tier.value)
    if query.grade_band:
        stmt = stmt.where(Course.grade_bands.contains([query.grade_band.value]))
    if query.topic:
        stmt = stmt.where(Course.topic == query.topic.value)
    for word in (query.q or "").split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Course.title.ilike(pattern), Course.summary.ilike(pattern)))
    page = PageQuery(limit=query.limit, cursor=query.cursor)
    return await keyset_page(session, stmt, [Course.tier, Course.title, Course.id], page)


async def get_course(session: AsyncSession, principal: Principal, course_id: uuid.UUID) -> Course:
    course = (
        await session.execute(select(Course).where(Course.id == course_id, visible_to(principal)))
    ).scalar_one_or_none()
    if course is None:
        raise NotFound("课程不存在")
    return course


# ---- courses added by districts and schools -------------------------------------------------------
async def create_course(
    session: AsyncSession, principal: Principal, data: CourseIn, district: District, school: School | None
) -> Course:
    """A course owned by a district (all its schools) or by one school; the caller checked the scope."""
    course = Course(
        tier=data.tier.value,
        title=data.title,
        summary=data.summary,
        topic=data.topic.value,
        grade_bands=[b.value for b in data.grade_bands],
        class_hours=data.class_hours,
        video_seconds=data.video_seconds,
        media_url=str(data.media_url) if data.media_url else None,
        district_id=district.id,
        school_id=school.id if school else None,
        created_by=principal.id,
    )
    session.add(course)
    await session.flush()
    note_change(session, Change.catalogue, "all")
    audit(
        session,
        "course.created",
        actor=principal.id,
        school_id=course.school_id,
        target_type="course",
        target_id=course.id,
    )
    return course


async def assign_course(
    session: AsyncSession, principal: Principal, school: School, data: AssignmentIn
) -> AssignmentOut:
    """Offer a custom course the school can see to families of the school (named by their children)."""
    course = await get_course(session, principal, data.course_id)
    outside = (course.district_id not in (None, school.district_id)) or (
        course.school_id not in (None, school.id)
    )
    if outside:
        raise NotFound("课程不存在")
    if course.tier != Tier.custom.value:
        raise ValidationFailed("只有定制课需要指定家庭", code="not_custom_course")
    found = await session.execute(
        select(Student.id).where(Student.id.in_(data.student_ids), Student.school_id == school.id)
    )
    in_school = set(found.scalars())
    missing = [str(s) for s in data.student_ids if s not in in_school]
    if missing:
        raise ValidationFailed(
            "有学生不是本校学生",
            errors=[{"loc": ["body", "student_ids"], "msg": f"unknown: {', '.join(missing)}"}],
        )
    result = await session.execute(
        insert(CourseAssignment)
        .values(
            [
                {"id": uuid.uuid4(), "course_id": course.id, "student_id": s, "assigned_by": principal.id}
                for s in in_school
            ]
        )
        .on_conflict_do_nothing(index_elements=["course_id", "student_id"])
        .returning(CourseAssignment.id)
    )
    assigned = len(result.all())
    note_change(session, Change.catalogue, "all")
    audit(
        session,
        "course.assigned",
        actor=principal.id,
        school_id=school.id,
        target_type="course",
        target_id=course.id,
        count=assigned,
    )
    return AssignmentOut(course_id=course.id, assigned=assigned, already_assigned=len(in_school) - assigned)
