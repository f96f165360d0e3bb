"""make_app(deps): the route table in one place."""

from __future__ import annotations

import logging
import re

import orjson
import tornado.web
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
    statistics,
    system,
)
from handlers.base import ApiHandler, NotFoundHandler
from handlers.deps import Deps
from handlers.policy import Scope
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
    (f"{API}/districts/{{district_id}}/learning/summary", statistics.DistrictLearningSummaryHandler),
    (f"{API}/districts/{{district_id}}/catalogue/summary", statistics.CatalogueSummaryHandler),
    (f"{API}/schools/{{school_id}}/evening-classes", evening_classes.SchoolEveningClassesHandler),
    (f"{API}/evening-classes", evening_classes.EveningClassesHandler),
    (f"{API}/evening-classes/{{class_id}}", evening_classes.EveningClassHandler),
    (f"{API}/evening-classes/{{class_id}}/signups", evening_classes.SignupsHandler),
    (f"{API}/evening-classes/{{class_id}}/signups/me", evening_classes.MySignupHandler),
    (f"{API}/evening-classes/{{class_id}}/checkin-code", evening_classes.CheckinCodeHandler),
    (f"{API}/evening-classes/{{class_id}}/checkins", evening_classes.CheckinsHandler),
    (f"{API}/evening-classes/{{class_id}}/roster", evening_classes.RosterHandler),
    (f"{API}/evening-classes/{{class_id}}/attendance/{{parent_id}}", evening_classes.RosterAttendanceHandler),
    (
        f"{API}/schools/{{school_id}}/terms/{{term}}/evening-classes/summary",
        evening_classes.SchoolTermSummaryHandler,
    ),
    (
        f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/summary",
        evening_classes.DistrictTermSummaryHandler,
    ),
    (
        f"{API}/districts/{{district_id}}/terms/{{term}}/evening-classes/requirement",
        evening_classes.TermRequirementHandler,
    ),
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
    return "^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", path) + "$"


def _log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    fields = (
        handler.request.method,
        handler.request.path,
        status,
        1000.0 * handler.request.request_time(),
        getattr(handler, "request_id", "-"),
        getattr(handler, "recorded_user_id", None) or "-",
    )
    if status >= 500:
        access_log.error("%s %s %d %.1fms rid=%s uid=%s", *fields)
    elif status >= 400:
        access_log.info("%s %s %d %.1fms rid=%s uid=%s", *fields)
    elif access_log.isEnabledFor(logging.DEBUG):
        access_log.debug("%s %s %d %.1fms rid=%s uid=%s", *fields)


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


def make_app(deps: Deps) -> tornado.web.Application:
    check_declarations(ROUTES)
    system.OpenApiHandler.document = orjson.dumps(build_openapi(ROUTES))
    args = {"deps": deps}
    rules = _grouped(ROUTES + UNDOCUMENTED, args)
    return tornado.web.Application(
        rules,
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=_log_request,
        compress_response=False,
    )
