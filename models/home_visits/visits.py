"""Logging, reading and editing visits. The sensitive part is sealed with the field cipher before it is
written and opened only for the callers rules.may_read_sensitive names; the caller's handler audits
every read of it."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import Forbidden, PreconditionFailed, PreconditionRequired
from infra.security import FieldCipher
from models.accounts.principal import Principal
from models.accounts.tables import Classroom, Student, Teacher
from models.home_visits import rules
from models.home_visits.access import Standing, standing
from models.home_visits.errors import StudentNotFound, VisitAlreadySubmitted, VisitNotFound, invalid
from models.home_visits.rules import Circumstance, Kind, Source, State
from models.home_visits.schemas import (
    FourToHome,
    HomeVisitIn,
    HomeVisitOut,
    HomeVisitPatch,
    HomeVisitSensitiveOut,
    PersonRef,
    ThreeBackIn,
    ThreeBackOut,
)
from models.home_visits.tables import Followup, FollowupEvent, HomeVisit, HomeVisitStudent, HomeVisitTeacher
from models.learning.rules import school_year_of
from models.pagination import PageQuery, keyset_page

SENSITIVE_FIELDS = ("private_note", "circumstances")


def _context(visit_id: uuid.UUID, field: str) -> str:
    """Bound into each ciphertext: a sealed note cannot be moved to another visit or field."""
    return f"home_visit:{visit_id}:{field}"


def seal(
    cipher: FieldCipher, visit: HomeVisit, note: str | None, circumstances: list[Circumstance] | None
) -> None:
    if note is not None:
        visit.private_note_encrypted = (
            cipher.encrypt(note, _context(visit.id, "private_note")) if note else None
        )
    if circumstances is not None:
        plain = orjson.dumps(sorted({c.value for c in circumstances})).decode()
        visit.circumstances_encrypted = cipher.encrypt(plain, _context(visit.id, "circumstances"))


def etag(visit: HomeVisit) -> str:
    return f'"{visit.id.hex[:12]}-{visit.version}"'


async def _students(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[Student]:
    found = list((await session.execute(select(Student).where(Student.id.in_(ids)))).scalars())
    if len(found) != len(set(ids)):
        raise StudentNotFound()
    return found


async def _visiting_teachers(
    session: AsyncSession, school_id: uuid.UUID, me: Standing, given: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    wanted = list(dict.fromkeys(([me.teacher_id] if me.teacher_id else []) + list(given)))
    if not wanted:
        raise invalid("teacher_ids", "请填写家访老师", code="teacher_required")
    found = set(
        (
            await session.execute(
                select(Teacher.id).where(Teacher.id.in_(wanted), Teacher.school_id == school_id)
            )
        ).scalars()
    )
    if found != set(wanted):
        raise invalid("teacher_ids", "家访老师和同行老师须是本校老师", code="teacher_not_of_school")
    return wanted


def _check_time(visited_at: datetime, now: datetime) -> None:
    if visited_at > now + rules.FUTURE_SKEW:
        raise invalid("visited_at", "家访时间不能晚于现在", code="visited_in_future")


def _followups(
    visit: HomeVisit,
    items: Sequence[ThreeBackIn | dict[str, Any]],
    owner: uuid.UUID | None,
    student_id: uuid.UUID,
    actor: uuid.UUID,
    now: datetime,
) -> list[Followup]:
    made = []
    for n, item in enumerate(items):
        kind, text = (
            (item.kind, item.text) if isinstance(item, ThreeBackIn) else (Kind(item["kind"]), item["text"])
        )
        made.append(
            Followup(
                id=uuid.uuid4(),
                school_id=visit.school_id,
                school_year=visit.school_year,
                student_id=student_id,
                visit_id=visit.id,
                source=Source.home_visit,
                kind=kind,
                text=text,
                state=State.open,
                owner_teacher_id=owner,
                due_at=rules.due_at(kind, now),
                raised_by=actor,
                reopen_count=0,
                version=1,
                created_at=now + timedelta(microseconds=n),  # keeps the items in the order given
            )
        )
    return made


def _opened(followups: Sequence[Followup], actor: uuid.UUID, now: datetime) -> list[FollowupEvent]:
    return [
        FollowupEvent(
            followup_id=f.id, at=now, actor_user_id=actor, action="raise", state=State.open, detail={}
        )
        for f in followups
    ]


async def create_visit(
    session: AsyncSession, principal: Principal, data: HomeVisitIn, cipher: FieldCipher, now: datetime
) -> HomeVisit:
    students = await _students(session, data.student_ids)
    school_id = students[0].school_id
    me = standing(principal, school_id)
    if not me.staff or any(s.school_id != school_id for s in students):
        raise StudentNotFound()
    teacher_ids = await _visiting_teachers(session, school_id, me, data.teacher_ids)
    _check_time(data.visited_at, now)
    visit = HomeVisit(
        id=uuid.uuid4(),
        school_id=school_id,
        school_year=school_year_of(data.visited_at),
        status=data.status,
        visited_at=data.visited_at,
        duration_minutes=data.duration_minutes,
        mode=data.mode,
        four_to_home=data.four_to_home.model_dump(),
        draft_three_back=[i.model_dump() for i in data.three_back] if data.status == "draft" else [],
        created_by=principal.id,
        version=1,
        created_at=now,
        updated_at=now,
    )
    seal(cipher, visit, data.private_note, data.circumstances)
    session.add(visit)
    await session.flush()
    session.add_all(
        HomeVisitStudent(visit_id=visit.id, student_id=s) for s in dict.fromkeys(data.student_ids)
    )
    session.add_all(HomeVisitTeacher(visit_id=visit.id, teacher_id=t) for t in teacher_ids)
    if data.status == "submitted":
        followups = _followups(visit, data.three_back, teacher_ids[0], data.student_ids[0], principal.id, now)
        session.add_all(followups)
        await session.flush()
        session.add_all(_opened(followups, principal.id, now))
    await session.flush()
    return visit


@dataclass
class Seen:
    """A visit as one caller may see it."""

    visit: HomeVisit
    student_ids: list[uuid.UUID]
    teacher_ids: list[uuid.UUID]
    sensitive: bool
    may_edit: bool


async def _members(
    session: AsyncSession, visit_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, list[uuid.UUID]], dict[uuid.UUID, list[uuid.UUID]]]:
    students: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    teachers: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for vid, sid in await session.execute(
        select(HomeVisitStudent.visit_id, HomeVisitStudent.student_id).where(
            HomeVisitStudent.visit_id.in_(visit_ids)
        )
    ):
        students[vid].append(sid)
    for vid, tid in await session.execute(
        select(HomeVisitTeacher.visit_id, HomeVisitTeacher.teacher_id).where(
            HomeVisitTeacher.visit_id.in_(visit_ids)
        )
    ):
        teachers[vid].append(tid)
    return students, teachers


async def _head_teachers(
    session: AsyncSession, student_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    rows = await session.execute(
        select(Student.id, Classroom.head_teacher_id)
        .join(Classroom, Classroom.id == Student.classroom_id)
        .where(Student.id.in_(student_ids))
    )
    return {sid: head for sid, head in rows}


async def visible(session: AsyncSession, principal: Principal, visits: Sequence[HomeVisit]) -> list[Seen]:
    """The visits the caller may see, with what they may see of each. Staff of the visit's school see it
    (a draft: only its visitors and the school's admins); a parent sees a submitted visit of their own
    child, and of the children visited only their own."""
    students, teachers = await _members(session, [v.id for v in visits])
    heads = await _head_teachers(session, [s for v in visits for s in students[v.id]])
    seen = []
    for v in visits:
        me = standing(principal, v.school_id)
        visitor = me.teacher_id is not None and me.teacher_id in teachers[v.id]
        own_children = [s for s in students[v.id] if s in me.parent_of]
        if me.staff and (v.status == "submitted" or visitor or me.school_admin):
            sensitive = rules.may_read_sensitive(
                is_school_admin=me.school_admin,
                teacher_id=me.teacher_id,
                visiting_teacher_ids=teachers[v.id],
                head_teacher_ids=[heads.get(s) for s in students[v.id]],
            )
            seen.append(Seen(v, students[v.id], teachers[v.id], sensitive, visitor or me.school_admin))
        elif own_children and v.status == "submitted":
            seen.append(Seen(v, own_children, teachers[v.id], False, False))
    return seen


async def get_visit(
    session: AsyncSession, principal: Principal, visit_id: uuid.UUID, *, lock: bool = False
) -> Seen:
    stmt = select(HomeVisit).where(HomeVisit.id == visit_id)
    if lock:
        stmt = stmt.with_for_update()
    visit = (await session.execute(stmt)).scalar_one_or_none()
    seen = await visible(session, principal, [visit]) if visit is not None else []
    if not seen:
        raise VisitNotFound()
    return seen[0]


async def describe(session: AsyncSession, cipher: FieldCipher, seen: Sequence[Seen]) -> list[HomeVisitOut]:
    """Answers for visits already filtered by visible(); the sensitive part only where `sensitive`."""
    student_ids = {s for x in seen for s in x.student_ids}
    teacher_ids = {t for x in seen for t in x.teacher_ids}
    names = {
        sid: name
        for sid, name in await session.execute(
            select(Student.id, Student.name).where(Student.id.in_(student_ids))
        )
    }
    tnames = {
        tid: name
        for tid, name in await session.execute(
            select(Teacher.id, Teacher.name).where(Teacher.id.in_(teacher_ids))
        )
    }
    items: dict[uuid.UUID, list[Followup]] = defaultdict(list)
    for f in (
        await session.execute(
            select(Followup)
            .where(Followup.visit_id.in_([x.visit.id for x in seen]))
            .order_by(Followup.created_at, Followup.id)
        )
    ).scalars():
        items[f.visit_id].append(f)  # type: ignore[index]
    out: list[HomeVisitOut] = []
    for x in seen:
        v = x.visit
        three_back = (
            [
                ThreeBackOut(kind=f.kind, text=f.text, followup_id=f.id, state=f.state, answer=f.answer)
                for f in items[v.id]
            ]
            if v.status == "submitted"
            else [ThreeBackOut(kind=i["kind"], text=i["text"]) for i in v.draft_three_back]
        )
        common: dict[str, Any] = {
            "id": v.id,
            "school_id": v.school_id,
            "school_year": v.school_year,
            "status": v.status,
            "students": [PersonRef(id=s, name=names.get(s, "")) for s in x.student_ids],
            "teachers": [PersonRef(id=t, name=tnames.get(t, "")) for t in x.teacher_ids],
            "visited_at": v.visited_at,
            "duration_minutes": v.duration_minutes,
            "mode": v.mode,
            "four_to_home": FourToHome.model_validate(v.four_to_home),
            "three_back": three_back,
            "created_at": v.created_at,
            "updated_at": v.updated_at,
        }
        if x.sensitive:
            note = (
                cipher.decrypt(v.private_note_encrypted, _context(v.id, "private_note"))
                if v.private_note_encrypted
                else None
            )
            circumstances = (
                orjson.loads(cipher.decrypt(v.circumstances_encrypted, _context(v.id, "circumstances")))
                if v.circumstances_encrypted
                else []
            )
            out.append(HomeVisitSensitiveOut(**common, private_note=note, circumstances=circumstances))
        else:
            out.append(HomeVisitOut(**common))
    return out


async def update_visit(
    session: AsyncSession,
    principal: Principal,
    visit_id: uuid.UUID,
    if_match: str | None,
    patch: HomeVisitPatch,
    cipher: FieldCipher,
    now: datetime,
) -> Seen:
    """Apply a PATCH under the ETag the editor last read: the row is locked, so of two editors holding
    the same ETag exactly one wins and the other gets 412."""
    seen = await get_visit(session, principal, visit_id, lock=True)
    if not seen.may_edit:
        raise Forbidden("只有家访老师和学校管理员可以修改家访记录", code="not_a_visitor")
    visit = seen.visit
    if not if_match:
        raise PreconditionRequired()
    if etag(visit) not in {t.strip() for t in if_match.split(",")}:
        raise PreconditionFailed()
    given = patch.model_fields_set
    if visit.status == "submitted" and (patch.status == "draft" or "three_back" in given):
        raise VisitAlreadySubmitted()
    if patch.teacher_ids is not None:
        me = standing(principal, visit.school_id)
        wanted = await _visiting_teachers(
            session, visit.school_id, Standing(me.school_admin, None, me.parent_of), patch.teacher_ids
        )
        seen.teacher_ids = wanted
        await session.execute(delete(HomeVisitTeacher).where(HomeVisitTeacher.visit_id == visit.id))
        session.add_all(HomeVisitTeacher(visit_id=visit.id, teacher_id=t) for t in wanted)
    if patch.visited_at is not None:
        _check_time(patch.visited_at, now)
        visit.visited_at = patch.visited_at
        visit.school_year = school_year_of(patch.visited_at)
    for name in ("duration_minutes", "mode"):
        if name in given:
            if getattr(patch, name) is None and name == "mode":
                raise invalid("mode", "家访方式不能为空")
            setattr(visit, name, getattr(patch, name))
    if patch.four_to_home is not None:
        visit.four_to_home = patch.four_to_home.model_dump()
    if "three_back" in given:
        visit.draft_three_back = [i.model_dump() for i in patch.three_back or []]
    if "private_note" in given:
        if patch.private_note:
            seal(cipher, visit, patch.private_note, None)
        else:
            visit.private_note_encrypted = None
    if "circumstances" in given:
        seal(cipher, visit, None, patch.circumstances or [])
    if patch.status == "submitted" and visit.status == "draft":
        visit.status = "submitted"
        followups = _followups(
            visit, visit.draft_three_back, seen.teacher_ids[0], seen.student_ids[0], principal.id, now
        )
        visit.draft_three_back = []
        session.add_all(followups)
        await session.flush()
        session.add_all(_opened(followups, principal.id, now))
    visit.version += 1
    visit.updated_at = now
    await session.flush()
    return seen


async def student_visits(
    session: AsyncSession, principal: Principal, student_id: uuid.UUID, page: PageQuery
) -> tuple[list[Seen], str | None]:
    """A child's visits, oldest first, for the staff of the child's school and the child's parents."""
    student = await session.get(Student, student_id)
    me = standing(principal, student.school_id) if student is not None else None
    if student is None or me is None or not (me.staff or student.id in me.parent_of):
        raise StudentNotFound()
    stmt = (
        select(HomeVisit)
        .join(HomeVisitStudent, HomeVisitStudent.visit_id == HomeVisit.id)
        .where(HomeVisitStudent.student_id == student_id)
    )
    if not me.staff:
        stmt = stmt.where(HomeVisit.status == "submitted")
    rows, cursor = await keyset_page(session, stmt, [HomeVisit.visited_at, HomeVisit.id], page)
    return await visible(session, principal, rows), cursor
