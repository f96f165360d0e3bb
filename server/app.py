"""make_app(deps): the route table in one place; make_metrics_app(exporter): the metrics listener's."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import tornado.web
from tornado.httputil import HTTPServerRequest
from tornado.routing import PathMatches, Rule

from handlers import (
    auth,
    bindings,
    courses,
    evening_classes,
    followups,
    home_visits,
    learning,
    notifications,
    organisation,
    sheets,
    statistics,
    surveys,
    system,
)
from handlers.base import ApiHandler, BodyTooLargeHandler, NotFoundHandler
from handlers.console import pages as console
from handlers.deps import Deps
from handlers.metrics import Exporter, MetricsHandler
from handlers.policy import Scope
from infra import metrics
from server.openapi import build_openapi

access_log = logging.getLogger("access")

API = "/api/v1"

ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (f"{API}/auth/wechat-login", auth.WechatLoginHandler),
    (f"{API}/auth/password-login", auth.PasswordLoginHandler),
    (f"{API}/auth/refresh", auth.RefreshHandler),
    (f"{API}/auth/logout", auth.LogoutHandler),
    (f"{API}/me", auth.MeHandler),
    (f"{API}/bindings", bindings.BindingsHandler),
    (f"{API}/districts/{{district_id}}/schools", organisation.DistrictSchoolsHandler),
    (f"{API}/districts/{{district_id}}/staff-accounts", organisation.StaffAccountsHandler),
    (f"{API}/schools/{{school_id}}", organisation.SchoolHandler),
    (f"{API}/schools/{{school_id}}/classrooms", organisation.ClassroomsHandler),
    (
        f"{API}/schools/{{school_id}}/classrooms/{{classroom_id}}/guardian-codes",
        organisation.GuardianCodesHandler,
    ),
    (f"{API}/schools/{{school_id}}/students", organisation.StudentsHandler),
    (f"{API}/schools/{{school_id}}/students/{{student_id}}/guardians", organisation.GuardiansHandler),
    (f"{API}/schools/{{school_id}}/roster-imports", organisation.RosterImportHandler),
    (f"{API}/schools/{{school_id}}/teachers", organisation.TeachersHandler),
    (f"{API}/schools/{{school_id}}/teachers/{{teacher_id}}/binding-code", organisation.TeacherCodeHandler),
    (f"{API}/courses", courses.CoursesHandler),
    (f"{API}/courses/{{course_id}}", courses.CourseHandler),
    (f"{API}/districts/{{district_id}}/courses", courses.DistrictCoursesHandler),
    (f"{API}/schools/{{school_id}}/courses", courses.SchoolCoursesHandler),
    (f"{API}/schools/{{school_id}}/course-assignments", courses.CourseAssignmentsHandler),
    (f"{API}/lessons/{{course_id}}/progress", learning.LessonProgressHandler),
    (f"{API}/me/learning", learning.MyLearningHandler),
    (f"{API}/me/certificates", learning.MyCertificatesHandler),
    (f"{API}/me/certificates/{{certificate_id}}/pdf", learning.MyCertificatePdfHandler),
    (f"{API}/me/subscriptions", notifications.MySubscriptionsHandler),
    (f"{API}/districts/{{district_id}}/requirements/{{school_year}}", learning.RequirementsHandler),
    (f"{API}/schools/{{school_id}}/hour-adjustments", learning.HourAdjustmentsHandler),
    (f"{API}/schools/{{school_id}}/learning/summary", statistics.SchoolLearningSummaryHandler),
    (f"{API}/schools/{{school_id}}/learning/summary.xlsx", statistics.SchoolLearningSummaryXlsxHandler),
    (f"{API}/districts/{{district_id}}/learning/summary", statistics.DistrictLearningSummaryHandler),
    (f"{API}/districts/{{district_id}}/learning/summary.xlsx", statistics.DistrictLearningSummaryXlsxHandler),
    (f"{API}/districts/{{district_id}}/catalogue/summary", statistics.CatalogueSummaryHandler),
    (f"{API}/districts/{{district_id}}/catalogue/summary.xlsx", statistics.CatalogueSummaryXlsxHandler),
    (f"{API}/schools/{{school_id}}/evening-classes", evening_classes.SchoolEveningClassesHandler),
    (f"{API}/evening-classes", evening_classes.EveningClassesHandler),
    (f"{API}/evening-classes/{{class_id}}", evening_classes.EveningClassHandler),
    (f"{API}/evening-classes/{{class_id}}/signups", evening_classes.SignupsHandler),
    (f"{API}/evening-classes/{{class_id}}/signups/me", evening_classes.MySignupHandler),
    (f"{API}/evening-classes/{{class_id}}/checkin-code", evening_classes.CheckinCodeHandler),
    (f"{API}/evening-classes/{{class_id}}/checkins", evening_classes.CheckinsHandler),
    (f"{API}/evening-classes/{{class_id}}/roster", evening_classes.RosterHandler),
    (f"{API}/evening-classes/{{class_id}}/sign-in-sheet.pdf", sheets.SignInSheetHandler),
    (f"{API}/evening-classes/{{class_id}}/attendance/{{parent_id}}", evening_classes.RosterAttendanceHandler),
    (
        f"{API}/schools/{{school_id}}/terms/{{term}}/evening-classes/summary",
        evening_classes.SchoolTermSummaryHandler,
    ),
    (
        f"{API}/schools/{{school_id}}/terms/{{term}}/evening-classes/summary.xlsx",
        evening_classes.SchoolTermSummaryXlsxHandler,
    ),
    (
        f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/summary",
        evening_classes.DistrictTermSummaryHandler,
    ),
    (
        f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/summary.xlsx",
        evening_classes.DistrictTermSummaryXlsxHandler,
    ),
    (
        f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/requirement",
        evening_classes.TermRequirementHandler,
    ),
    (f"{API}/districts/{{district_id}}/surveys", surveys.DistrictSurveysHandler),
    (f"{API}/districts/{{district_id}}/satisfaction", surveys.DistrictSatisfactionHandler),
    (f"{API}/surveys/{{survey_id}}", surveys.SurveyHandler),
    (f"{API}/surveys/{{survey_id}}/publish", surveys.PublishHandler),
    (f"{API}/surveys/{{survey_id}}/close", surveys.CloseHandler),
    (f"{API}/surveys/{{survey_id}}/response-rates", surveys.ResponseRatesHandler),
    (f"{API}/surveys/{{survey_id}}/results", surveys.ResultsHandler),
    (f"{API}/surveys/{{survey_id}}/results.xlsx", surveys.ResultsWorkbookHandler),
    (f"{API}/surveys/{{survey_id}}/results.csv", surveys.ResultsCsvHandler),
    (f"{API}/surveys/{{survey_id}}/responses", surveys.ResponsesHandler),
    (f"{API}/surveys/{{survey_id}}/texts", surveys.HeldTextsHandler),
    (f"{API}/surveys/{{survey_id}}/texts/{{text_id}}", surveys.HeldTextHandler),
    (f"{API}/me/surveys", surveys.MySurveysHandler),
    (f"{API}/me/home-visits/todo", home_visits.MyTodoHandler),
    (f"{API}/home-visits", home_visits.HomeVisitsHandler),
    (f"{API}/home-visits/{{visit_id}}", home_visits.HomeVisitHandler),
    (f"{API}/home-visits/{{visit_id}}/photos", home_visits.VisitPhotosHandler),
    (f"{API}/home-visits/{{visit_id}}/photos/{{photo_id}}", home_visits.VisitPhotoHandler),
    (f"{API}/students/{{student_id}}/home-visits", home_visits.StudentHomeVisitsHandler),
    (f"{API}/schools/{{school_id}}/home-visit-assignments", home_visits.VisitAssignmentsHandler),
    (f"{API}/schools/{{school_id}}/home-visits/summary", home_visits.SchoolVisitSummaryHandler),
    (f"{API}/districts/{{district_id}}/home-visits/summary", home_visits.DistrictVisitSummaryHandler),
    (
        f"{API}/districts/{{district_id}}/home-visits/summary.xlsx",
        home_visits.DistrictVisitSummaryXlsxHandler,
    ),
    (f"{API}/schools/{{school_id}}/audit-log", home_visits.SchoolAuditLogHandler),
    (f"{API}/schools/{{school_id}}/followups", followups.SchoolFollowupsHandler),
    (f"{API}/me/followups", followups.MyFollowupsHandler),
    (f"{API}/followups/{{followup_id}}/answer", followups.FollowupAnswerHandler),
    (f"{API}/followups/{{followup_id}}/assign", followups.FollowupAssignHandler),
    (f"{API}/followups/{{followup_id}}/escalate", followups.FollowupEscalateHandler),
    (f"{API}/followups/{{followup_id}}/confirm", followups.FollowupConfirmHandler),
    (f"{API}/followups/{{followup_id}}/reopen", followups.FollowupReopenHandler),
]

UNDOCUMENTED: list[tuple[str, type[ApiHandler]]] = [
    ("/healthz", system.HealthHandler),
    ("/readyz", system.ReadyHandler),
    (f"{API}/openapi.json", system.OpenApiHandler),
]


def _pattern(path: str) -> str:
    return "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"


# What a request is counted and logged under: its route's template, never the path with its ids.
ROUTE_TEMPLATES: dict[type[tornado.web.RequestHandler], str] = {
    handler: path for path, handler in ROUTES + UNDOCUMENTED
}
assert len(ROUTE_TEMPLATES) == len(ROUTES) + len(UNDOCUMENTED), "a handler class serves one route"


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Called once per finished request: counts it for /metrics, and logs it (failures; every request
    at DEBUG)."""
    status = handler.get_status()
    seconds = handler.request.request_time()
    route = ROUTE_TEMPLATES.get(type(handler), metrics.UNMATCHED_ROUTE)
    method = handler.request.method or "-"
    code: str | None = getattr(handler, "error_code", None)
    metrics.requests.observe(route, method, status, seconds, code)
    level = logging.ERROR if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
    if not access_log.isEnabledFor(level):
        return
    request_id = getattr(handler, "request_id", "") or "-"
    uid = getattr(handler, "recorded_user_id", None)  # nobody, where the Operation forbids it
    duration_ms = round(1000.0 * seconds, 1)
    fields = {
        "request_id": request_id,
        "method": method,
        "route": route,
        "path": handler.request.path,
        "status": status,
        "duration_ms": duration_ms,
        "uid": uid,
        "code": code,
    }
    access_log.log(
        level,
        "%s %s %d %.1fms rid=%s uid=%s",
        method,
        handler.request.path,
        status,
        duration_ms,
        request_id,
        uid or "-",
        extra=fields,
    )


def _grouped(routes: list[tuple[str, type[ApiHandler]]], args: dict[str, Deps]) -> list[Rule]:
    """The routes in groups by their first segment (/api/v1/schools/...; /healthz): Tornado tries rules
    one by one, and a request then tries the groups and its group's few rules instead of every rule
    (through the flat list, routing took 5% of a sign-up's CPU)."""
    groups: dict[str, list[tuple[str, type[ApiHandler], dict[str, Deps]]]] = {}
    for path, handler in routes:
        rest = path.removeprefix(API)
        group = path[: len(path) - len(rest)] + "/" + rest.split("/")[1]
        groups.setdefault(group, []).append((_pattern(path), handler, args))
    return [Rule(PathMatches(re.escape(group) + "(?:/.*)?$"), rules) for group, rules in groups.items()]


def check_declarations(routes: list[tuple[str, type[ApiHandler]]]) -> None:
    """Each Operation's scope names what its path holds: a route cannot claim a school scope it never
    checks, nor take an id that no scope covers."""
    for path, handler in routes:
        ids = set(re.findall(r"{(\w+)}", path))
        for verb, op in handler.openapi.items():
            where = f"{verb.upper()} {path}"
            if (op.scope is Scope.school) != ("school_id" in ids):
                raise ValueError(f"{where}: scope {op.scope} but path ids {sorted(ids)}")
            if op.scope is Scope.district and "district_id" not in ids:
                raise ValueError(f"{where}: scope district without {{district_id}}")
            if op.scope is Scope.none and ids:
                raise ValueError(f"{where}: ids {sorted(ids)} in the path but no scope checks them")
            if op.scope is Scope.family and not path.startswith(f"{API}/me/"):
                raise ValueError(f"{where}: a family scope lives under /me/")


class Application(tornado.web.Application):
    """Refuses a body by its Content-Length, before reading it: a request declaring more than its route
    takes is handed to BodyTooLargeHandler, which answers 413 from the headers alone. (Otherwise Tornado
    reads the whole body, up to the server's max_body_size, before any handler can look at it.)"""

    def __init__(self, deps: Deps, rules: list[Rule], **settings: Any) -> None:
        super().__init__(rules, **settings)
        self.deps = deps

    def get_handler_delegate(
        self,
        request: HTTPServerRequest,
        target_class: type[tornado.web.RequestHandler],
        target_kwargs: dict[str, Any] | None = None,
        path_args: list[bytes] | None = None,
        path_kwargs: dict[str, bytes] | None = None,
    ) -> Any:
        settings = self.deps.settings
        if issubclass(target_class, ApiHandler) and target_class.declares_too_much(request, settings):
            limit = target_class.body_limit(settings)
            target_class, target_kwargs = BodyTooLargeHandler, {"deps": self.deps, "limit": limit}
        return super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)


# The web console's pages (HTML, session cookie): not in the OpenAPI document, same checks.
CONSOLE_ROUTES = console.CONSOLE_ROUTES


def _console_files() -> list[Rule]:
    """The console's vendored scripts and styles, and /console → /console/."""
    return [
        Rule(
            PathMatches(r"/console/static/(.*)"),
            tornado.web.StaticFileHandler,
            {"path": str(console.STATIC_PATH)},
        ),
        Rule(PathMatches(r"/console$"), tornado.web.RedirectHandler, {"url": "/console/"}),
    ]


def make_app(deps: Deps) -> tornado.web.Application:
    check_declarations(ROUTES + CONSOLE_ROUTES)
    system.OpenApiHandler.document = orjson.dumps(build_openapi(ROUTES))
    args = {"deps": deps}
    rules = _console_files() + _grouped(ROUTES + CONSOLE_ROUTES + UNDOCUMENTED, args)
    return Application(
        deps,
        rules,
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=_log_request,
        compress_response=False,
    )


def _log_scrape(handler: tornado.web.RequestHandler) -> None:
    if handler.get_status() >= 500:
        access_log.error("metrics listener: %s %d", handler.request.path, handler.get_status())


def make_metrics_app(exporter: Exporter) -> tornado.web.Application:
    """The metrics listener: GET /metrics and nothing else (its requests are not counted themselves)."""
    return tornado.web.Application(
        [("/metrics", MetricsHandler, {"exporter": exporter})],
        log_function=_log_scrape,
        compress_response=False,
    )
