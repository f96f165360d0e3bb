"""Every validation error a user can cause reads in Chinese, beside its stable type and field path."""

from __future__ import annotations

import re
import uuid
from typing import Any

from handlers.deps import Deps
from server.app import API
from tests.builders import make_world
from tests.client import Api

ENGLISH_WORDS = re.compile(r"[A-Za-z]{3,}")
# What may stay Latin in a Chinese message: the allowed codes themselves ('school') and acronyms.
ALLOWED_LATIN = re.compile(r"'[^']*'|UUID|JSON|\+08:00|\d{4}-\d{2}-\d{2}T[\d:+]+")


def _errors(response: Any) -> dict[str, tuple[str, str]]:
    assert response.status == 422, response.body
    return {".".join(map(str, e["loc"])): (e["msg"], e["type"]) for e in response.json()["errors"]}


async def test_field_errors_read_in_chinese(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    response = await api.post(
        f"{API}/schools/{w.school_a.id}/classrooms",
        {"grade": 13, "nickname": "x", "head_teacher_id": "abc"},
        token=w.token("school_admin_a"),
    )
    errors = _errors(response)
    assert errors["body.name"] == ("必填", "missing")
    assert errors["body.grade"] == ("应不大于 12", "less_than_equal")
    assert errors["body.nickname"] == ("不认识的字段", "extra_forbidden")
    assert errors["body.head_teacher_id"] == ("应为编号（UUID）", "uuid_parsing")


async def test_rules_of_a_whole_body_read_in_chinese(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    body = {
        "course_id": str(uuid.uuid4()),
        "starts_at": "2026-12-10T19:00:00+08:00",
        "ends_at": "2026-12-10T18:00:00+08:00",
        "place": "报告厅",
        "capacity": 0,
    }
    response = await api.post(
        f"{API}/schools/{w.school_a.id}/evening-classes", body, token=w.token("school_admin_a")
    )
    errors = _errors(response)
    assert errors["body.capacity"] == ("应不小于 1", "greater_than_equal")
    body["capacity"] = 30
    response = await api.post(
        f"{API}/schools/{w.school_a.id}/evening-classes", body, token=w.token("school_admin_a")
    )
    [(message, kind)] = _errors(response).values()
    assert (message, kind) == ("下课时间应晚于开课时间", "value_error")


async def test_no_english_reaches_the_user(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    bad = {
        "course_id": 7,
        "starts_at": "tomorrow",
        "ends_at": "2026-12-10T18:00:00",
        "capacity": "many",
        "audience": "everyone",
        "grades": "3",
        "meeting_url": "not a url",
    }
    response = await api.post(
        f"{API}/schools/{w.school_a.id}/evening-classes", bad, token=w.token("school_admin_a")
    )
    messages = [msg for msg, _ in _errors(response).values()]
    assert len(messages) == len(bad)
    assert not [m for m in messages if ENGLISH_WORDS.search(ALLOWED_LATIN.sub("", m))], messages
    assert "应为以下之一：'school'、'grades'、'classrooms'、'invited'" in messages
