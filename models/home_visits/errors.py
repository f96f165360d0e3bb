"""Errors of the home-visit area (kinds from infra.errors, with stable codes and Chinese details)."""

from __future__ import annotations

from infra.errors import Conflict, NotFound, ValidationFailed


class VisitNotFound(NotFound):
    code, title = "home_visit_not_found", "家访记录不存在"


class StudentNotFound(NotFound):
    code, title = "student_not_found", "学生不存在"


class FollowupNotFound(NotFound):
    code, title = "followup_not_found", "跟进事项不存在"


class IllegalTransition(Conflict):
    code, title = "illegal_transition", "跟进事项当前状态不允许此操作"


class VisitAlreadySubmitted(Conflict):
    code, title = "visit_submitted", "家访记录已提交，不能改回草稿或修改三带回事项（请在跟进中处理）"


def invalid(field: str, message: str, code: str = "validation_error") -> ValidationFailed:
    return ValidationFailed(message, code=code, errors=[{"loc": ["body", field], "msg": message}])
