"""Year over year: the standard questionnaire in two school years, each school's change and whether it is
larger than the two intervals allow by chance; the same in the workbook's 逐年对比 sheet."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

from openpyxl import load_workbook

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.surveys.templates import load_template
from server.app import API
from tests.builders import Actor, FakeClock, World, make_parents, make_world
from tests.client import Api


async def run_survey(
    api: Api, deps: Deps, world: World, opens: datetime, answers: dict[str, tuple[list[Actor], list[int]]]
) -> str:
    assert isinstance(deps.clock, FakeClock)
    deps.clock.now = opens
    admin = world.token("district_admin")
    created = await api.post(
        f"{API}/districts/{world.district.id}/surveys",
        json={
            "from_template": "parent-satisfaction",
            "opens_at": opens.isoformat(),
            "closes_at": (opens + timedelta(days=14)).isoformat(),
            "audience": {"school_ids": [str(world.school_a.id), str(world.school_b.id)]},
        },
        token=admin,
    )
    survey_id = created.json()["id"]
    assert (await api.post(f"{API}/surveys/{survey_id}/publish", token=admin)).status == 200
    deps.clock.tick(3600)
    template = load_template("parent-satisfaction")
    for parents, values in answers.values():
        for actor, value in zip(parents, values, strict=True):
            given: dict[str, object] = {}
            for d in template.dimensions:
                for q in d.questions:
                    if q.kind == "likert5":
                        given[q.key] = value
                    elif q.kind == "single":
                        given[q.key] = q.options[0].key if q.options else ""
            me = (await api.get(f"{API}/me/surveys", token=actor.token)).json()["items"]
            response = await api.post(
                f"{API}/surveys/{survey_id}/responses",
                json={"student_id": me[0]["student_id"], "answers": given},
                token=actor.token,
            )
            assert response.status == 201, response.body
    assert (await api.post(f"{API}/surveys/{survey_id}/close", token=admin)).status == 200
    return str(survey_id)


async def test_each_schools_change_from_last_year_and_whether_chance_explains_it(
    api: Api, deps: Deps
) -> None:
    world = await make_world(deps)
    at_a = await make_parents(deps, world.classroom_a, 10)  # 11 students with student_a
    at_b = await make_parents(deps, world.classroom_b, 10)
    deps.clock = FakeClock(datetime(2025, 5, 12, 9, 0, tzinfo=SHANGHAI))
    last = await run_survey(
        api,
        deps,
        world,
        datetime(2025, 5, 12, 9, 0, tzinfo=SHANGHAI),
        {"a": (at_a, [3, 4] * 5), "b": (at_b, [3, 4] * 5)},
    )
    this = await run_survey(
        api,
        deps,
        world,
        datetime(2026, 5, 11, 9, 0, tzinfo=SHANGHAI),
        {"a": (at_a, [4, 5] * 5), "b": (at_b, [4, 3] * 5)},
    )
    response = await api.get(
        f"{API}/districts/{world.district.id}/satisfaction?school_year=2025-2026",
        token=world.token("evaluator"),
    )
    assert response.status == 200, response.body
    body = response.json()
    assert (body["survey_id"], body["previous_survey_id"]) == (this, last)
    schools = {s["school_name"]: s["overall"] for s in body["schools"]}
    # A: every answer 4 or 5 → 87.5 against 3 or 4 → 62.5 last year; the intervals are about ±4.
    assert (schools["甲小学"]["current"]["value"], schools["甲小学"]["previous"]["value"]) == (87.5, 62.5)
    assert (schools["甲小学"]["change"], schools["甲小学"]["significant"]) == (25.0, True)
    assert (schools["乙中学"]["change"], schools["乙中学"]["significant"]) == (0.0, False)
    # The district: populations 11 and 11 → (87.5 + 62.5) / 2 = 75.0 against 62.5.
    assert (body["district"]["current"]["value"], body["district"]["change"]) == (75.0, 12.5)
    assert {d["title"]: d["district"]["change"] for d in body["dimensions"]} == {
        "家长学校课程": 12.5,
        "家长夜校": 12.5,
        "家访": 12.5,
        "家校沟通": 12.5,
        "学校总体": 12.5,
    }

    book = load_workbook(
        io.BytesIO((await api.get(f"{API}/surveys/{this}/results.xlsx", token=world.token("evaluator"))).body)
    )
    rows = {r[0]: r[1:] for r in book["逐年对比"].iter_rows(min_row=2, values_only=True)}
    assert rows["全区"] == (75.0, 62.5, 12.5, "是")
    assert rows["甲小学"] == (87.5, 62.5, 25.0, "是") and rows["乙中学"] == (62.5, 62.5, 0.0, "否")

    nothing = await api.get(
        f"{API}/districts/{world.district.id}/satisfaction?school_year=2023-2024",
        token=world.token("evaluator"),
    )
    assert nothing.json()["survey_id"] is None and nothing.json()["schools"] == []
    bad = await api.get(
        f"{API}/districts/{world.district.id}/satisfaction?school_year=2026", token=world.token("evaluator")
    )
    assert bad.status == 422
