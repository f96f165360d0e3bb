"""The console's pages: login and logout, the district 首页 (its table as .xlsx too) and the school 首页
with its scheduling form and roster import.

Each page's Operation is derived from the API operations whose figures it shows (`page_of`: the roles
all of them allow, their common scope) and each form's from the API operation it carries out
(`form_of`: the same roles, scope and audit action), so the console allows exactly what the API allows;
the base checks them as for the API. Figures come from the same services as the API's summaries."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import segno
import tornado.template
import tornado.web
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import evening_classes as evening_api
from handlers import organisation as organisation_api
from handlers import problems, sheets
from handlers import statistics as statistics_api
from handlers.base import ApiHandler
from handlers.console import exports, sessions
from handlers.policy import AuthMode, Operation
from infra.clock import SHANGHAI
from infra.errors import (
    AppError,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)
from models.accounts import auth, roster
from models.accounts.access import reaches_school
from models.accounts.principal import Principal
from models.accounts.rules import Role
from models.accounts.tables import District, School
from models.evening_classes import attendance, errors, scheduling, term_counts, visibility
from models.evening_classes.rules import checkin_open, checkin_token, term_of, valid_term
from models.evening_classes.schemas import EveningClassIn
from models.evening_classes.school_list import schedulable_courses, school_term_classes
from models.evening_classes.sign_in_sheet import render_sign_in_sheet, sheet_data
from models.learning import statistics

HERE = Path(__file__).parent
STATIC_PATH = HERE / "static"
TEMPLATES = tornado.template.Loader(str(HERE / "templates"))  # autoescaped (xhtml_escape)

CONSOLE = "/console"
# Scripts and styles only from this origin, none inline; no plugins, no framing, forms post here only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HTML = "text/html; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PAGE_ERRORS = (401, 403, 404)


def page_of(summary: str, *sources: Operation) -> Operation:
    """A page showing what `sources` answer: callable by whoever may call all of them, in their scope."""
    scopes = {s.scope for s in sources}
    assert len(scopes) == 1, f"{summary}: sources of different scopes {scopes}"
    roles = frozenset[Role].intersection(*(s.roles for s in sources))
    return Operation(
        summary,
        roles=roles,
        scope=scopes.pop(),
        auth=AuthMode.session,
        media_type="text/html",
        errors=PAGE_ERRORS,
    )


def form_of(summary: str, source: Operation, status: int) -> Operation:
    """`source` carried out from a console session (a form, or a file a page links to): its roles,
    scope and audit action."""
    return dataclasses.replace(
        source,
        summary=summary,
        auth=AuthMode.session,
        idempotent=False,  # a form is not retried by a client library; the page shows what happened
        body=None,
        response=None,
        media_type="text/html",
        status=status,  # 303 to the page that shows the outcome, or 200 with the outcome in the page
    )


DISTRICT_PAGE = page_of(
    "区县首页：各校本学期家长夜校次数与学时完成率",
    evening_api.DistrictTermSummaryHandler.openapi["get"],
    statistics_api.DistrictLearningSummaryHandler.openapi["get"],
)
SCHOOL_PAGE = page_of(
    "学校首页：本学期家长夜校、各班学时完成率",
    evening_api.SchoolTermSummaryHandler.openapi["get"],
    statistics_api.SchoolLearningSummaryHandler.openapi["get"],
)
SCHEDULE_FORM = form_of("开设家长夜校（表单）", evening_api.SchoolEveningClassesHandler.openapi["post"], 303)
ROSTER_FORM = form_of("导入学生名单（表单）", organisation_api.RosterImportHandler.openapi["post"], 200)
# Whoever has a page here: the landing and password pages are theirs.
STAFF_PAGES = DISTRICT_PAGE.roles | SCHOOL_PAGE.roles
REQUIREMENT_FORM = form_of(
    "设置每学期夜校要求次数（表单）", evening_api.TermRequirementHandler.openapi["put"], 303
)


def may(
    principal: Principal, op: Operation, school: School | None = None, district: District | None = None
) -> bool:
    """Would the base let this principal carry out `op` here? (Whether to show its form at all.)"""
    if not principal.has_any(op.roles):
        return False
    if school is not None:
        return reaches_school(principal, school, op.roles)
    if district is not None:
        return bool(principal.district_roles(district.id) & op.roles)
    return True


def terms_around(now: datetime) -> list[str]:
    """The terms offered in the filter: this school year's and last year's, newest first."""
    year = int(term_of(now)[:4])
    return [f"{y}-{y + 1}-{n}" for y in (year, year - 1) for n in (2, 1)]


class ConsoleHandler(ApiHandler):
    """A console page: HTML answers (also for errors), the console's security headers, templates."""

    def _common_headers(self) -> None:
        super()._common_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    # Pages a session whose password must change may still open.
    allowed_before_password_change: ClassVar[bool] = False

    async def prepare(self) -> None:
        await super().prepare()
        caller = self.caller
        if (
            isinstance(caller, sessions.SessionCaller)
            and caller.password_change_required
            and not self.allowed_before_password_change
        ):
            if self.request.method == "GET":
                self.redirect(f"{CONSOLE}/password", status=303)
                return
            raise Forbidden("请先修改初始密码", code="password_change_required")

    @property
    def csrf_token(self) -> str:
        caller = self.caller
        return caller.csrf_token if isinstance(caller, sessions.SessionCaller) else ""

    def render_page(self, template: str, status: int = 200, **values: Any) -> None:
        me = self.caller.principal if self.caller is not None else None
        html = TEMPLATES.load(template).generate(
            me=me, csrf_token=values.pop("csrf_token", self.csrf_token), console=CONSOLE, **values
        )
        self.set_status(status)
        self.set_header("Content-Type", HTML)
        self.finish(html)

    def set_session_cookie(self, session_id: str) -> None:
        self.set_cookie(
            sessions.COOKIE,
            session_id,
            path=sessions.COOKIE_PATH,
            httponly=True,
            secure=self.deps.settings.app_env == "production",
            samesite="Lax",
        )

    def term_arg(self) -> str:
        term = self.get_query_argument("term", None) or term_of(self.deps.clock())
        if not valid_term(term):
            raise NotFound("学期格式应为 2025-2026-1")
        return term

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, Unauthenticated) and self.request.method == "GET":
            self.clear()
            self._common_headers()
            self.redirect(f"{CONSOLE}/login?{urlencode({'next': self.request.uri or CONSOLE + '/'})}")
            return
        if isinstance(exc, problems.HttpLevel):
            error: AppError = exc
            status = exc.status
        elif isinstance(exc, AppError):
            error, status = exc, problems.status_of(exc)
        elif isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            status = exc.status_code
            error = problems.HttpLevel(status, exc.reason or "请求有误")
        else:
            status = 500
            error = problems.Internal(f"服务器内部错误，请求编号 {self.request_id}")
        self.clear()
        self._common_headers()
        for name, value in problems.headers_of(error).items():
            self.set_header(name, value)
        try:
            me = self.caller.principal if self.caller is not None else None
        except Exception:
            me = None
        html = TEMPLATES.load("error.html").generate(
            me=me, csrf_token=self.csrf_token, console=CONSOLE, status=status, error=error
        )
        self.set_status(status)
        self.set_header("Content-Type", HTML)
        self.finish(html)


# ---- login, logout, landing -------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only a console path of ours (no //host, no scheme): an open redirect would serve phishing."""
    if target and target.startswith(CONSOLE + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return CONSOLE + "/"


class LoginHandler(ConsoleHandler):
    openapi: ClassVar = {
        "get": Operation("控制台登录页", auth=AuthMode.none, media_type="text/html"),
        "post": Operation(
            "控制台登录（用户名、密码；与 API 的密码登录同一校验和频率限制）",
            auth=AuthMode.none,
            media_type="text/html",
            status=303,
            errors=(401, 403, 429),
        ),
    }

    async def get(self) -> None:
        cookie = self.get_cookie(sessions.COOKIE)
        record = await sessions.load(self.deps, cookie)
        if record is not None and record.user_id is not None:
            self.redirect(_safe_next(self.get_query_argument("next", None)), status=303)
            return
        if record is None:
            cookie, record = await sessions.open_session(self.deps, None)
            self.set_session_cookie(cookie)
        self.render_page(
            "login.html",
            csrf_token=record.csrf_token,
            error=None,
            username="",
            next=_safe_next(self.get_query_argument("next", None)),
        )

    async def post(self) -> None:
        cookie = self.get_cookie(sessions.COOKIE)
        record = await sessions.load(self.deps, cookie)
        if record is None or not sessions.csrf_matches(
            record, self.get_body_argument(sessions.CSRF_FIELD, None)
        ):
            raise sessions.CsrfRefused()
        settings = self.deps.settings
        # The API's password-login bucket: one limit per address, whichever door is knocked on.
        await self.rate_limit(f"login-password:{self.client_ip}", settings.login_rate_per_minute)
        username = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        target = _safe_next(self.get_body_argument("next", None))
        try:
            async with self.transaction() as session:
                user = await auth.password_login(
                    session,
                    username,
                    password,
                    address=self.client_ip,
                    lockout=self.deps.lockout,
                    now=self.deps.clock(),
                )
        except (Unauthenticated, RateLimited) as exc:
            status = problems.status_of(exc)
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(exc.retry_after))
            self.render_page(
                "login.html",
                status=status,
                csrf_token=record.csrf_token,
                error=exc.detail,
                username=username,
                next=target,
            )
            return
        await sessions.end(self.deps, cookie)  # a new id at every login: a planted cookie gains nothing
        new_id, _ = await sessions.open_session(
            self.deps, user.id, password_change_required=user.password_change_required
        )
        self.set_session_cookie(new_id)
        self.redirect(f"{CONSOLE}/password" if user.password_change_required else target, status=303)


class LogoutHandler(ConsoleHandler):
    allowed_before_password_change = True
    openapi: ClassVar = {
        "post": Operation(
            "退出控制台", auth=AuthMode.session, media_type="text/html", status=303, errors=(401, 403)
        )
    }

    async def post(self) -> None:
        await sessions.end(self.deps, self.get_cookie(sessions.COOKIE))
        self.clear_cookie(sessions.COOKIE, path=sessions.COOKIE_PATH)
        self.redirect(f"{CONSOLE}/login", status=303)


class PasswordHandler(ConsoleHandler):
    """Change one's own password: required before anything else when someone else chose it. The
    session ends and a new one (new id) begins; every API login of the account ends too."""

    allowed_before_password_change = True
    openapi: ClassVar = {
        "get": Operation(
            "修改密码页",
            roles=STAFF_PAGES,
            auth=AuthMode.session,
            media_type="text/html",
            errors=(401, 403),
        ),
        "post": Operation(
            "修改密码（当前密码、新密码两次）",
            roles=STAFF_PAGES,
            auth=AuthMode.session,
            media_type="text/html",
            status=303,
            errors=(401, 403, 422),
        ),
    }

    async def get(self) -> None:
        self.render_page("password.html", error=None, required=self.password_change_required)

    @property
    def password_change_required(self) -> bool:
        caller = self.caller
        return isinstance(caller, sessions.SessionCaller) and caller.password_change_required

    async def post(self) -> None:
        current = self.get_body_argument("current", "")
        new = self.get_body_argument("new", "")
        if new != self.get_body_argument("repeat", ""):
            self.render_page(
                "password.html",
                status=422,
                error="两次输入的新密码不一致",
                required=self.password_change_required,
            )
            return
        try:
            async with self.transaction() as session:
                await auth.change_password(session, self.me.id, current, new, now=self.deps.clock())
        except ValidationFailed as exc:
            self.render_page(
                "password.html", status=422, error=exc.detail, required=self.password_change_required
            )
            return
        await sessions.end_all(self.deps, self.me.id)  # every browser signed in with the old password
        new_id, _ = await sessions.open_session(self.deps, self.me.id)
        self.set_session_cookie(new_id)
        self.redirect(f"{CONSOLE}/", status=303)


class HomeHandler(ConsoleHandler):
    """Where a signed-in staff member lands: their district's page, else their school's."""

    openapi: ClassVar = {
        "get": Operation(
            "控制台入口：转到我的首页",
            roles=STAFF_PAGES,
            auth=AuthMode.session,
            media_type="text/html",
            status=303,
            errors=(401, 403),
        )
    }

    async def get(self) -> None:
        me = self.me
        district = next((d for d in me.districts if set(d.roles) & DISTRICT_PAGE.roles), None)
        school = next((s for s in me.schools if set(s.roles) & SCHOOL_PAGE.roles), None)
        if district is not None:
            self.redirect(f"{CONSOLE}/districts/{district.id}", status=303)
        elif school is not None:
            self.redirect(f"{CONSOLE}/schools/{school.id}", status=303)
        else:  # the roles above reach a district or a school by construction (role_grant's check)
            raise NotFound("没有可用的管理页面")


# ---- district 首页 -----------------------------------------------------------------------------------
class DistrictHomeHandler(ConsoleHandler):
    openapi: ClassVar = {"get": DISTRICT_PAGE}

    async def get(self, district_id: str) -> None:
        term = self.term_arg()
        async with self.district_scope(district_id) as (session, district):
            figures = await exports.district_figures(session, district, term, self.deps.clock())
        chart = {
            "schools": [r.school_name for r in figures.rows],
            "held": [r.held for r in figures.rows],
            "required": figures.required,
            "completion": [r.completion_share for r in figures.rows],
        }
        self.render_page(
            "district.html",
            district=district,
            figures=figures,
            term=term,
            terms=terms_around(self.deps.clock()),
            chart_json=json.dumps(chart, ensure_ascii=False),
            may_set_requirement=may(self.me, REQUIREMENT_FORM, district=district),
            may_open_schools=may(self.me, SCHOOL_PAGE),
            done=self.get_query_argument("done", None),
        )


class DistrictXlsxHandler(ConsoleHandler):
    openapi: ClassVar = {
        "get": dataclasses.replace(DISTRICT_PAGE, summary="区县首页的表格（.xlsx）", media_type=XLSX)
    }

    async def get(self, district_id: str) -> None:
        term = self.term_arg()
        async with self.district_scope(district_id) as (session, district):
            figures = await exports.district_figures(session, district, term, self.deps.clock())
        filename = f"{district.name}-{term}-家长夜校与学时.xlsx"
        self.set_header("Content-Type", XLSX)
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(filename)}")
        self.finish(exports.district_workbook(district, figures))


class DistrictRequirementHandler(ConsoleHandler):
    openapi: ClassVar = {"post": REQUIREMENT_FORM}

    async def post(self, district_id: str, term: str) -> None:
        raw = self.get_body_argument("required", "").strip()
        async with self.district_scope(district_id) as (session, district):
            if not valid_term(term):
                raise NotFound("学期格式应为 2025-2026-1")
            if not raw.isdigit() or not 0 <= int(raw) <= 50:
                raise ValidationFailed("每学期要求次数应为 0 到 50 之间的整数")
            await term_counts.set_required_per_term(session, district.id, term, int(raw), self.me.id)
        self.redirect(
            f"{CONSOLE}/districts/{district_id}?{urlencode({'term': term, 'done': 'requirement'})}",
            status=303,
        )


# ---- school 首页 -------------------------------------------------------------------------------------
class _SchoolPage(ConsoleHandler):
    async def school_figures(self, session: AsyncSession, school: School, term: str) -> dict[str, Any]:
        now = self.deps.clock()
        required = await term_counts.required_per_term(session, school.district_id, term)
        [summary] = await term_counts.term_summaries(session, [school], term, now, required)
        return {
            "school": school,
            "term": term,
            "terms": terms_around(now),
            "summary": summary,
            "learning": await statistics.school_summary(session, school, term[:9]),
            "classes": await school_term_classes(session, self.me, school, term),
            "courses": await schedulable_courses(session, self.me, school),
            "may_schedule": may(self.me, SCHEDULE_FORM, school=school),
            "may_import": may(self.me, ROSTER_FORM, school=school),
            "shanghai": SHANGHAI,
            "schedule_error": None,
            "schedule_values": {},
            "roster_errors": [],
            "roster_detail": None,
            "roster_report": None,
            "done": self.get_query_argument("done", None),
        }

    async def render_after_form(self, school_id: str, status: int, **outcome: Any) -> None:
        """The school 首页 again with what a form did, read in a transaction of its own under the
        page's roles (the form's transaction may have rolled back). Only a read, so not the base's
        transaction: that one would write the form's audit event for a form that did nothing."""
        async with self.deps.db_gate, self.deps.sessions() as session, session.begin():
            school = await session.get(School, self.path_uuid(school_id))
            if school is None or not may(self.me, SCHOOL_PAGE, school=school):
                raise NotFound("学校不存在")
            values = await self.school_figures(session, school, term_of(self.deps.clock()))
        values.update(outcome)
        self.render_page("school.html", status=status, **values)


class SchoolHomeHandler(_SchoolPage):
    openapi: ClassVar = {"get": SCHOOL_PAGE}

    async def get(self, school_id: str) -> None:
        term = self.term_arg()
        async with self.school_scope(school_id) as (session, school):
            values = await self.school_figures(session, school, term)
        self.render_page("school.html", **values)


def _moment(day: str, at: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(at), SHANGHAI)


def evening_class_from_form(values: dict[str, str]) -> EveningClassIn:
    """The form's fields as the API's body: a date, two times (Asia/Shanghai), place, seats."""
    try:
        starts_at, ends_at = (
            _moment(values["date"], values["starts"]),
            _moment(values["date"], values["ends"]),
        )
        capacity = int(values["capacity"])
        course_id = uuid.UUID(values["course_id"])
    except (KeyError, ValueError) as exc:
        raise ValidationFailed("请填写课程、日期、开始和结束时间以及名额") from exc
    try:
        return EveningClassIn(
            course_id=course_id,
            title=values.get("title") or None,
            starts_at=starts_at,
            ends_at=ends_at,
            place=values.get("place") or None,
            capacity=capacity,
        )
    except ValueError as exc:  # pydantic's ValidationError
        raise ValidationFailed("请检查：结束时间须晚于开始时间，地点必填，名额 1–5000") from exc


class SchoolEveningClassFormHandler(_SchoolPage):
    openapi: ClassVar = {"post": SCHEDULE_FORM}

    FIELDS: ClassVar = ("course_id", "title", "date", "starts", "ends", "place", "capacity")

    async def post(self, school_id: str) -> None:
        values = {f: self.get_body_argument(f, "").strip() for f in self.FIELDS}
        try:
            data = evening_class_from_form(values)
            async with self.school_scope(school_id) as (session, school):
                await scheduling.schedule(session, self.me, school, data, self.deps.clock())
        except (ValidationFailed, NotFound) as exc:
            await self.render_after_form(school_id, 422, schedule_error=exc.detail, schedule_values=values)
            return
        query = urlencode({"term": term_of(data.starts_at), "done": "scheduled"})
        self.redirect(f"{CONSOLE}/schools/{school_id}?{query}", status=303)


def _roster_media_type(filename: str, declared: str) -> str:
    lowered = filename.lower()
    if lowered.endswith(".csv"):
        return "text/csv"
    if lowered.endswith(".xlsx"):
        return XLSX
    return declared


class SchoolRosterFormHandler(_SchoolPage):
    """The page's upload form is read whole, like any form (MAX_BODY_BYTES, 1 MiB: a roster of a few
    thousand students); a larger file goes through the streamed API route."""

    openapi: ClassVar = {"post": ROSTER_FORM}

    async def post(self, school_id: str) -> None:
        files = self.request.files.get("roster") or []
        try:
            async with self.school_scope(school_id) as (session, school):
                if not files or not files[0].body:
                    raise ValidationFailed("请选择要导入的名单文件（.csv 或 .xlsx）")
                upload = files[0]
                parsed = await roster.parse_upload(
                    upload.body,
                    _roster_media_type(upload.filename, upload.content_type),
                    max_rows=self.deps.settings.roster_max_rows,
                )
                report = await roster.import_roster(session, school, parsed, self.me.id)
        except (ValidationFailed, UnsupportedMediaType) as exc:
            await self.render_after_form(
                school_id, 422, roster_detail=exc.detail, roster_errors=_row_errors(exc.errors)
            )
            return
        await self.render_after_form(school_id, 200, roster_report=report)


def _row_errors(errors: Iterable[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Each rejected row with its column named as the file's header names it (学号, not student_no)."""
    labels = {c.field: c.label for c in roster.COLUMNS}
    return [
        {**e, "field": labels.get(e.get("field", ""), e.get("field", ""))} for e in errors or [] if "row" in e
    ]


# The API's operation from a console session: its roles, record scope and audit action.
SIGN_IN_SHEET = dataclasses.replace(
    form_of("家长夜校签到表（PDF）", sheets.SignInSheetHandler.openapi["get"], 200),
    media_type="application/pdf",
)


class SignInSheetHandler(ConsoleHandler):
    """The API's sign-in sheet from a console session (the school page links each class to it)."""

    openapi: ClassVar = {"get": SIGN_IN_SHEET}

    async def get(self, class_id: str) -> None:
        async with self.transaction() as session:
            evening_class, school, listed, names = await sheet_data(
                session, self.me, self.path_uuid(class_id)
            )
        self.set_header("Content-Type", "application/pdf")
        self.set_header(
            "Content-Disposition", f"inline; filename*=UTF-8''{quote(f'签到表-{evening_class.title}.pdf')}"
        )
        self.finish(render_sign_in_sheet(evening_class, school, listed, names))


ROSTER_TEMPLATE = dataclasses.replace(
    ROSTER_FORM, summary="学生名单导入模板（.xlsx）", audit=None, media_type=XLSX, status=200
)


class RosterTemplateHandler(ConsoleHandler):
    openapi: ClassVar = {"get": ROSTER_TEMPLATE}

    async def get(self, school_id: str) -> None:
        async with self.school_scope(school_id):
            pass  # the template is the same for every school; the check keeps the route's rule
        self.set_header("Content-Type", XLSX)
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote('学生名单模板.xlsx')}")
        self.finish(exports.roster_template())


# The check-in screen: the API's rotating check-in code (same roles and record scope) on the hall's
# projector, with the count of check-ins as they arrive.
CHECKIN_SCREEN = form_of("签到大屏", evening_api.CheckinCodeHandler.openapi["get"], 200)
CHECKIN_STATE = dataclasses.replace(
    CHECKIN_SCREEN,
    summary="签到大屏的二维码与签到人数（每秒刷新）",
    media_type="application/json",
    errors=(401, 403, 404, 409),
)
CHECKIN_POLL_MS = 1000  # check-ins appear within a second or two


class CheckinScreenHandler(ConsoleHandler):
    openapi: ClassVar = {"get": CHECKIN_SCREEN}

    async def get(self, class_id: str) -> None:
        async with self.transaction() as session:
            found = await visibility.staff_class(session, self.me, self.path_uuid(class_id))
        self.render_page("checkin.html", evening_class=found, shanghai=SHANGHAI, poll_ms=CHECKIN_POLL_MS)


class CheckinStateHandler(ConsoleHandler):
    """What the check-in screen polls: the current code as a QR image, when it changes, the count."""

    openapi: ClassVar = {"get": CHECKIN_STATE}

    async def get(self, class_id: str) -> None:
        now = self.deps.clock()
        async with self.transaction() as session:
            found = await visibility.staff_class(session, self.me, self.path_uuid(class_id))
            if not checkin_open(found.starts_at, found.ends_at, now):
                raise errors.CheckinClosed("签到在开课前 30 分钟开放，下课后 30 分钟关闭")
            listed = await attendance.roster(session, self.me, found.id)
        token, next_at = checkin_token(evening_api.checkin_key(self.deps.settings), str(found.id), now)
        qr = segno.make(token, error="m").svg_data_uri(scale=10, border=2)
        self.send(
            {
                "token": token,
                "qr": qr,
                "next_token_at": next_at.isoformat(),
                "present": listed.present,
                "confirmed": listed.confirmed,
            }
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        ApiHandler.write_error(self, status_code, **kwargs)  # the script reads problem+json


CONSOLE_ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (f"{CONSOLE}/login", LoginHandler),
    (f"{CONSOLE}/logout", LogoutHandler),
    (f"{CONSOLE}/password", PasswordHandler),
    (f"{CONSOLE}/", HomeHandler),
    (f"{CONSOLE}/districts/{{district_id}}", DistrictHomeHandler),
    (f"{CONSOLE}/districts/{{district_id}}/summary.xlsx", DistrictXlsxHandler),
    (f"{CONSOLE}/districts/{{district_id}}/terms/{{term}}/requirement", DistrictRequirementHandler),
    (f"{CONSOLE}/schools/{{school_id}}", SchoolHomeHandler),
    (f"{CONSOLE}/schools/{{school_id}}/evening-classes", SchoolEveningClassFormHandler),
    (f"{CONSOLE}/schools/{{school_id}}/roster-imports", SchoolRosterFormHandler),
    (f"{CONSOLE}/schools/{{school_id}}/roster-template.xlsx", RosterTemplateHandler),
    (f"{CONSOLE}/evening-classes/{{class_id}}/sign-in-sheet.pdf", SignInSheetHandler),
    (f"{CONSOLE}/evening-classes/{{class_id}}/checkin", CheckinScreenHandler),
    (f"{CONSOLE}/evening-classes/{{class_id}}/checkin/state", CheckinStateHandler),
]
