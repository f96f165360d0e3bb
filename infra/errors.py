"""The one error type every layer raises; ApiHandler renders it as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "请求有误"
    # Most errors roll the transaction back; a few (a failed-login counter, a revoked token family)
    # are consequences that must be committed before the error reaches the client.
    keeps_writes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.title
        if code:
            self.code = code
        if status:
            self.status = status
        if title:
            self.title = title
        self.errors = errors
        self.headers = headers or {}
        super().__init__(self.detail)

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://errors.parent-school.cn/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class Unauthenticated(AppError):
    status, code, title = 401, "unauthenticated", "请先登录"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "无权执行此操作"


class NotFound(AppError):
    status, code, title = 404, "not_found", "未找到"


class Conflict(AppError):
    status, code, title = 409, "conflict", "操作冲突"


class PreconditionFailed(AppError):
    status, code, title = 412, "precondition_failed", "记录已被他人修改，请刷新后重试"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "请求内容过大"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "不支持的内容类型"


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "提交的内容不符合要求"


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "请求过于频繁，请稍后再试"

    def __init__(self, retry_after: int, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "服务暂时不可用，请稍后再试"
