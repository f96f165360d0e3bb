"""Free text is checked with WeChat's msgSecCheck before anyone reads it: pass → shown; risky or review →
held for a district admin to release or reject; WeChat down → checked later by the durable job. In every
case the rest of the response counts at once and nothing is lost."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.accounts.tables import User
from models.surveys.tables import SurveyResponse
from server.app import API
from server.wechat_sandbox import SandboxState
from tests.builders import Actor, FakeClock, make_parents, make_world
from tests.client import Api

NOW = datetime(2026, 5, 11, 9, 0, tzinfo=SHANGHAI)
QUESTIONS = [
    {
        "key": "all",
        "title": "总体",
        "questions": [
            {"key": "q1", "kind": "likert5", "text": "总体满意吗？"},
            {"key": "q2", "kind": "text", "text": "意见建议"},
        ],
    }
]


async def submit(api: Api, survey_id: str, actor: Actor, remark: str | None) -> None:
    me = (await api.get(f"{API}/me/surveys", token=actor.token)).json()["items"]
    answers: dict[str, object] = {"q1": 4} | ({"q2": remark} if remark else {})
    response = await api.post(
        f"{API}/surveys/{survey_id}/responses",
        json={"student_id": me[0]["student_id"], "answers": answers},
        token=actor.token,
    )
    assert response.status == 201, response.body


async def test_texts_pass_are_held_or_wait_for_wechat_and_the_rest_counts(
    api: Api, deps: Deps, wechat: tuple[SandboxState, str]
) -> None:
    sandbox, _ = wechat
    world = await make_world(deps)
    parents = await make_parents(deps, world.classroom_a, 10)
    deps.clock = FakeClock(NOW)
    admin = world.token("district_admin")
    created = await api.post(
        f"{API}/districts/{world.district.id}/surveys",
        json={
            "title": "意见征集",
            "opens_at": NOW.isoformat(),
            "closes_at": (NOW + timedelta(days=7)).isoformat(),
            "audience": {"school_ids": [str(world.school_a.id)]},
            "dimensions": QUESTIONS,
        },
        token=admin,
    )
    survey_id = created.json()["id"]
    assert (await api.post(f"{API}/surveys/{survey_id}/publish", token=admin)).status == 200

    await submit(api, survey_id, parents[0], "老师很负责")  # pass
    await submit(api, survey_id, parents[1], "这段话违规")  # risky
    await submit(api, survey_id, parents[2], "这段话待审")  # review
    sandbox.sec_check_down = True
    await submit(api, survey_id, parents[3], "下雨天接送不便")  # WeChat down: accepted all the same
    sandbox.sec_check_down = False
    for actor in parents[4:]:
        await submit(api, survey_id, actor, None)

    # WeChat was asked with each writer's openid (version 2); our rows hold none of them in the clear.
    async with deps.sessions() as s:
        openids = {u: o for u, o in (await s.execute(select(User.id, User.wechat_openid))).all()}
        rows = (await s.scalars(select(SurveyResponse))).all()
    assert [c["content"] for c in sandbox.sec_checks] == ["老师很负责", "这段话违规", "这段话待审"]
    assert [c["openid"] for c in sandbox.sec_checks] == [openids[a.user_id] for a in parents[:3]]
    assert len(rows) == 10  # the cell reached a batch: written out, every response counted
    statuses = sorted(str(r.text_status.get("q2")) for r in rows if "q2" in r.answers)
    assert statuses == ["held", "held", "passed", "unchecked"]
    waiting = [r for r in rows if r.sealed_openid is not None]
    assert [r.answers["q2"] for r in waiting] == ["下雨天接送不便"]
    assert openids[parents[3].user_id].encode() not in waiting[0].sealed_openid  # type: ignore[operator]

    # The job asks again: nothing while WeChat stays down, then the text passes and the openid goes.
    sandbox.sec_check_down = True
    assert await deps.texts.run_once() == 0
    sandbox.sec_check_down = False
    assert await deps.texts.run_once() == 1
    assert sandbox.sec_checks[-1]["openid"] == openids[parents[3].user_id]
    async with deps.sessions() as s:
        later = (
            await s.scalars(select(SurveyResponse).where(SurveyResponse.sealed_openid.is_not(None)))
        ).all()
        passed = (
            await s.scalars(select(SurveyResponse).where(SurveyResponse.text_status["q2"].astext == "passed"))
        ).all()
    assert later == [] and sorted(r.answers["q2"] for r in passed) == ["下雨天接送不便", "老师很负责"]

    # A district admin sees the held texts, without anything of who wrote them, and decides.
    held = await api.get(f"{API}/surveys/{survey_id}/texts", token=admin)
    assert held.status == 200
    items = {i["body"]: i for i in held.json()["items"]}
    assert set(items) == {"这段话违规", "这段话待审"} and set(items["这段话违规"]) == {
        "id",
        "question_key",
        "question",
        "body",
    }
    texts = f"{API}/surveys/{survey_id}/texts"
    released = await api.request(
        "PUT", f"{texts}/{items['这段话违规']['id']}", json_body={"decision": "release"}, token=admin
    )
    assert released.status == 200 and released.json()["body"] == "这段话违规"
    again = await api.request(
        "PUT", f"{texts}/{items['这段话违规']['id']}", json_body={"decision": "reject"}, token=admin
    )
    assert again.status == 409 and again.code == "text_not_held"
    rejected = await api.request(
        "PUT", f"{texts}/{items['这段话待审']['id']}", json_body={"decision": "reject"}, token=admin
    )
    assert rejected.status == 200
    bad = await api.request(
        "PUT", f"{texts}/{items['这段话待审']['id']}", json_body={"decision": "ok"}, token=admin
    )
    assert bad.status == 422
    unknown = await api.request(
        "PUT", f"{texts}/{items['这段话待审']['id']}x", json_body={"decision": "reject"}, token=admin
    )
    assert unknown.status == 404
    assert (await api.get(texts, token=admin)).json()["items"] == []
    assert (await api.get(texts, token=world.token("evaluator"))).status == 403

    # Only what passed or was released is shown, and the responses all count.
    assert (await api.post(f"{API}/surveys/{survey_id}/close", token=admin)).status == 200
    workbook = await api.get(f"{API}/surveys/{survey_id}/results.xlsx", token=world.token("evaluator"))
    quotes = [
        r[2]
        for r in load_workbook(io.BytesIO(workbook.body))["意见建议"].iter_rows(min_row=2, values_only=True)
    ]
    assert sorted(quotes) == sorted(["下雨天接送不便", "老师很负责", "这段话违规"])
    results = (await api.get(f"{API}/surveys/{survey_id}/results", token=admin)).json()["groups"][0]
    assert results["overall"]["n"] == 10 and results["overall"]["value"] == 75.0
