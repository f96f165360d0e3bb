"""The errors of evening classes, each with the code the API answers."""

from __future__ import annotations

from infra.errors import Conflict, NotFound, ValidationFailed


class SignupClosed(Conflict):
    code, title = "signup_closed", "不在报名时间内"


class AlreadySignedUp(Conflict):
    code, title = "already_signed_up", "已经报过名了"


class NotSignedUp(NotFound):
    code, title = "not_signed_up", "没有报名这节课"


class CancelClosed(Conflict):
    code, title = "cancel_closed", "已过取消报名的截止时间"


class CheckinClosed(Conflict):
    code, title = "checkin_closed", "现在不是签到时间"


class CheckinTokenExpired(Conflict):
    code, title = "checkin_token_expired", "签到码已过期，请重新扫描老师屏幕上的二维码"


class CheckinTokenInvalid(ValidationFailed):
    code, title = "invalid_checkin_token", "签到码无效"


class NotConfirmed(Conflict):
    code, title = "not_confirmed", "候补中的家长不能扫码签到，请联系老师"


class ClassCancelled(Conflict):
    code, title = "class_cancelled", "这节课已取消"
