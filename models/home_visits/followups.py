"""The closed loop (闭环跟进): every 三带回 item, letter or call is a follow-up with an owner, a due date
and a history, moved open → in_progress → answered → closed by staff and the parent; an answer the
parent leaves alone closes itself after rules.AUTO_CLOSE_DAYS (closed_without_reply)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import Forbidden, ValidationFailed
from models.accounts.principal import Principal
from models.accounts.rules import Role
from models.accounts.tables import Classroom, Guardianship, School, Student, Teacher
from models.home_visits import rules
from models.home_visits.access import standing
from models.home_visits.errors import FollowupNotFound, IllegalTransition, StudentNotFound, invalid
from models.home_visits.rules import State
from models.home_visits.schemas import FollowupOut, FollowupQuery, FollowupStep, RaiseIn, StaffRaiseIn
from models.home_visits.tables import Followup, FollowupEvent
from models.learning.rules import school_year_of
from models.notifications import service as notifications
from models.notifications.allowance import Templates


async def close_unconfirmed(session: AsyncSession, now: datetime, school_id: uuid.UUID | None = None) -> int:
    """Answers the parent neither confirmed nor reopened within AUTO_CLOSE_DAYS close themselves."""
    stmt = (
        update(Followup)
        .where(
            Followup.state == State.answered,
            Followup.answered_at < now - timedelta(days=rules.AUTO_CLOSE_DAYS),
        )
        .values(state=State.closed_without_reply, closed_at=now, version=Followup.version + 1)
        .returning(Followup.id)
    )
    if school_id is not None:
        stmt = stmt.where(Followup.school_id == school_id)
    closed = list((await session.execute(stmt)).scalars())
    session.add_all(
        FollowupEvent(
            followup_id=f, at=now, actor_user_id=None, action="auto_close", state=State.closed_without_reply
        )
        for f in closed
    )
    return len(closed)


def _staff_filter(principal: Principal, school: School) -> Any:
    """Which of a school's follow-ups the caller works on: an admin all, a teacher those they own, a
    district admin the escalated ones."""
    roles = principal.school_roles(school.id)
    if Role.school_admin in roles:
        return True
    clauses = []
    teacher_id = principal.teacher_id(school.id)
    if Role.teacher in roles and teacher_id is not None:
        clauses.append(Followup.owner_teacher_id == teacher_id)
    if Role.district_admin in principal.district_roles(school.district_id):
        clauses.append(Followup.escalated_at.is_not(None))
    return or_(*clauses) if clauses else False


async def _out(
    session: AsyncSession, rows: list[Followup], now: datetime, history: bool = False
) -> list[FollowupOut]:
    names = {
        sid: name
        for sid, name in await session.execute(
            select(Student.id, Student.name).where(Student.id.in_({f.student_id for f in rows}))
        )
    }
    steps: dict[uuid.UUID, list[FollowupStep]] = {}
    if history and rows:
        for e in (
            await session.execute(
                select(FollowupEvent)
                .where(FollowupEvent.followup_id.in_([f.id for f in rows]))
                .order_by(FollowupEvent.at, FollowupEvent.id)
            )
        ).scalars():
            steps.setdefault(e.followup_id, []).append(
                FollowupStep(at=e.at, action=e.action, state=State(e.state), detail=e.detail)
            )
    return [
        FollowupOut(
            id=f.id,
            school_id=f.school_id,
            student_id=f.student_id,
            student_name=names.get(f.student_id, ""),
            visit_id=f.visit_id,
            source=f.source,
            kind=f.kind,
            text=f.text,
            state=State(f.state),
            owner_teacher_id=f.owner_teacher_id,
            escalated=f.escalated_at is not None,
            due_at=f.due_at,
            overdue=rules.overdue(f.state, f.due_at, now),
            answer=f.answer,
            answered_at=f.answered_at,
            closed_at=f.closed_at,
            rating=f.rating,
            reopen_count=f.reopen_count,
            created_at=f.created_at,
            history=steps.get(f.id, []) if history else None,
        )
        for f in rows
    ]


async def _page(
    session: AsyncSession, stmt: Select[Any], limit: int, cursor: str | None, now: datetime
) -> tuple[list[FollowupOut], str | None]:
    try:
        offset = int(cursor or 0)
    except ValueError as exc:
        raise ValidationFailed(
            "cursor 无效", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from exc
    rows = list((await session.execute(stmt.offset(max(0, offset)).limit(limit + 1))).scalars())
    more = len(rows) > limit
    return await _out(session, rows[:limit], now), (str(offset + limit) if more else None)


async def school_queue(
    session: AsyncSession, principal: Principal, school: School, query: FollowupQuery, now: datetime
) -> tuple[list[FollowupOut], str | None]:
    """The school's queue: overdue first (soonest due), then the rest by due date."""
    await close_unconfirmed(session, now, school.id)
    is_overdue = Followup.state.in_(list(rules.OPEN_STATES)) & (Followup.due_at < now)
    stmt = select(Followup).where(Followup.school_id == school.id, _staff_filter(principal, school))
    if query.state is not None:
        stmt = stmt.where(Followup.state == query.state)
    if query.overdue is not None:
        stmt = stmt.where(is_overdue if query.overdue else ~is_overdue)
    if query.owner is not None:
        stmt = stmt.where(Followup.owner_teacher_id == query.owner)
    stmt = stmt.order_by(case((is_overdue, 0), else_=1), Followup.due_at, Followup.id)
    return await _page(session, stmt, query.limit, query.cursor, now)


async def my_followups(
    session: AsyncSession, principal: Principal, limit: int, cursor: str | None, now: datetime
) -> tuple[list[FollowupOut], str | None]:
    """What was raised about the caller's own children, with the answers."""
    await close_unconfirmed(session, now)
    stmt = (
        select(Followup)
        .where(Followup.student_id.in_(principal.child_ids()))
        .order_by(Followup.created_at.desc(), Followup.id)
    )
    return await _page(session, stmt, limit, cursor, now)


async def _head_teacher(session: AsyncSession, student: Student) -> uuid.UUID | None:
    return await session.scalar(select(Classroom.head_teacher_id).where(Classroom.id == student.classroom_id))


async def _raise(
    session: AsyncSession,
    principal: Principal,
    student: Student,
    source: str,
    kind: str,
    text: str,
    now: datetime,
) -> Followup:
    f = Followup(
        id=uuid.uuid4(),
        school_id=student.school_id,
        school_year=school_year_of(now),
        student_id=student.id,
        source=source,
        kind=kind,
        text=text,
        state=State.open,
        owner_teacher_id=await _head_teacher(session, student),
        due_at=rules.due_at(rules.Kind(kind), now),
        raised_by=principal.id,
        reopen_count=0,
        version=1,
        created_at=now,
    )
    session.add(f)
    await session.flush()
    session.add(
        FollowupEvent(
            followup_id=f.id,
            at=now,
            actor_user_id=principal.id,
            action="raise",
            state=State.open,
            detail={"source": source},
        )
    )
    await session.flush()
    return f


async def parent_raises(
    session: AsyncSession, principal: Principal, data: RaiseIn, now: datetime
) -> FollowupOut:
    """The principal's mailbox (校长信箱): a parent writes about their own child; the head teacher owns it."""
    student = await session.get(Student, data.student_id)
    if student is None or student.id not in principal.child_ids():
        raise StudentNotFound()
    [out] = await _out(
        session, [await _raise(session, principal, student, "mailbox", data.kind, data.text, now)], now, True
    )
    return out


async def staff_raises(
    session: AsyncSession, principal: Principal, school: School, data: StaffRaiseIn, now: datetime
) -> FollowupOut:
    """A hotline call or a parent-meeting item, logged by staff of the child's school."""
    student = await session.get(Student, data.student_id)
    if student is None or student.school_id != school.id:
        raise StudentNotFound()
    f = await _raise(session, principal, student, data.source, data.kind, data.text, now)
    [out] = await _out(session, [f], now, True)
    return out


async def _followup(session: AsyncSession, followup_id: uuid.UUID) -> tuple[Followup, School]:
    row = (
        await session.execute(
            select(Followup, School)
            .join(School, School.id == Followup.school_id)
            .where(Followup.id == followup_id)
            .with_for_update(of=Followup)
        )
    ).first()
    if row is None:
        raise FollowupNotFound()
    return row[0], row[1]


async def act(
    session: AsyncSession,
    principal: Principal,
    followup_id: uuid.UUID,
    action: str,
    now: datetime,
    *,
    answer: str | None = None,
    teacher_id: uuid.UUID | None = None,
    reason: str | None = None,
    rating: int | None = None,
    templates: Templates | None = None,
) -> FollowupOut:
    """One step of the loop by the staff who work on the item (answer, assign, escalate) or the child's
    parent (confirm, reopen). Outside the caller's reach: 404; a step its state does not allow: 409."""
    f, school = await _followup(session, followup_id)
    await close_unconfirmed(session, now, school.id)
    await session.refresh(f)
    parent = f.student_id in principal.child_ids()
    if action in ("confirm", "reopen"):
        if not parent:
            raise FollowupNotFound()
    else:
        works_on = await session.scalar(
            select(Followup.id).where(Followup.id == f.id, _staff_filter(principal, school))
        )
        if works_on is None:
            raise FollowupNotFound()
    target = rules.next_state(action, f.state)
    if target is None:
        raise IllegalTransition(f"当前状态（{f.state}）不能{_VERBS[action]}")
    detail: dict[str, Any] = {}
    if action == "answer":
        f.answer, f.answered_at = answer, now
        f.first_answered_at = f.first_answered_at or now
    elif action == "confirm":
        f.closed_at, f.rating = now, rating
        detail["rating"] = rating
    elif action == "reopen":
        f.reopen_count += 1
        detail["reason"] = reason
    elif action == "assign":
        if teacher_id is not None:
            owner = await session.get(Teacher, teacher_id)
            if owner is None or owner.school_id != f.school_id:
                raise invalid("teacher_id", "只能交给本校老师", code="teacher_not_of_school")
        if not standing(principal, school.id).school_admin and f.owner_teacher_id != principal.teacher_id(
            school.id
        ):
            raise Forbidden("只有负责老师和学校管理员可以转交")
        f.owner_teacher_id = teacher_id
        detail["teacher_id"] = str(teacher_id) if teacher_id else None
    elif action == "escalate":
        f.escalated_at = now
        detail["reason"] = reason
    f.state = target
    f.version += 1
    step = FollowupEvent(
        id=uuid.uuid4(),
        followup_id=f.id,
        at=now,
        actor_user_id=principal.id,
        action=action,
        state=target,
        detail=detail,
    )
    session.add(step)
    await session.flush()
    if action == "answer" and templates is not None:
        await _tell_guardians(session, f, step, templates)
    [out] = await _out(session, [f], now, history=True)
    return out


async def _tell_guardians(
    session: AsyncSession, f: Followup, step: FollowupEvent, templates: Templates
) -> None:
    """The child's guardians hear that what they raised has its answer (through the outbox, within their
    subscription allowance). One message per answer: a second answer after a reopen is news too."""
    guardians = list(
        (
            await session.execute(
                select(Guardianship.parent_user_id).where(Guardianship.student_id == f.student_id)
            )
        ).scalars()
    )
    await notifications.enqueue(
        session,
        [
            notifications.Job(
                kind="followup_answered",
                user_id=parent,
                subject_id=step.id,
                due_at=step.at,
                template_id=templates.followup_answered,
                page=f"pages/followups/detail?id={f.id}",
                data={"thing1": f.text[:20], "thing2": (f.answer or "")[:20], "phrase3": "已答复"},
            )
            for parent in guardians
        ],
    )


_VERBS = {
    "answer": "答复",
    "confirm": "确认",
    "reopen": "重新打开",
    "assign": "转交",
    "escalate": "上报区里",
    "start": "开始办理",
}
