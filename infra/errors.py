"""The one error type every layer raises. It says what went wrong (its class and stable `code`), never how
HTTP spells it: handlers/problems.py maps each kind to a status and renders RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    code: str = "bad_request"
    title: str = "请求有误"
    # Most errors roll the transaction back; a few (a failed-login counter, a revoked token family)
    # are consequences that must be committed before the error reaches the client.
    keeps_writes: bool = False
    # Seconds after which trying again may succeed (rate limits, a dependency that is down).
    retry_after: int | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.detail = detail or self.title
        if code:
            self.code = code
        if title:
            self.title = title
        self.errors = errors
        super().__init__(self.detail)


class BadRequest(AppError):
    """The request cannot be read at all (not JSON, nested beyond reason)."""


class Unauthenticated(AppError):
    code, title = "unauthenticated", "请先登录"


class Forbidden(AppError):
    code, title = "forbidden", "无权执行此操作"


class NotFound(AppError):
    code, title = "not_found", "未找到"


class Conflict(AppError):
    code, title = "conflict", "操作冲突"


class PreconditionFailed(AppError):
    code, title = "precondition_failed", "记录已被他人修改，请刷新后重试"


class PreconditionRequired(AppError):
    code, title = "precondition_required", "修改前请带上 If-Match（记录的 ETag），以免覆盖他人的修改"


class PayloadTooLarge(AppError):
    code, title = "payload_too_large", "请求内容过大"


class LengthRequired(AppError):
    """An upload without a Content-Length: its size could not be checked before reading it."""

    code, title = "length_required", "上传文件时请提供 Content-Length"


class UnsupportedMediaType(AppError):
    code, title = "unsupported_media_type", "不支持的内容类型"


class ValidationFailed(AppError):
    code, title = "validation_error", "提交的内容不符合要求"


class UpstreamFailed(AppError):
    """A service we call (WeChat) answered with an error of its own."""

    code, title = "upstream_error", "外部服务返回错误"


class RateLimited(AppError):
    code, title = "rate_limited", "请求过于频繁，请稍后再试"

    def __init__(self, retry_after: int, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(AppError):
    code, title = "service_unavailable", "服务暂时不可用，请稍后再试"
    retry_after = 2
