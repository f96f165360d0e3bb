"""Errors as HTTP answers: each kind of `AppError` has its status, and every answer that is not a success
is RFC 9457 `application/problem+json` with a stable `code` and a Chinese title."""

from __future__ import annotations

from typing import Any

from infra.errors import (
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    LengthRequired,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PreconditionRequired,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamFailed,
    ValidationFailed,
)

PROBLEM_JSON = "application/problem+json"

STATUS_OF_KIND: dict[type[AppError], int] = {
    AppError: 400,
    BadRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    LengthRequired: 411,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    PreconditionRequired: 428,
    RateLimited: 429,
    UpstreamFailed: 502,
    ServiceUnavailable: 503,
}

# Answers the HTTP layer gives for requests that never reach a handler's verb.
CODE_OF_STATUS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def status_of(error: AppError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_OF_KIND:
            return STATUS_OF_KIND[kind]
    return 400


def problem(error: AppError, status: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://errors.parent-school.cn/{error.code}",
        "title": error.title,
        "status": status,
        "detail": error.detail,
        "code": error.code,
    }
    if error.errors is not None:
        body["errors"] = error.errors
    return body


def headers_of(error: AppError) -> dict[str, str]:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
    if isinstance(error, HttpLevel) and error.allow:
        headers["Allow"] = ", ".join(error.allow)
    return headers


class Internal(AppError):
    code, title = "internal_error", "服务器内部错误"


class HttpLevel(AppError):
    """An answer Tornado gave on its own (405, a malformed request line): rendered like every other."""

    def __init__(self, status: int, reason: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(reason, code=CODE_OF_STATUS.get(status, f"http_{status}"), title=reason)
        self.status = status
        self.allow = allow  # a 405 names the methods the resource has (RFC 9110)
