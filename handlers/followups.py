"""The closed loop (闭环跟进) over HTTP: a school's queue, the staff's steps (answer, assign, escalate),
the parent's (their list, the principal's mailbox, confirm with a rating, reopen with a reason), and a
hotline call or meeting item logged by staff."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from models.accounts.rules import PARENTS, SCHOOL_STAFF, STAFF_ROLES
from models.audit.actions import AuditAction
from models.home_visits import followups
from models.home_visits.schemas import (
    AnswerIn,
    AssignIn,
    ConfirmIn,
    EscalateIn,
    FollowupOut,
    FollowupPage,
    FollowupQuery,
    RaiseIn,
    ReopenIn,
    StaffRaiseIn,
)
from models.pagination import PageQuery

STEP_ERRORS = (401, 403, 404, 409, 422)


class SchoolFollowupsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本校跟进队列（逾期的在前）：管理员看全部，老师看自己负责的，区管理员看上报到区里的",
            roles=STAFF_ROLES,
            scope=Scope.school,
            query=FollowupQuery,
            response=FollowupPage,
            errors=(401, 403, 404, 422),
        ),
        "post": Operation(
            "登记热线电话或家长会上家长提出的事项（source = hotline / meeting），进入同一闭环",
            roles=SCHOOL_STAFF,
            scope=Scope.school,
            body=StaffRaiseIn,
            response=FollowupOut,
            status=201,
            idempotent=True,
            audit=AuditAction.followup_raised,
            errors=(401, 403, 404, 422),
        ),
    }

    async def get(self, school_id: str) -> None:
        query = self.query(FollowupQuery)
        async with self.school_scope(school_id) as (session, school):
            items, cursor = await followups.school_queue(session, self.me, school, query, self.deps.clock())
        self.send(FollowupPage(items=items, next_cursor=cursor))

    async def post(self, school_id: str) -> None:
        data = self.body(StaffRaiseIn)
        async with self.school_scope(school_id) as (session, school):
            out = await followups.staff_raises(session, self.me, school, data, self.deps.clock())
            self.audit_about(followup_id=str(out.id))
        self.send(out, status=201)


class MyFollowupsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "我的孩子的家长反馈、诉求和建议，及学校的答复",
            roles=PARENTS,
            scope=Scope.family,
            query=PageQuery,
            response=FollowupPage,
            errors=(401, 403, 422),
        ),
        "post": Operation(
            "校长信箱：家长就自己的孩子提出反馈、诉求或建议（由班主任负责跟进）",
            roles=PARENTS,
            scope=Scope.family,
            body=RaiseIn,
            response=FollowupOut,
            status=201,
            idempotent=True,
            errors=(401, 403, 404, 422),
        ),
    }

    async def get(self) -> None:
        page = self.query(PageQuery)
        async with self.transaction() as session:
            items, cursor = await followups.my_followups(
                session, self.me, page.limit, page.cursor, self.deps.clock()
            )
        self.send(FollowupPage(items=items, next_cursor=cursor))

    async def post(self) -> None:
        data = self.body(RaiseIn)
        async with self.transaction() as session:
            out = await followups.parent_raises(session, self.me, data, self.deps.clock())
        self.send(out, status=201)


class FollowupAnswerHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "答复一条跟进事项（负责老师、学校管理员；上报到区里的，区管理员也可答复）",
            roles=STAFF_ROLES,
            scope=Scope.record,
            body=AnswerIn,
            response=FollowupOut,
            audit=AuditAction.followup_answered,
            errors=STEP_ERRORS,
        )
    }

    async def post(self, followup_id: str) -> None:
        data = self.body(AnswerIn)
        async with self.transaction() as session:
            out = await followups.act(
                session,
                self.me,
                self.path_uuid(followup_id),
                "answer",
                self.deps.clock(),
                answer=data.answer,
                templates=self.deps.templates,
            )
            self.audit_about(out.school_id)
        self.send(out)


class FollowupAssignHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "转交给本校另一位老师，或（不填 teacher_id）交给学校管理员",
            roles=SCHOOL_STAFF,
            scope=Scope.record,
            body=AssignIn,
            response=FollowupOut,
            audit=AuditAction.followup_assigned,
            errors=STEP_ERRORS,
        )
    }

    async def post(self, followup_id: str) -> None:
        data = self.body(AssignIn)
        async with self.transaction() as session:
            out = await followups.act(
                session,
                self.me,
                self.path_uuid(followup_id),
                "assign",
                self.deps.clock(),
                teacher_id=data.teacher_id,
            )
            self.audit_about(out.school_id)
        self.send(out)


class FollowupEscalateHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "学校无法答复时上报区里（区管理员可见并可答复）",
            roles=SCHOOL_STAFF,
            scope=Scope.record,
            body=EscalateIn,
            response=FollowupOut,
            audit=AuditAction.followup_escalated,
            errors=STEP_ERRORS,
        )
    }

    async def post(self, followup_id: str) -> None:
        data = self.body(EscalateIn)
        async with self.transaction() as session:
            out = await followups.act(
                session,
                self.me,
                self.path_uuid(followup_id),
                "escalate",
                self.deps.clock(),
                reason=data.reason,
            )
            self.audit_about(out.school_id)
        self.send(out)


class FollowupConfirmHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "家长确认答复（可打 1–5 分），事项关闭",
            roles=PARENTS,
            scope=Scope.record,
            body=ConfirmIn,
            response=FollowupOut,
            errors=STEP_ERRORS,
        )
    }

    async def post(self, followup_id: str) -> None:
        data = self.body(ConfirmIn)
        async with self.transaction() as session:
            out = await followups.act(
                session,
                self.me,
                self.path_uuid(followup_id),
                "confirm",
                self.deps.clock(),
                rating=data.rating,
            )
        self.send(out)


class FollowupReopenHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "家长对答复不满意，说明理由后重新打开（回到办理中）",
            roles=PARENTS,
            scope=Scope.record,
            body=ReopenIn,
            response=FollowupOut,
            errors=STEP_ERRORS,
        )
    }

    async def post(self, followup_id: str) -> None:
        data = self.body(ReopenIn)
        async with self.transaction() as session:
            out = await followups.act(
                session, self.me, self.path_uuid(followup_id), "reopen", self.deps.clock(), reason=data.reason
            )
        self.send(out)
