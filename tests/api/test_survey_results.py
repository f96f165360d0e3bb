"""Survey results through HTTP: the satisfaction index, post-stratified with its 95% interval, checked
against figures worked out by hand on a small fixed data set; small cells hidden so that no total gives
them away; schools see their own school once closed; the evaluators' workbook cell by cell."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from datetime import datetime, timedelta
from statistics import fmean, variance
from typing import Any

import pytest
from openpyxl import load_workbook

from handlers.deps import Deps
from infra.clock import SHANGHAI
from server.app import API
from tests.builders import Actor, FakeClock, World, make_parents, make_world
from tests.client import Api

NOW = datetime(2026, 5, 11, 9, 0, tzinfo=SHANGHAI)
D = "dont_know"
# School A (grade 3; 13 students: 12 answer) and school B (grade 7; 11 students: 10 answer).
A = {
    "q1": [5, 4, 4, 3, 5, 4, D, 2, 4, 5, 3, 4],
    "q2": [4, 4, 3, 3, 5, 4, 4, 2, 4, 5, 3, 4],
    "q3": [5, 5, 4, 4, 5, 3, 4, 3, 4, 5, 4, 4],
}
B = {
    "q1": [3, 2, 4, 3, 3, 2, 4, 3, 1, 3],
    "q2": [3, 3, 4, 2, 3, 2, 4, 3, 2, 3],
    "q3": [4, 3, 4, 3, 3, 2, 5, 3, 2, 4],
}
QUESTIONNAIRE = [
    {
        "key": "teach",
        "title": "课程",
        "weight": 2,
        "questions": [
            {"key": "q1", "kind": "likert5", "text": "课程内容满意吗？"},
            {"key": "q2", "kind": "likert5", "text": "课程时间满意吗？", "weight": 3},
        ],
    },
    {
        "key": "talk",
        "title": "沟通",
        "questions": [
            {"key": "q3", "kind": "likert5", "text": "沟通满意吗？"},
            {
                "key": "q4",
                "kind": "single",
                "text": "家访方式",
                "options": [{"key": "home", "label": "到家"}, {"key": "phone", "label": "电话"}],
            },
            {"key": "q6", "kind": "text", "text": "意见建议"},
        ],
    },
]


class Scene:
    def __init__(self, world: World, a: list[Actor], b: list[Actor], survey_id: str) -> None:
        self.world, self.a, self.b, self.survey_id = world, a, b, survey_id

    def path(self, tail: str = "") -> str:
        return f"{API}/surveys/{self.survey_id}{tail}"


async def scene(api: Api, deps: Deps, in_a: int = 12, in_b: int = 10) -> Scene:
    world = await make_world(deps)
    a = await make_parents(deps, world.classroom_a, 12)  # with student_a: 13 students at A
    b = await make_parents(deps, world.classroom_b, 10)  # with student_b: 11 at B
    deps.clock = FakeClock(NOW)
    body = {
        "title": "满意度调查",
        "opens_at": NOW.isoformat(),
        "closes_at": (NOW + timedelta(days=14)).isoformat(),
        "audience": {"school_ids": [str(world.school_a.id), str(world.school_b.id)]},
        "dimensions": QUESTIONNAIRE,
    }
    admin = world.token("district_admin")
    created = await api.post(f"{API}/districts/{world.district.id}/surveys", json=body, token=admin)
    survey_id = created.json()["id"]
    assert (await api.post(f"{API}/surveys/{survey_id}/publish", token=admin)).status == 200
    return Scene(world, a[:in_a], b[:in_b], survey_id)


async def answer_all(api: Api, s: Scene, b: dict[str, list[Any]] = B) -> None:
    async def one(actor: Actor, data: dict[str, list[Any]], i: int, option: str) -> None:
        me = (await api.get(f"{API}/me/surveys", token=actor.token)).json()["items"]
        answers = {q: data[q][i] for q in ("q1", "q2", "q3")} | {"q4": option}
        response = await api.post(
            s.path("/responses"),
            json={"student_id": me[0]["student_id"], "answers": answers},
            token=actor.token,
        )
        assert response.status == 201, response.body

    await asyncio.gather(
        *(one(actor, A, i, "home") for i, actor in enumerate(s.a)),
        *(one(actor, b, i, "phone") for i, actor in enumerate(s.b)),
    )


async def close(api: Api, s: Scene) -> None:
    response = await api.post(s.path("/close"), token=s.world.token("district_admin"))
    assert response.status == 200


def by_key(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["key"]: i for i in items}


# ---- the figures, by hand ---------------------------------------------------------------------------
def hand(strata: list[tuple[int, list[float]]]) -> tuple[float, float, float]:
    """Σ W_h ȳ_h ± 1.96 √(Σ W_h² (1 − n_h/N_h) s_h² / n_h), written out independently of the service."""
    total = sum(n for n, _ in strata)
    value = sum(n / total * fmean(x) for n, x in strata)
    var = sum((n / total) ** 2 * (1 - len(x) / n) * variance(x) / len(x) for n, x in strata)
    half = 1.959963984540054 * math.sqrt(var)
    return round(value, 2), round(value - half, 2), round(value + half, 2)


def score(v: Any) -> float | None:
    return None if v == D else (v - 1) * 25.0


def figure(f: dict[str, Any]) -> tuple[float, float, float]:
    return f["value"], f["ci_low"], f["ci_high"]


async def test_the_index_is_post_stratified_with_an_honest_interval(api: Api, deps: Deps) -> None:
    s = await scene(api, deps)
    await answer_all(api, s)
    await close(api, s)
    response = await api.get(s.path("/results"), token=s.world.token("evaluator"))
    assert response.status == 200, response.body
    [district] = response.json()["groups"]
    assert (district["label"], district["sampled"], district["responses"]) == ("全区", 24, 22)
    assert district["response_rate"] == round(22 / 24, 4)

    # q1 by hand. A: 不了解 dropped, 11 answers 5,4,4,3,5,4,2,4,5,3,4 → 100,75,75,50,100,75,25,75,100,50,75,
    # mean 800/11 = 72.727; B: 3,2,4,3,3,2,4,3,1,3 → mean 45.0. Weights by population 13/24 and 11/24
    # (not by the 11 and 10 who answered): 13/24·72.727 + 11/24·45.0 = 60.02.
    q1 = by_key(district["questions"])["q1"]["figure"]
    assert q1["value"] == 60.02 and q1["n"] == 21
    a1 = [score(v) for v in A["q1"] if v != D]
    b1 = [score(v) for v in B["q1"]]
    assert figure(q1) == hand([(13, a1), (11, b1)]) == (60.02, 56.46, 63.58)

    # Dimension `teach`: each household's weighted mean of q1 (×1) and q2 (×3), q2 alone for the one
    # who did not know q1; overall: (2 × teach + 1 × talk) / 3.
    def teach(data: dict[str, list[Any]], i: int) -> float:
        q1v, q2v = score(data["q1"][i]), score(data["q2"][i])
        assert q2v is not None
        return q2v if q1v is None else (q1v + 3 * q2v) / 4

    def overall(data: dict[str, list[Any]], i: int) -> float:
        talk = score(data["q3"][i])
        assert talk is not None
        return (2 * teach(data, i) + talk) / 3

    dims = by_key(district["dimensions"])
    assert figure(dims["teach"]["figure"]) == hand(
        [(13, [teach(A, i) for i in range(12)]), (11, [teach(B, i) for i in range(10)])]
    )
    assert figure(dims["teach"]["figure"]) == (59.29, 56.86, 61.72)
    assert figure(district["overall"]) == (62.6, 60.27, 64.94)
    assert figure(district["overall"]) == hand(
        [(13, [overall(A, i) for i in range(12)]), (11, [overall(B, i) for i in range(10)])]
    )

    # The distribution keeps 不了解 (one of A's 12, none of B's 10).
    shares = by_key(by_key(district["questions"])["q1"]["distribution"])
    assert [shares[k]["count"] for k in ("1", "2", "3", "4", "5", D)] == [1, 3, 7, 7, 3, 1]
    assert shares[D]["share"] == round(1 / 22, 4)
    q4 = by_key(by_key(district["questions"])["q4"]["distribution"])
    assert (q4["home"]["count"], q4["phone"]["count"]) == (12, 10)

    # Per school: a cell of 10 (school B) shows its figure; each school is one stratum.
    schools = (await api.get(s.path("/results?group_by=school"), token=s.world.token("evaluator"))).json()
    named = {g["label"]: g for g in schools["groups"]}
    assert (
        figure(by_key(named["甲小学"]["questions"])["q1"]["figure"])
        == hand([(13, a1)])
        == (72.73, 67.26, 78.2)
    )
    assert figure(named["乙中学"]["overall"]) == (50.42, 46.72, 54.11)
    assert named["乙中学"]["suppressed"] is False and named["乙中学"]["overall"]["n"] == 10
    bands = (await api.get(s.path("/results?group_by=grade_band"), token=s.world.token("evaluator"))).json()
    assert [g["label"] for g in bands["groups"]] == ["小学中段（3–4 年级）", "初中"]
    assert figure(bands["groups"][1]["overall"]) == (50.42, 46.72, 54.11)

    bad = await api.get(s.path("/results?group_by=class"), token=s.world.token("evaluator"))
    assert bad.status == 422


async def test_a_cell_of_nine_shows_nothing_and_no_total_gives_it_away(api: Api, deps: Deps) -> None:
    s = await scene(api, deps, in_b=9)
    await answer_all(api, s)
    await close(api, s)
    schools = (
        await api.get(s.path("/results?group_by=school"), token=s.world.token("district_admin"))
    ).json()
    named = {g["label"]: g for g in schools["groups"]}
    nine = named["乙中学"]
    assert nine["suppressed"] is True and nine["responses"] == 9
    assert nine["overall"] == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "n": 9,
        "suppressed": True,
        "note": "样本不足",
    }
    assert all(d["figure"]["value"] is None for d in nine["dimensions"])
    assert all(
        q["distribution"] is None and (q["figure"] is None or q["figure"]["value"] is None)
        for q in nine["questions"]
    )
    # The district's total is shown (21 responses): with school A's figure beside it, school B's would
    # follow, so school A's is hidden too.
    district = (await api.get(s.path("/results"), token=s.world.token("district_admin"))).json()["groups"][0]
    assert district["overall"]["value"] is not None
    twelve = named["甲小学"]
    assert twelve["suppressed"] is False
    assert twelve["overall"]["value"] is None and twelve["overall"]["suppressed"] is True
    assert all(d["figure"]["value"] is None for d in twelve["dimensions"])
    assert all(q["distribution"] is None for q in twelve["questions"] if q["kind"] != "text")
    # So does school A's own admin (their school's cell of the same partition).
    own = (await api.get(s.path("/results"), token=s.world.token("school_admin_a"))).json()["groups"]
    assert [g["label"] for g in own] == ["甲小学"] and own[0]["overall"]["value"] is None


async def test_a_question_resting_on_fewer_than_ten_answers_is_hidden(api: Api, deps: Deps) -> None:
    s = await scene(api, deps)
    b = dict(B) | {"q1": [3, 2, 4, 3, 3, 2, 4, 3, 1, D]}  # B: 9 answers to q1, 10 responses
    await answer_all(api, s, b)
    await close(api, s)
    schools = (await api.get(s.path("/results?group_by=school"), token=s.world.token("evaluator"))).json()
    named = {g["label"]: g for g in schools["groups"]}
    assert by_key(named["乙中学"]["questions"])["q1"]["figure"]["suppressed"] is True
    assert by_key(named["甲小学"]["questions"])["q1"]["figure"]["suppressed"] is True  # complementary
    assert by_key(named["乙中学"]["questions"])["q2"]["figure"]["value"] == 47.5
    assert by_key(named["乙中学"]["questions"])["q1"]["distribution"] is not None  # 10 answers incl. 不了解


async def test_schools_see_their_own_figures_once_closed(api: Api, deps: Deps) -> None:
    s = await scene(api, deps)
    await answer_all(api, s)
    token = s.world.token("school_admin_b")
    early = await api.get(s.path("/results"), token=token)
    assert early.status == 409 and early.code == "survey_not_closed"
    # District readers follow it while open, over the answers written out so far (batches of 10 of a
    # school and grade: at least 10 of A's 12 and B's 10); at closing every answer is.
    live = (await api.get(s.path("/results"), token=s.world.token("evaluator"))).json()["groups"][0]
    assert live["overall"]["value"] is not None and 20 <= live["overall"]["n"] <= 22
    assert live["responses"] == 22  # the response rate counts every answer at once
    await close(api, s)
    own = (await api.get(s.path("/results"), token=token)).json()["groups"]
    assert [g["label"] for g in own] == ["乙中学"]
    assert figure(own[0]["overall"]) == (50.42, 46.72, 54.11)
    by_band = (await api.get(s.path("/results?group_by=grade_band"), token=token)).json()["groups"]
    assert [g["label"] for g in by_band] == ["初中"]
    for path in ("/response-rates", "/results.xlsx", ""):
        assert (await api.get(s.path(path), token=token)).status == 403


async def test_the_evaluators_workbook(api: Api, deps: Deps) -> None:
    s = await scene(api, deps, in_b=9)
    await answer_all(api, s)
    await close(api, s)
    response = await api.get(s.path("/results.xlsx"), token=s.world.token("evaluator"))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(response.body))
    assert book.sheetnames == ["概览", "维度", "题目", "学校", "逐年对比", "意见建议"]
    overview = {row[0]: row[1] for row in book["概览"].iter_rows(min_row=2, values_only=True)}
    district = (await api.get(s.path("/results"), token=s.world.token("evaluator"))).json()["groups"][0]
    assert overview["调查"] == "满意度调查" and overview["状态"] == "已结束"
    assert overview["方法"] == "普查（全体家庭）"
    assert (overview["抽中家庭数"], overview["回收份数"]) == (24, 21)
    assert overview["回收率（%）"] == 87.5
    assert overview["总体满意度指数"] == district["overall"]["value"]
    assert (
        overview["95% 置信区间"]
        == f"{district['overall']['ci_low']:.2f}–{district['overall']['ci_high']:.2f}"
    )

    dims = list(book["维度"].iter_rows(values_only=True))
    assert dims[0] == ("维度", "满意度指数", "95% 置信区间", "作答人数", "权重")
    assert dims[1][0] == "课程" and dims[1][1] == by_key(district["dimensions"])["teach"]["figure"]["value"]
    assert len(book["维度"]._charts) == 1 and len(book["学校"]._charts) == 1

    questions = list(book["题目"].iter_rows(min_row=2, values_only=True))
    assert [q[0] for q in questions] == ["课程内容满意吗？", "课程时间满意吗？", "沟通满意吗？"]
    assert questions[0][5:11] == (1, 3, 6, 7, 3, 1)  # 非常不满意 … 不了解; B's tenth parent (a 3) absent

    schools = {row[0]: row for row in book["学校"].iter_rows(min_row=2, values_only=True)}
    assert schools["乙中学"][1] == "样本不足" and schools["乙中学"][2] is None
    assert schools["甲小学"][1] == "样本不足"  # hidden so the district total does not give B away
    assert schools["乙中学"][4:7] == (11, 9, 81.82)
    texts = list(book["意见建议"].iter_rows(values_only=True))
    assert texts[0] == ("学校", "题目", "意见建议（匿名，已通过审核）")
    assert len(texts) == 2 and "暂无" in texts[1][2]  # no text was written


@pytest.mark.parametrize("group_by", ["none", "school"])
async def test_results_before_any_answer_are_all_hidden(api: Api, deps: Deps, group_by: str) -> None:
    s = await scene(api, deps)
    body = (await api.get(s.path(f"/results?group_by={group_by}"), token=s.world.token("evaluator"))).json()
    assert body["groups"] and all(g["suppressed"] and g["overall"]["value"] is None for g in body["groups"])


async def test_each_sheet_comes_as_csv_for_analysts(api: Api, deps: Deps) -> None:
    s = await scene(api, deps, in_b=9)
    await answer_all(api, s)
    await close(api, s)
    token = s.world.token("evaluator")
    response = await api.get(s.path("/results.csv?sheet=schools"), token=token)
    assert response.status == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
    assert rows[0][:7] == [
        "学校",
        "总体满意度指数",
        "95% 置信区间",
        "作答人数",
        "抽中",
        "回收",
        "回收率（%）",
    ]
    named = {r[0]: r for r in rows[1:]}
    assert named["乙中学"][1] == "样本不足" and named["乙中学"][4:7] == ["11", "9", "81.82"]
    overview = dict(
        r
        for r in csv.reader(
            io.StringIO(
                (await api.get(s.path("/results.csv?sheet=overview"), token=token)).body.decode("utf-8-sig")
            )
        )
    )
    district = (await api.get(s.path("/results"), token=token)).json()["groups"][0]
    assert overview["总体满意度指数"] == str(district["overall"]["value"])
    for bad in ("", "?sheet=学校", "?sheet=schools&x=1"):
        refused = await api.get(s.path(f"/results.csv{bad}"), token=token)
        assert refused.status == 422, bad


async def test_results_are_cached_until_answers_arrive(api: Api, deps: Deps) -> None:
    s = await scene(api, deps)
    token = s.world.token("evaluator")
    first = await api.get(s.path("/results"), token=token)
    assert first.json()["groups"][0]["responses"] == 0
    [key] = [k async for k in deps.redis.scan_iter(match=f"{deps.settings.redis_prefix}survey-results:*")]
    # Served from the cache: what the key holds is what the next request gets.
    marked = first.body.replace(b'"title":"\xe6\xbb\xa1', b'"title":"[cached]\xe6\xbb\xa1')
    assert marked != first.body
    await deps.redis.set(key, marked)
    assert (await api.get(s.path("/results"), token=token)).body == marked
    # An answer moves the response rate at once; a written-out batch moves the figures.
    await answer_all(api, s)
    after = (await api.get(s.path("/results"), token=token)).json()
    assert after["title"] == "满意度调查" and after["groups"][0]["responses"] == 22
    assert after["groups"][0]["overall"]["value"] is not None
