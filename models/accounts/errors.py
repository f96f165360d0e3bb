"""Errors of the accounts area, with their stable codes."""

from __future__ import annotations

from infra.errors import AppError, Conflict, NotFound, RateLimited, Unauthenticated, ValidationFailed


class InvalidCredentials(Unauthenticated):
    code, title = "invalid_credentials", "用户名或密码错误"
    keeps_writes = True  # the failed-attempt counter must persist


class AccountLocked(RateLimited):
    code, title = "account_locked", "登录失败次数过多，账号已暂时锁定"


class InvalidRefreshToken(Unauthenticated):
    code, title = "invalid_refresh_token", "登录已失效，请重新登录"


class RefreshTokenReused(Unauthenticated):
    code, title = "refresh_token_reused", "登录凭证被重复使用，已退出所有相关登录"
    keeps_writes = True  # the family revocation must persist

    def __init__(self, family_id: str) -> None:
        super().__init__()
        self.family_id = family_id


class BindingCodeInvalid(NotFound):
    code, title = "binding_code_invalid", "绑定码无效或已过期"


class AlreadyBound(Conflict):
    code, title = "already_bound", "已经绑定过"


class ConsentRequired(ValidationFailed):
    code, title = "consent_required", "绑定孩子前需要监护人同意隐私政策"


class DuplicateName(Conflict):
    code, title = "duplicate", "名称或编号已存在"


class RosterInvalid(ValidationFailed):
    code, title = "roster_invalid", "名单中有错误，未导入任何数据"


__all__ = [
    "AccountLocked",
    "AlreadyBound",
    "AppError",
    "BindingCodeInvalid",
    "ConsentRequired",
    "DuplicateName",
    "InvalidCredentials",
    "InvalidRefreshToken",
    "RefreshTokenReused",
    "RosterInvalid",
]
