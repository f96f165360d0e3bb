"""A parent's WeChat subscription-message allowance over HTTP: what the mini-program reports after its
subscription prompt, and what it reads to know whether to ask again."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.deps import Deps
from server.app import API
from tests.builders import World, make_world
from tests.client import Api

PATH = f"{API}/me/subscriptions"


@pytest.fixture
async def world(deps: Deps) -> World:
    return await make_world(deps)


def left(body: dict[str, Any]) -> dict[str, int]:
    return {item["kind"]: item["remaining"] for item in body["items"]}


async def test_each_accept_allows_one_more_message_of_its_kind(api: Api, deps: Deps, world: World) -> None:
    reminder = deps.settings.wechat_template_class_reminder
    promoted = deps.settings.wechat_template_waitlist_promoted
    token = world.token("parent_a")

    fresh = await api.get(PATH, token=token)
    assert fresh.status == 200
    # The template ids come with the kinds: the mini-program asks for exactly these.
    assert fresh.json()["items"] == [
        {"kind": "class_reminder", "template_id": reminder, "remaining": 0},
        {"kind": "waitlist_promoted", "template_id": promoted, "remaining": 0},
        {
            "kind": "followup_answered",
            "template_id": deps.settings.wechat_template_followup_answered,
            "remaining": 0,
        },
    ]

    first = await api.post(PATH, {"accepted": [reminder]}, token=token)
    assert first.status == 200
    assert left(first.json()) == {"class_reminder": 1, "waitlist_promoted": 0, "followup_answered": 0}
    second = await api.post(PATH, {"accepted": [promoted, reminder]}, token=token)
    assert left(second.json()) == {"class_reminder": 2, "waitlist_promoted": 1, "followup_answered": 0}
    assert left((await api.get(PATH, token=token)).json()) == {
        "class_reminder": 2,
        "waitlist_promoted": 1,
        "followup_answered": 0,
    }

    # Another parent's accepts are theirs alone.
    other = await api.get(PATH, token=world.token("parent_b"))
    assert left(other.json()) == {"class_reminder": 0, "waitlist_promoted": 0, "followup_answered": 0}


async def test_a_retried_report_counts_once(api: Api, deps: Deps, world: World) -> None:
    reminder = deps.settings.wechat_template_class_reminder
    token = world.token("parent_a")
    body = {"accepted": [reminder]}
    first = await api.post(PATH, body, token=token, headers={"Idempotency-Key": "prompt-1"})
    again = await api.post(PATH, body, token=token, headers={"Idempotency-Key": "prompt-1"})
    assert (first.status, again.status) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert left((await api.get(PATH, token=token)).json())["class_reminder"] == 1


@pytest.mark.parametrize(
    ("accepted", "loc"),
    [
        (["someone-elses-template"], ["body", "accepted", 0]),
        (["{reminder}", "{reminder}"], ["body", "accepted", 1]),
        ([], ["body", "accepted"]),
        (["{reminder}", "a", "b", "c"], ["body", "accepted"]),
    ],
    ids=["unknown template", "listed twice", "empty", "more than a prompt can ask"],
)
async def test_what_no_prompt_could_have_accepted_is_refused_and_nothing_counted(
    api: Api, deps: Deps, world: World, accepted: list[str], loc: list[Any]
) -> None:
    reminder = deps.settings.wechat_template_class_reminder
    token = world.token("parent_a")
    body = {"accepted": [t.format(reminder=reminder) for t in accepted]}
    refused = await api.post(PATH, body, token=token)
    assert refused.status == 422, refused.body
    assert loc in [e["loc"] for e in refused.json()["errors"]]
    assert left((await api.get(PATH, token=token)).json()) == {
        "class_reminder": 0,
        "waitlist_promoted": 0,
        "followup_answered": 0,
    }


async def test_only_a_signed_in_user_has_an_allowance(api: Api) -> None:
    assert (await api.get(PATH)).status == 401
    assert (await api.post(PATH, {"accepted": ["class-reminder"]})).status == 401
