"""Anonymity that holds against the people who run the database: given every table of the test database,
system columns included, an administrator cannot pair a household with its answers with better than
1-in-10 odds. The test plays that administrator; only the test itself knows who wrote what."""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.surveys.rules import MIX_BATCH
from server.app import API
from tests.builders import Actor, FakeClock, make_parents, make_world
from tests.client import Api

NOW = datetime(2026, 5, 11, 9, 0, tzinfo=SHANGHAI)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
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


async def dump(deps: Deps) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, with xmin (the writing transaction) and ctid (the physical place)."""
    async with deps.engine.connect() as conn:
        tables = (
            await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            )
        ).scalars()
        found = {}
        for table in list(tables):
            rows = await conn.execute(
                text(
                    f"SELECT xmin::text::bigint AS xmin, ctid::text AS ctid, row_to_json(t)::text AS row "  # noqa: S608
                    f'FROM "{table}" t'
                )
            )
            found[table] = [dict(r._mapping) for r in rows]
    return found


async def submit(api: Api, survey_id: str, actor: Actor, remark: str) -> None:
    me = (await api.get(f"{API}/me/surveys", token=actor.token)).json()["items"]
    response = await api.post(
        f"{API}/surveys/{survey_id}/responses",
        json={"student_id": me[0]["student_id"], "answers": {"q1": 4, "q2": remark}},
        token=actor.token,
    )
    assert response.status == 201, response.body


async def test_the_database_administrator_cannot_pair_a_household_with_its_answers(
    api: Api, deps: Deps
) -> None:
    world = await make_world(deps)
    grade3 = await make_parents(deps, world.classroom_a, 23)  # 2 batches of 10 + 3 written out at closing
    grade7 = await make_parents(deps, world.classroom_b, 12)
    deps.clock = FakeClock(NOW)
    admin = world.token("district_admin")
    created = await api.post(
        f"{API}/districts/{world.district.id}/surveys",
        json={
            "title": "匿名调查",
            "opens_at": NOW.isoformat(),
            "closes_at": (NOW + timedelta(days=7)).isoformat(),
            "dimensions": QUESTIONS,
        },
        token=admin,
    )
    survey_id = created.json()["id"]
    assert (await api.post(f"{API}/surveys/{survey_id}/publish", token=admin)).status == 200

    # Who wrote what: known to the test only. Submitted one after another, so ids and transactions
    # follow the order of submission as closely as they ever could.
    truth: dict[str, uuid.UUID] = {}  # remark → student
    for i, actor in enumerate(grade3 + grade7):
        remark = f"留言{i:02d}"
        me = (await api.get(f"{API}/me/surveys", token=actor.token)).json()["items"][0]
        truth[remark] = uuid.UUID(me["student_id"])
        await submit(api, survey_id, actor, remark)
        if i == 8:  # nine answers of grade 3 wait sealed: the table shows ciphertext of equal lengths
            pending = (await dump(deps))["survey_pending_response"]
            assert len(pending) == 9 and len({len(p["row"]) for p in pending}) == 1
            assert not any("留言" in p["row"] for p in pending)
            assert (await dump(deps))["survey_response"] == []

    tables = await dump(deps)
    assert len(tables["survey_response"]) == 20 + 10  # full batches written out while open
    assert len(tables["survey_pending_response"]) == 5  # 3 of grade 3, 2 of grade 7: under a batch
    written = {json.loads(r["row"])["id"] for r in tables["survey_response"]}
    assert (await api.post(f"{API}/surveys/{survey_id}/close", token=admin)).status == 200
    tables = await dump(deps)
    assert tables["survey_pending_response"] == []
    # The remainders were written out with their cells' earlier rows, rewritten under new ids.
    assert written.isdisjoint(json.loads(r["row"])["id"] for r in tables["survey_response"])

    responses = [r | {"data": json.loads(r["row"])} for r in tables["survey_response"]]
    participations = [p | {"data": json.loads(p["row"])} for p in tables["survey_participation"]]
    assert len(responses) == len(participations) == 35
    sample = {json.loads(r["row"])["student_id"]: json.loads(r["row"]) for r in tables["survey_sample"]}

    # 1. Nothing in a response names anyone: its only ids are the survey's and the school's, its only time
    #    is a day, no other table holds its id, and no row naming a household shares its transaction (the
    #    last batch shares the closing's, which names the survey and the district admin only).
    households = set(sample) | {str(a.user_id) for a in grade3 + grade7}
    households |= {json.loads(g["row"])["id"] for g in tables["guardianship"]}
    named_xmins = {  # transactions that wrote a row naming a household (a student, a parent)
        r["xmin"]
        for name, rows in tables.items()
        if name != "survey_response"
        for r in rows
        if households & set(UUID.findall(r["row"]))
    }
    elsewhere = "\n".join(
        r["row"] for name, rows in tables.items() if name != "survey_response" for r in rows
    )
    for r in responses:
        data = r["data"]
        assert set(data) == {
            "id",
            "survey_id",
            "school_id",
            "grade",
            "day",
            "answers",
            "text_status",
            "sealed_openid",
        }
        # The remark passed WeChat's check at once: no openid kept, sealed or not.
        assert data["text_status"] == {"q2": "passed"} and data["sealed_openid"] is None
        assert data["day"] == "2026-05-11"
        assert set(UUID.findall(r["row"])) == {data["id"], data["survey_id"], data["school_id"]}
        assert data["id"] not in elsewhere
        assert r["xmin"] not in named_xmins
    assert "留言" not in elsewhere  # the answers live nowhere else

    # 2. The best pairing xmin allows: a response was written after its household's participation, in a
    #    batch of its school and grade; its candidates are the participations of that cell between the
    #    previous batch and its own. Every response has at least MIX_BATCH of them.
    cell_of = {s: (row["school_id"], row["grade"]) for s, row in sample.items()}
    batches: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in responses:
        batches[(r["data"]["school_id"], r["data"]["grade"])].append(r["xmin"])
    for r in responses:
        cell = (r["data"]["school_id"], r["data"]["grade"])
        earlier = [x for x in set(batches[cell]) if x < r["xmin"]]
        after = max(earlier, default=0)
        candidates = [
            p
            for p in participations
            if cell_of[p["data"]["student_id"]] == cell and after < p["xmin"] < r["xmin"]
        ]
        author = str(truth[r["data"]["answers"]["q2"]])
        assert author in {p["data"]["student_id"] for p in candidates}  # the attack model is sound
        assert len(candidates) >= MIX_BATCH, (cell, len(candidates))
        assert batches[cell].count(r["xmin"]) == len(candidates)  # the whole batch shares one transaction

    # 3. Order gives nothing either: rows of a batch are placed (ctid) and numbered (id) in shuffled
    #    order. Pairing each batch's rows in that order with its participations in order of writing gets
    #    about one right per batch by chance (closing rewrote both cells, each now one batch); unshuffled
    #    it would get all 35.
    def place(ctid: str) -> tuple[int, int]:
        page, slot = ctid.strip("()").split(",")
        return int(page), int(slot)

    for order in (lambda r: place(r["ctid"]), lambda r: r["data"]["id"]):
        right = 0
        for cell, xmins in batches.items():
            for xmin in sorted(set(xmins)):
                batch = sorted(
                    (
                        r
                        for r in responses
                        if r["xmin"] == xmin and (r["data"]["school_id"], r["data"]["grade"]) == cell
                    ),
                    key=order,
                )
                previous = max((x for x in set(xmins) if x < xmin), default=0)
                writers = sorted(
                    (
                        p
                        for p in participations
                        if cell_of[p["data"]["student_id"]] == cell and previous < p["xmin"] < xmin
                    ),
                    key=lambda p: p["xmin"],
                )
                right += sum(
                    str(truth[r["data"]["answers"]["q2"]]) == p["data"]["student_id"]
                    for r, p in zip(batch, writers, strict=True)
                )
        assert right <= 12  # P(≥ 13 of 35 by chance) < 1e-5

    # 4. "Has answered" holds no time, nor anything of the answer; no column of either table keeps a time.
    async with deps.engine.connect() as conn:
        types = (
            await conn.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_name IN "
                    "('survey_response', 'survey_participation', 'survey_pending_response')"
                )
            )
        ).all()
    assert not [t for t in types if "time" in t.data_type], types
    assert all(set(p["data"]) == {"survey_id", "student_id"} for p in participations)


async def test_accepted_answers_survive_a_restart(api: Api, deps: Deps) -> None:
    """Answers acknowledged while their cell waits for a batch are in PostgreSQL, not in a process: a new
    process (its own engine, Redis client and caches) closes the survey and writes every one of them out."""
    import socket

    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from server.app import make_app

    world = await make_world(deps)
    parents = await make_parents(deps, world.classroom_a, 4)
    deps.clock = FakeClock(NOW)
    admin = world.token("district_admin")
    created = await api.post(
        f"{API}/districts/{world.district.id}/surveys",
        json={
            "title": "重启测试",
            "opens_at": NOW.isoformat(),
            "closes_at": (NOW + timedelta(days=7)).isoformat(),
            "dimensions": QUESTIONS,
        },
        token=admin,
    )
    survey_id = created.json()["id"]
    assert (await api.post(f"{API}/surveys/{survey_id}/publish", token=admin)).status == 200
    for i, actor in enumerate(parents):
        await submit(api, survey_id, actor, f"留言{i}")

    fresh = Deps.build(deps.settings, pool_size=2)
    fresh.clock = FakeClock(NOW + timedelta(hours=1))
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(make_app(fresh))
    server.add_sockets(sockets)
    other = Api(f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
    try:
        token = fresh.signer.issue(
            str(world.actors["district_admin"].user_id),
            world.actors["district_admin"].session_id,
            now=fresh.clock().timestamp(),
        )
        closed = await other.post(f"{API}/surveys/{survey_id}/close", token=token)
        assert closed.status == 200, closed.body
    finally:
        other.http.close()
        server.stop()
        await fresh.close()
    remarks = sorted(json.loads(r["row"])["answers"]["q2"] for r in (await dump(deps))["survey_response"])
    assert remarks == ["留言0", "留言1", "留言2", "留言3"]
