"""Keyset pagination: `?limit=` (1–100, default 20) and an opaque `?cursor=`."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from infra.errors import ValidationFailed

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Our cursors are a few values (a time, a name, an id): anything much longer was not made by us.
MAX_CURSOR_LENGTH = 512


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def _encode(values: Sequence[Any]) -> str:
    plain = [
        str(v) if isinstance(v, uuid.UUID) else v.isoformat() if isinstance(v, date) else v for v in values
    ]
    return base64.urlsafe_b64encode(orjson.dumps(plain)).decode().rstrip("=")


def _decode(cursor: str, width: int) -> list[Any]:
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # orjson refuses nesting past 1024 levels with a JSONDecodeError (the standard library's parser
        # raised RecursionError, a 500); a list of scalars is all a cursor of ours holds.
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except ValueError as exc:
        raise _invalid_cursor() from exc
    if not isinstance(values, list) or len(values) != width:
        raise _invalid_cursor()
    if any(isinstance(v, (list, dict)) for v in values):
        raise _invalid_cursor()
    return values


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed("cursor 无效", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}])


def _typed(value: Any, column: InstrumentedAttribute[Any]) -> Any:
    """A cursor value as its column's Python type; a forged cursor must be a 422, not a database error."""
    if isinstance(value, str) and "\x00" in value:
        raise _invalid_cursor()
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return value
    if kind is uuid.UUID and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError as exc:
            raise _invalid_cursor() from exc
    if issubclass(kind, (datetime, date)) and isinstance(value, str):
        try:
            return kind.fromisoformat(value)
        except ValueError as exc:
            raise _invalid_cursor() from exc
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise _invalid_cursor()
    return value


async def keyset_page(
    session: AsyncSession,
    stmt: Select[Any],
    order_by: Sequence[InstrumentedAttribute[Any]],
    page: PageQuery,
) -> tuple[list[Any], str | None]:
    """Run `stmt` ordered by `order_by` (ascending, unique in combination) from the cursor on."""
    if page.cursor:
        values = _decode(page.cursor, len(order_by))
        bound = [literal(_typed(v, col), type_=col.type) for v, col in zip(values, order_by, strict=True)]
        stmt = stmt.where(tuple_(*order_by) > tuple_(*bound))
    rows = list((await session.execute(stmt.order_by(*order_by).limit(page.limit + 1))).scalars())
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]
    return rows, _encode([getattr(last, col.key) for col in order_by])
