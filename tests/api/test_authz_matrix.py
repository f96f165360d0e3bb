"""The authorisation matrix: every authenticated route × every role × own / another organisation.

The routes come from `server.app.ROUTES` at import time, so a route added later is covered as soon as it
has a recipe here (and `test_every_authenticated_route_has_a_recipe` fails until it does).
Expected outcomes follow
API.md: no token → 401; a role the operation does not list → 403; the right role on another school's or
district's id → 404 (never 200, never 403); the right role on its own organisation → the documented
success status. A district admin reaches every school of their district and none of another district.

Adding a route: give RECIPES a function that returns a valid request on a given target (the school or
district named by the route's `{school_id}` / `{district_id}`, else None) plus any nested ids. A route
scoped by something else (a course, a child) also needs its own targets and reach in `targets()` and
`Ctx.reach()`, or the matrix would expect success where the API must answer 404.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from handlers.base import ApiHandler
from handlers.deps import Deps
from handlers.policy import Operation, Scope
from models.accounts.tables import Classroom, District, School, Student, Teacher
from models.evening_classes.rules import checkin_token
from models.evening_classes.tables import EveningClass, Signup
from models.home_visits.tables import Followup, HomeVisit, HomeVisitPhoto, HomeVisitStudent, HomeVisitTeacher
from models.home_visits.visits import etag as visit_etag
from models.learning.tables import Certificate
from models.surveys.service import discard_sample
from models.surveys.tables import Survey, SurveyParticipation, SurveyResponse
from server.app import API, ROUTES
from tests.builders import (
    World,
    make_binding_code,
    make_classroom,
    make_course,
    make_evening_class,
    make_guardian,
    make_open_survey,
    make_student,
    make_teacher,
    make_wechat_user,
    make_world,
)
from tests.client import Api, Response

WRITE_VERBS = ("post", "put", "patch", "delete")


# ---- the routes, derived from the route table ------------------------------------------------------
@dataclass(frozen=True)
class Route:
    path: str
    verb: str
    handler: type[ApiHandler]
    op: Operation

    @property
    def id(self) -> str:
        return f"{self.verb.upper()} {self.path}"

    @property
    def scope(self) -> str | None:
        """What the operation's declared scope checks the caller against: a school, a district, or the
        record its path names (a course, a lesson, an evening class, a certificate); None for nothing."""
        if self.op.scope in (Scope.school, Scope.district):
            return self.op.scope.value
        if self.op.scope is Scope.none:
            return None
        if "{certificate_id}" in self.path:
            return "certificate"
        if "{survey_id}" in self.path:
            return "survey"
        if "{visit_id}" in self.path:
            return "visit"
        if "{followup_id}" in self.path:
            return "followup"
        if self.path == f"{API}/me/followups" and self.verb == "post":  # the child in the body
            return "child"
        if self.path.endswith("/students/{student_id}/home-visits"):
            return "student"
        if self.path == f"{API}/home-visits":  # the students in the body name the school
            return "visit_school"
        if "{class_id}" in self.path:
            return "evening_class"
        if "/lessons/{course_id}" in self.path:
            return "lesson"
        if "{course_id}" in self.path:
            return "course"
        return None

    @property
    def scope_param(self) -> str:
        return {"lesson": "course_id", "evening_class": "class_id", "visit_school": "school_id"}.get(
            self.scope or "", f"{self.scope}_id"
        )


def documented_routes() -> list[Route]:
    return [
        Route(path, verb, handler, op) for path, handler in ROUTES for verb, op in handler.openapi.items()
    ]


AUTHENTICATED_ROUTES = [r for r in documented_routes() if r.op.authenticated]


# ---- the world every case runs in ------------------------------------------------------------------
@dataclass
class Ctx:
    """make_world plus, in every school, a classroom with a student and a teacher who has not bound yet."""

    deps: Deps
    world: World
    classrooms: dict[uuid.UUID, Classroom] = field(default_factory=dict)
    students: dict[uuid.UUID, Student] = field(default_factory=dict)
    unbound_teachers: dict[uuid.UUID, Teacher] = field(default_factory=dict)
    # Records scoped by something other than a school or district: who reaches each.
    scoped: dict[str, list[Any]] = field(default_factory=dict)
    owned_by_school: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    owned_by_actor: dict[uuid.UUID, str] = field(default_factory=dict)
    catalogue_course: Any = None

    @property
    def schools(self) -> list[School]:
        return [self.world.school_a, self.world.school_b, self.world.school_c]

    @property
    def districts(self) -> list[District]:
        return [self.world.district, self.world.other_district]

    def reach(self, actor: str) -> set[uuid.UUID]:
        """The schools and districts an actor's grants, bindings or staff record are attached to."""
        w = self.world
        district_a = {w.district.id, w.school_a.id, w.school_b.id}
        base = {
            "parent_a": {w.school_a.id},
            "teacher_a": {w.school_a.id},
            "school_admin_a": {w.school_a.id},
            "parent_b": {w.school_b.id},
            "teacher_b": {w.school_b.id},
            "school_admin_b": {w.school_b.id},
            "district_admin": district_a,
            "evaluator": district_a,
            "other_district_admin": {w.other_district.id, w.school_c.id},
            "stranger": set(),
        }[actor]
        school_owned = {record for record, school in self.owned_by_school.items() if school in base}
        actor_owned = {record for record, owner in self.owned_by_actor.items() if owner == actor}
        return base | school_owned | actor_owned


ACTOR_ROLE: dict[str, str | None] = {
    "parent_a": "parent",
    "parent_b": "parent",
    "teacher_a": "teacher",
    "teacher_b": "teacher",
    "school_admin_a": "school_admin",
    "school_admin_b": "school_admin",
    "district_admin": "district_admin",
    "other_district_admin": "district_admin",
    "evaluator": "evaluator",
    "stranger": None,
}
ACTORS = list(ACTOR_ROLE)


async def make_ctx(deps: Deps) -> Ctx:
    world = await make_world(deps)
    ctx = Ctx(deps, world)
    ctx.classrooms[world.school_a.id] = world.classroom_a
    ctx.classrooms[world.school_b.id] = world.classroom_b
    async with deps.sessions() as s, s.begin():
        classroom_c = await make_classroom(s, world.school_c, "丙一班", 1)
        ctx.classrooms[world.school_c.id] = classroom_c
        ctx.students[world.school_c.id] = await make_student(s, classroom_c, "丙同学", "C001")
        ctx.students[world.school_a.id] = world.student_a
        ctx.students[world.school_b.id] = world.student_b
        for school in ctx.schools:
            ctx.unbound_teachers[school.id] = await make_teacher(s, school, name="新老师")
        for scope, tier in (("course", "general"), ("lesson", "online")):
            ctx.scoped[scope] = []
            for school in (world.school_a, world.school_b):
                course = await make_course(s, tier=tier, title=f"{school.name}的课", school=school)
                ctx.scoped[scope].append(course)
                ctx.owned_by_school[course.id] = school.id
        # Evening classes at A and B, open to the school, starting in 20 minutes: sign-up and
        # cancellation are still open and check-in already is.
        catalogue_course = await make_course(s, tier="general", title="家庭教育讲座")
        ctx.scoped["evening_class"] = []
        soon = deps.clock() + timedelta(minutes=20)
        for school in (world.school_a, world.school_b):
            evening = await make_evening_class(
                s, school, catalogue_course, starts_at=soon, cancel_deadline=soon - timedelta(minutes=10)
            )
            ctx.scoped["evening_class"].append(evening)
            ctx.owned_by_school[evening.id] = school.id
        ctx.catalogue_course = catalogue_course
        # A submitted visit at A and at B, by the school's own teacher, of the school's student.
        ctx.scoped["visit"], ctx.scoped["student"], ctx.scoped["visit_school"] = [], [], []
        for school in (world.school_a, world.school_b):
            student = ctx.students[school.id]
            teacher_id = await s.scalar(
                select(Teacher.id).where(Teacher.school_id == school.id, Teacher.user_id.is_not(None))
            )
            visit = HomeVisit(
                school_id=school.id,
                school_year="2025-2026",
                status="submitted",
                visited_at=deps.clock() - timedelta(days=1),
                mode="home",
                four_to_home={},
                draft_three_back=[],
                created_by=world.actors["teacher_a"].user_id,
                version=1,
            )
            s.add(visit)
            await s.flush()
            s.add_all(
                [
                    HomeVisitStudent(visit_id=visit.id, student_id=student.id),
                    HomeVisitTeacher(visit_id=visit.id, teacher_id=teacher_id),
                ]
            )
            ctx.scoped["visit"].append(visit)
            ctx.scoped["student"].append(student)
            ctx.scoped["visit_school"].append(school)
            ctx.owned_by_school[visit.id] = school.id
            ctx.owned_by_school[student.id] = school.id
            # An item escalated to the district, owned by the school's teacher.
            followup = Followup(
                school_id=school.id,
                school_year="2025-2026",
                student_id=student.id,
                source="mailbox",
                kind="demand",
                text="希望增加课后托管",
                state="open",
                owner_teacher_id=teacher_id,
                escalated_at=deps.clock(),
                due_at=deps.clock() + timedelta(days=7),
                reopen_count=0,
                version=1,
            )
            s.add(followup)
            await s.flush()
            ctx.scoped.setdefault("followup", []).append(followup)
            ctx.scoped.setdefault("child", []).append(student)
            ctx.owned_by_school[followup.id] = school.id
        ctx.scoped["certificate"] = []
        for actor in ("parent_a", "parent_b"):
            cert = Certificate(
                parent_user_id=world.actors[actor].user_id,
                school_year="2025-2026",
                district_id=world.district.id,
                number=_unique("JX"),
            )
            s.add(cert)
            await s.flush()
            ctx.scoped["certificate"].append(cert)
            ctx.owned_by_actor[cert.id] = actor
        # Surveys of school A (district A) and of school C (the other district), open, every student
        # sampled: a school admin reaches a survey whose audience holds their school, a parent one whose
        # sample holds their child.
        ctx.scoped["survey"] = []
        for district, school in ((world.district, world.school_a), (world.other_district, world.school_c)):
            survey = await s.get(
                Survey, await make_open_survey(s, district, [school], deps.clock()), populate_existing=True
            )
            ctx.scoped["survey"].append(survey)
            ctx.owned_by_school[survey.id] = school.id
    return ctx


def targets(ctx: Ctx, route: Route) -> list[Any]:
    if route.scope == "school":
        return list(ctx.schools)
    if route.scope == "district":
        return list(ctx.districts)
    if route.scope is not None:
        return list(ctx.scoped[route.scope])
    return [None]


def expected_status(ctx: Ctx, route: Route, actor: str, target: School | District | None) -> int:
    if route.op.roles and ACTOR_ROLE[actor] not in route.op.roles:
        return 403
    if target is None or target.id in ctx.reach(actor):
        return route.op.status
    return 404


# ---- recipes: a valid request of each route on a given school or district ---------------------------
@dataclass
class Call:
    ids: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"
    query: str = ""  # appended to the path ("?sheet=schools")
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> bytes | None:
        if self.json is not None:
            return json.dumps(self.json, ensure_ascii=False).encode()
        return self.raw


Recipe = Callable[[Ctx, Any], Awaitable[Call]]


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def _no_body(ctx: Ctx, target: Any) -> Call:
    return Call()


async def _empty_body(ctx: Ctx, target: Any) -> Call:
    return Call(json={})


async def _wechat_login(ctx: Ctx, target: Any) -> Call:
    return Call(json={"code": _unique("openid-")})


async def _password_login(ctx: Ctx, target: Any) -> Call:
    return Call(json={"username": "nobody", "password": "a password"})


async def _refresh(ctx: Ctx, target: Any) -> Call:
    return Call(json={"refresh_token": "not-a-real-refresh-token"})


async def _bindings(ctx: Ctx, target: Any) -> Call:
    """A fresh guardian code for a fresh child, so every caller can redeem one successfully."""
    async with ctx.deps.sessions() as s, s.begin():
        student = await make_student(s, ctx.world.classroom_a, "新同学")
        code = await make_binding_code(s, ctx.world.school_a, student=student)
    return Call(
        json={
            "code": code,
            "relation": "father",
            "consent_policy_version": ctx.deps.settings.privacy_policy_version,
        }
    )


async def _new_school(ctx: Ctx, district: District) -> Call:
    return Call(json={"name": _unique("新学校")})


async def _staff_account(ctx: Ctx, district: District) -> Call:
    school = next((s for s in ctx.schools if s.district_id == district.id), ctx.world.school_a)
    return Call(
        json={
            "username": _unique("admin_"),
            "password": "a long enough password",
            "display_name": "新管理员",
            "role": "school_admin",
            "school_id": str(school.id),
        }
    )


async def _new_classroom(ctx: Ctx, school: School) -> Call:
    return Call(json={"name": _unique("新班"), "grade": 4})


async def _new_student(ctx: Ctx, school: School) -> Call:
    classroom = ctx.classrooms[school.id]
    return Call(json={"student_no": _unique("N"), "name": "新同学", "classroom_id": str(classroom.id)})


async def _new_teacher(ctx: Ctx, school: School) -> Call:
    return Call(json={"name": "新老师"})


async def _teacher_code(ctx: Ctx, school: School) -> Call:
    return Call(ids={"teacher_id": ctx.unbound_teachers[school.id].id}, json={})


async def _guardian_codes(ctx: Ctx, school: School) -> Call:
    return Call(ids={"classroom_id": ctx.classrooms[school.id].id}, json={})


async def _roster_import(ctx: Ctx, school: School) -> Call:
    csv = f"学号,姓名,班级,年级\n{_unique('R')},导入同学,{_unique('导入班')},3\n"
    return Call(raw=csv.encode(), content_type="text/csv; charset=utf-8")


async def _new_course(ctx: Ctx, target: Any) -> Call:
    return Call(
        json={
            "tier": "general",
            "title": _unique("家长讲座"),
            "summary": "讲座简介",
            "topic": "family_education",
            "grade_bands": ["junior"],
            "class_hours": 2,
        }
    )


async def _assignment(ctx: Ctx, school: School) -> Call:
    async with ctx.deps.sessions() as s, s.begin():
        course = await make_course(s, tier="custom", title=_unique("定制课"), school=school)
    return Call(json={"course_id": str(course.id), "student_ids": [str(ctx.students[school.id].id)]})


async def _heartbeat(ctx: Ctx, target: Any) -> Call:
    return Call(json={"position": 0})


async def _requirements(ctx: Ctx, target: Any) -> Call:
    return Call(ids={"school_year": "2025-2026"})


async def _set_requirements(ctx: Ctx, target: Any) -> Call:
    return Call(
        ids={"school_year": "2025-2026"}, json={"foundation": 8, "general": 2, "custom": 0, "online": 1}
    )


async def _guardians(ctx: Ctx, school: School) -> Call:
    return Call(ids={"student_id": ctx.students[school.id].id})


async def _adjustment(ctx: Ctx, school: School) -> Call:
    """An adjustment for a parent of a child at the target school."""
    async with ctx.deps.sessions() as s, s.begin():
        parent = await make_wechat_user(s)
        await make_guardian(s, parent, ctx.students[school.id])
    return Call(
        json={"parent_id": str(parent.id), "tier": "foundation", "class_hours": 2, "reason": "纸质签到补录"}
    )


def _school_parent(ctx: Ctx, evening: Any) -> str:
    return "parent_a" if evening.school_id == ctx.world.school_a.id else "parent_b"


async def _signed_up(ctx: Ctx, evening: Any) -> uuid.UUID:
    """Both parents hold a confirmed seat in their own school's class (idempotent)."""
    parent = ctx.world.actors[_school_parent(ctx, evening)].user_id
    async with ctx.deps.sessions() as s, s.begin():
        taken = await s.execute(
            pg_insert(Signup)
            .values(
                id=uuid.uuid4(),
                class_id=evening.id,
                parent_user_id=parent,
                status="confirmed",
                waitlist_seq=0,
            )
            .on_conflict_do_nothing()
            .returning(Signup.id)
        )
        if taken.first() is not None:
            await s.execute(
                update(EveningClass)
                .where(EveningClass.id == evening.id)
                .values(confirmed_count=EveningClass.confirmed_count + 1)
            )
    return parent


async def _new_evening_class(ctx: Ctx, school: School) -> Call:
    start = ctx.deps.clock() + timedelta(days=3)
    return Call(
        json={
            "course_id": str(ctx.catalogue_course.id),
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "place": "报告厅",
            "capacity": 40,
        }
    )


async def _cancel_signup(ctx: Ctx, evening: Any) -> Call:
    await _signed_up(ctx, evening)
    return Call()


async def _checkin(ctx: Ctx, evening: Any) -> Call:
    await _signed_up(ctx, evening)
    secret = ctx.deps.settings.jwt_secret.get_secret_value().encode()
    key = hmac.new(secret, b"evening-class-checkin", hashlib.sha256).digest()
    token, _ = checkin_token(key, str(evening.id), ctx.deps.clock())
    return Call(json={"token": token})


async def _mark_present(ctx: Ctx, evening: Any) -> Call:
    parent = await _signed_up(ctx, evening)
    return Call(ids={"parent_id": parent}, json={})


async def _accepted(ctx: Ctx, target: Any) -> Call:
    return Call(json={"accepted": [ctx.deps.settings.wechat_template_class_reminder]})


async def _term(ctx: Ctx, target: Any) -> Call:
    return Call(ids={"term": "2025-2026-1"})


async def _term_requirement(ctx: Ctx, target: Any) -> Call:
    return Call(ids={"term": "2025-2026-1"}, json={"required": 6})


async def _survey_state(ctx: Ctx, survey: Any, status: str) -> None:
    """Put the target survey in `status`, open now (recipes run one after another on the same survey)."""
    now = ctx.deps.clock()
    async with ctx.deps.sessions() as s, s.begin():
        row = await s.get(Survey, survey.id)
        assert row is not None
        row.status = status
        row.opens_at, row.closes_at = now - timedelta(days=1), now + timedelta(days=14)
        if status == "draft":
            await discard_sample(s, survey.id)
        await s.execute(delete(SurveyParticipation).where(SurveyParticipation.survey_id == survey.id))


async def _new_survey(ctx: Ctx, district: District) -> Call:
    return Call(json={"from_template": "parent-satisfaction"})


async def _draft_edit(ctx: Ctx, survey: Any) -> Call:
    await _survey_state(ctx, survey, "draft")
    return Call(json={"title": _unique("调查")})


async def _publish(ctx: Ctx, survey: Any) -> Call:
    await _survey_state(ctx, survey, "draft")
    return Call()


async def _close(ctx: Ctx, survey: Any) -> Call:
    await _survey_state(ctx, survey, "published")
    return Call()


async def _closed_results(ctx: Ctx, survey: Any) -> Call:
    await _survey_state(ctx, survey, "closed")
    return Call()


async def _held_text(ctx: Ctx, survey: Any) -> Call:
    """A free-text answer of the target survey held for review (every caller gets a fresh one)."""
    async with ctx.deps.sessions() as s, s.begin():
        response = SurveyResponse(
            survey_id=survey.id,
            school_id=ctx.owned_by_school[survey.id],
            grade=3,
            day=ctx.deps.clock().date(),
            answers={"overall_suggestion": "待审的意见"},
            text_status={"overall_suggestion": "held"},
        )
        s.add(response)
        await s.flush()
    return Call(ids={"text_id": f"{response.id}.overall_suggestion"}, json={"decision": "release"})


async def _csv_sheet(ctx: Ctx, survey: Any) -> Call:
    return Call(query="?sheet=schools")


async def _survey_answer(ctx: Ctx, survey: Any) -> Call:
    """The child of the survey's school in the sample (parent_a's at school A; nobody's at school C)."""
    await _survey_state(ctx, survey, "published")
    school = ctx.owned_by_school[survey.id]
    answers: dict[str, Any] = {}
    for d in survey.dimensions:
        for q in d["questions"]:
            if q["required"]:
                answers[q["key"]] = q["options"][0]["key"] if q["kind"] == "single" else 4
    return Call(json={"student_id": str(ctx.students[school].id), "answers": answers})


async def _new_visit(ctx: Ctx, school: School) -> Call:
    return Call(
        json={
            "student_ids": [str(ctx.students[school.id].id)],
            "teacher_ids": [str(ctx.unbound_teachers[school.id].id)],
            "visited_at": (ctx.deps.clock() - timedelta(hours=1)).isoformat(),
            "mode": "phone",
        }
    )


async def _edit_visit(ctx: Ctx, visit: Any) -> Call:
    async with ctx.deps.sessions() as s:
        current = await s.get(HomeVisit, visit.id)
        assert current is not None
        tag = visit_etag(current)
    return Call(json={"duration_minutes": 30}, headers={"If-Match": tag})


async def _visit_assignment(ctx: Ctx, school: School) -> Call:
    return Call(
        json={
            "teacher_id": str(ctx.unbound_teachers[school.id].id),
            "student_ids": [str(ctx.students[school.id].id)],
        }
    )


def _followup_in(state: str, body: dict[str, Any]) -> Recipe:
    """Puts the target follow-up back in `state` (with its school's teacher as owner), so each call finds
    the step allowed."""

    async def recipe(ctx: Ctx, followup: Any) -> Call:
        async with ctx.deps.sessions() as s, s.begin():
            await s.execute(
                update(Followup)
                .where(Followup.id == followup.id)
                .values(
                    state=state,
                    owner_teacher_id=followup.owner_teacher_id,
                    answered_at=ctx.deps.clock() if state == "answered" else None,
                    closed_at=None,
                )
            )
        return Call(json=body)

    return recipe


async def _staff_raise(ctx: Ctx, school: School) -> Call:
    return Call(
        json={
            "student_id": str(ctx.students[school.id].id),
            "source": "hotline",
            "kind": "demand",
            "text": "校车",
        }
    )


async def _mailbox(ctx: Ctx, student: Any) -> Call:
    return Call(json={"student_id": str(student.id), "kind": "suggestion", "text": "建议开设心理讲座"})


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(out, "PNG")
    return out.getvalue()


async def _new_photo(ctx: Ctx, visit: Any) -> Call:
    """A photo for the visit (its earlier ones removed, so the limit of 3 is never what answers)."""
    async with ctx.deps.sessions() as s, s.begin():
        await s.execute(delete(HomeVisitPhoto).where(HomeVisitPhoto.visit_id == visit.id))
    return Call(raw=_png(), content_type="image/png")


async def _stored_photo(ctx: Ctx, visit: Any) -> Call:
    data = _png()
    async with ctx.deps.sessions() as s, s.begin():
        photo = HomeVisitPhoto(visit_id=visit.id, content_type="image/png", size=len(data))
        s.add(photo)
        await s.flush()
        await ctx.deps.files.put(photo.id.hex, data)
    return Call(ids={"photo_id": photo.id})


RECIPES: dict[tuple[str, str], Recipe] = {
    (f"{API}/auth/wechat-login", "post"): _wechat_login,
    (f"{API}/auth/password-login", "post"): _password_login,
    (f"{API}/auth/refresh", "post"): _refresh,
    (f"{API}/auth/logout", "post"): _empty_body,
    (f"{API}/me", "get"): _no_body,
    (f"{API}/bindings", "post"): _bindings,
    (f"{API}/districts/{{district_id}}/schools", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/schools", "post"): _new_school,
    (f"{API}/districts/{{district_id}}/staff-accounts", "post"): _staff_account,
    (f"{API}/schools/{{school_id}}", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/classrooms", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/classrooms", "post"): _new_classroom,
    (f"{API}/schools/{{school_id}}/classrooms/{{classroom_id}}/guardian-codes", "post"): _guardian_codes,
    (f"{API}/schools/{{school_id}}/students", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/students", "post"): _new_student,
    (f"{API}/schools/{{school_id}}/teachers", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/teachers", "post"): _new_teacher,
    (f"{API}/schools/{{school_id}}/teachers/{{teacher_id}}/binding-code", "post"): _teacher_code,
    (f"{API}/schools/{{school_id}}/roster-imports", "post"): _roster_import,
    (f"{API}/courses", "get"): _no_body,
    (f"{API}/courses/{{course_id}}", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/courses", "post"): _new_course,
    (f"{API}/schools/{{school_id}}/courses", "post"): _new_course,
    (f"{API}/schools/{{school_id}}/course-assignments", "post"): _assignment,
    (f"{API}/lessons/{{course_id}}/progress", "post"): _heartbeat,
    (f"{API}/me/learning", "get"): _no_body,
    (f"{API}/me/certificates", "get"): _no_body,
    (f"{API}/me/certificates/{{certificate_id}}/pdf", "get"): _no_body,
    (f"{API}/me/subscriptions", "get"): _no_body,
    (f"{API}/me/subscriptions", "post"): _accepted,
    (f"{API}/districts/{{district_id}}/requirements/{{school_year}}", "get"): _requirements,
    (f"{API}/districts/{{district_id}}/requirements/{{school_year}}", "put"): _set_requirements,
    (f"{API}/schools/{{school_id}}/learning/summary", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/learning/summary.xlsx", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/students/{{student_id}}/guardians", "get"): _guardians,
    (f"{API}/schools/{{school_id}}/hour-adjustments", "post"): _adjustment,
    (f"{API}/schools/{{school_id}}/evening-classes", "post"): _new_evening_class,
    (f"{API}/evening-classes", "get"): _no_body,
    (f"{API}/evening-classes/{{class_id}}", "get"): _no_body,
    (f"{API}/evening-classes/{{class_id}}/signups", "post"): _empty_body,
    (f"{API}/evening-classes/{{class_id}}/signups/me", "delete"): _cancel_signup,
    (f"{API}/evening-classes/{{class_id}}/checkin-code", "get"): _no_body,
    (f"{API}/evening-classes/{{class_id}}/checkins", "post"): _checkin,
    (f"{API}/evening-classes/{{class_id}}/roster", "get"): _no_body,
    (f"{API}/evening-classes/{{class_id}}/sign-in-sheet.pdf", "get"): _no_body,
    (f"{API}/evening-classes/{{class_id}}/attendance/{{parent_id}}", "put"): _mark_present,
    (f"{API}/schools/{{school_id}}/terms/{{term}}/evening-classes/summary", "get"): _term,
    (f"{API}/schools/{{school_id}}/terms/{{term}}/evening-classes/summary.xlsx", "get"): _term,
    (f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/summary", "get"): _term,
    (f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/summary.xlsx", "get"): _term,
    (f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/requirement", "put"): _term_requirement,
    (f"{API}/districts/{{district_id}}/learning/summary", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/learning/summary.xlsx", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/catalogue/summary", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/catalogue/summary.xlsx", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/surveys", "post"): _new_survey,
    (f"{API}/districts/{{district_id}}/surveys", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/satisfaction", "get"): _no_body,
    (f"{API}/surveys/{{survey_id}}", "get"): _no_body,
    (f"{API}/surveys/{{survey_id}}", "patch"): _draft_edit,
    (f"{API}/surveys/{{survey_id}}/publish", "post"): _publish,
    (f"{API}/surveys/{{survey_id}}/close", "post"): _close,
    (f"{API}/surveys/{{survey_id}}/response-rates", "get"): _no_body,
    (f"{API}/surveys/{{survey_id}}/results", "get"): _closed_results,
    (f"{API}/surveys/{{survey_id}}/results.xlsx", "get"): _no_body,
    (f"{API}/surveys/{{survey_id}}/results.csv", "get"): _csv_sheet,
    (f"{API}/surveys/{{survey_id}}/responses", "post"): _survey_answer,
    (f"{API}/surveys/{{survey_id}}/texts", "get"): _no_body,
    (f"{API}/surveys/{{survey_id}}/texts/{{text_id}}", "put"): _held_text,
    (f"{API}/me/surveys", "get"): _no_body,
    (f"{API}/me/home-visits/todo", "get"): _no_body,
    (f"{API}/home-visits", "post"): _new_visit,
    (f"{API}/home-visits/{{visit_id}}", "get"): _no_body,
    (f"{API}/home-visits/{{visit_id}}", "patch"): _edit_visit,
    (f"{API}/students/{{student_id}}/home-visits", "get"): _no_body,
    (f"{API}/home-visits/{{visit_id}}/photos", "post"): _new_photo,
    (f"{API}/home-visits/{{visit_id}}/photos/{{photo_id}}", "get"): _stored_photo,
    (f"{API}/schools/{{school_id}}/home-visit-assignments", "post"): _visit_assignment,
    (f"{API}/schools/{{school_id}}/home-visits/summary", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/home-visits/summary", "get"): _no_body,
    (f"{API}/districts/{{district_id}}/home-visits/summary.xlsx", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/audit-log", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/followups", "get"): _no_body,
    (f"{API}/schools/{{school_id}}/followups", "post"): _staff_raise,
    (f"{API}/me/followups", "get"): _no_body,
    (f"{API}/me/followups", "post"): _mailbox,
    (f"{API}/followups/{{followup_id}}/answer", "post"): _followup_in("open", {"answer": "已安排"}),
    (f"{API}/followups/{{followup_id}}/assign", "post"): _followup_in("open", {}),
    (f"{API}/followups/{{followup_id}}/escalate", "post"): _followup_in("open", {"reason": "涉及区里政策"}),
    (f"{API}/followups/{{followup_id}}/confirm", "post"): _followup_in("answered", {"rating": 5}),
    (f"{API}/followups/{{followup_id}}/reopen", "post"): _followup_in("answered", {"reason": "不满意"}),
}


async def build_call(ctx: Ctx, route: Route, target: School | District | None) -> tuple[str, Call]:
    call = await RECIPES[(route.path, route.verb)](ctx, target)
    ids = dict(call.ids)
    if route.scope is not None:
        assert target is not None
        ids[route.scope_param] = target.id
    return route.path.format(**{k: str(v) for k, v in ids.items()}) + call.query, call


async def send(
    api: Api, route: Route, path: str, call: Call, token: str | None, headers: dict[str, str] | None = None
) -> Response:
    all_headers = call.headers | dict(headers or {})
    body = call.body
    if body is not None:
        all_headers.setdefault("Content-Type", call.content_type)
    return await api.request(route.verb.upper(), path, body=body, token=token, headers=all_headers)


def _explain(response: Response) -> str:
    return response.body[:200].decode(errors="replace")


# ---- the tests ---------------------------------------------------------------------------------------
def test_every_authenticated_route_has_a_recipe() -> None:
    missing = [r.id for r in AUTHENTICATED_ROUTES if (r.path, r.verb) not in RECIPES]
    assert not missing, f"add a request recipe to RECIPES in {__name__} for: {missing}"


def test_the_matrix_covers_the_organisation_routes() -> None:
    """Guards the derivation itself: an empty or shrunken list would make the matrix pass vacuously."""
    ids = {r.id for r in AUTHENTICATED_ROUTES}
    assert f"POST {API}/schools/{{school_id}}/classrooms" in ids
    assert f"GET {API}/me" in ids
    assert not any("/auth/wechat-login" in i or "/auth/refresh" in i for i in ids)


@pytest.mark.parametrize("route", AUTHENTICATED_ROUTES, ids=lambda r: r.id)
async def test_authorisation_matrix(api: Api, deps: Deps, route: Route) -> None:
    ctx = await make_ctx(deps)
    failures: list[str] = []

    path, call = await build_call(ctx, route, targets(ctx, route)[0])
    for label, token in (("anonymous", None), ("garbage token", "not.a.jwt")):
        response = await send(api, route, path, call, token)
        if response.status != 401:
            failures.append(f"{label}: expected 401, got {response.status} {_explain(response)}")

    for actor in ACTORS:
        for target in targets(ctx, route):
            path, call = await build_call(ctx, route, target)
            expected = expected_status(ctx, route, actor, target)
            response = await send(api, route, path, call, ctx.world.token(actor))
            if response.status != expected:
                where = getattr(target, "name", "-")
                failures.append(
                    f"{actor} on {where}: expected {expected}, got {response.status} {_explain(response)}"
                )
            elif expected >= 400 and not response.headers.get("Content-Type", "").startswith(
                "application/problem+json"
            ):
                failures.append(f"{actor} on {getattr(target, 'name', '-')}: {expected} is not problem+json")

    if route.scope is not None:
        failures += await _ids_naming_nothing(api, ctx, route)

    assert not failures, f"{route.id}:\n  " + "\n  ".join(failures)


async def _ids_naming_nothing(api: Api, ctx: Ctx, route: Route) -> list[str]:
    """Ids that name nothing the caller may reach look exactly like another organisation's: 404.

    Every id in the path in turn becomes a random UUID or a non-UUID; a nested id (a classroom, a
    teacher) also becomes the same kind of record of a school outside the caller's reach.
    """
    actor, target = next(
        (a, t)
        for a in ACTORS
        for t in targets(ctx, route)
        if expected_status(ctx, route, a, t) == route.op.status
    )
    outsider = next(t for t in targets(ctx, route) if expected_status(ctx, route, actor, t) == 404)
    _, call = await build_call(ctx, route, target)
    own = {k: str(v) for k, v in call.ids.items()} | {route.scope_param: str(getattr(target, "id", ""))}
    variants: list[dict[str, str]] = []
    for name in own:
        if f"{{{name}}}" not in route.path:  # an id the body carries, not the path (a new visit's school)
            continue
        variants += [own | {name: str(uuid.uuid4())}, own | {name: "not-a-uuid"}]
    _, foreign = await build_call(ctx, route, outsider)
    for name, value in foreign.ids.items():
        if own.get(name) != str(value):  # a shared value (a school year) names nothing foreign
            variants.append(own | {name: str(value)})

    failures = []
    for ids in variants:
        _, call = await build_call(ctx, route, target)
        response = await send(api, route, route.path.format(**ids) + call.query, call, ctx.world.token(actor))
        if response.status != 404:
            changed = {k: v for k, v in ids.items() if own[k] != v}
            failures.append(
                f"{actor} with {changed}: expected 404, got {response.status} {_explain(response)}"
            )
    return failures


async def test_teacher_sees_only_students_of_classrooms_they_head(api: Api, deps: Deps) -> None:
    ctx = await make_ctx(deps)
    w = ctx.world
    async with deps.sessions() as s, s.begin():
        other_class = await make_classroom(s, w.school_a, "三年级2班", 3)
        await make_student(s, other_class, "别班同学", "A002")
    school_students = f"{API}/schools/{w.school_a.id}/students"

    as_teacher = await api.get(school_students, token=w.token("teacher_a"))
    assert as_teacher.status == 200
    assert [s["student_no"] for s in as_teacher.json()["items"]] == ["A001"]

    filtered = await api.get(f"{school_students}?classroom_id={other_class.id}", token=w.token("teacher_a"))
    assert filtered.status == 200 and filtered.json()["items"] == []

    as_admin = await api.get(school_students, token=w.token("school_admin_a"))
    assert [s["student_no"] for s in as_admin.json()["items"]] == ["A001", "A002"]

    # A teacher who heads no classroom sees no student at all.
    unbound = ctx.unbound_teachers[w.school_a.id]
    async with deps.sessions() as s, s.begin():
        teacher_row = await s.get(Teacher, unbound.id)
        assert teacher_row is not None
        teacher_row.user_id = w.actors["stranger"].user_id
    as_new_teacher = await api.get(school_students, token=w.token("stranger"))
    assert as_new_teacher.status == 200 and as_new_teacher.json()["items"] == []


async def test_district_admin_reaches_every_school_of_their_district_only(api: Api, deps: Deps) -> None:
    ctx = await make_ctx(deps)
    w = ctx.world
    token = w.token("district_admin")
    listed = await api.get(f"{API}/districts/{w.district.id}/schools", token=token)
    assert listed.status == 200
    assert {s["id"] for s in listed.json()["items"]} == {str(w.school_a.id), str(w.school_b.id)}
    for school, status in ((w.school_a, 200), (w.school_b, 200), (w.school_c, 404)):
        response = await api.get(f"{API}/schools/{school.id}/classrooms", token=token)
        assert response.status == status, school.name
