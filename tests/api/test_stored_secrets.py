"""A one-time binding code, answered under an Idempotency-Key, is kept for replays a day long in
PostgreSQL and Redis: sealed there, so that neither a database dump nor Redis's files give it away."""

from __future__ import annotations

from sqlalchemy import select

from handlers.deps import Deps
from models.idempotency.tables import IdempotencyRecord
from server.app import API
from tests.builders import make_world
from tests.client import Api


async def test_a_binding_code_kept_for_replays_is_not_stored_in_plaintext(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/teachers"
    key = {"Idempotency-Key": "new-teacher-wang"}
    created = await api.post(url, {"name": "王老师"}, token=w.token("school_admin_a"), headers=key)
    assert created.status == 201, created.body
    code = created.json()["binding_code"]["code"]
    assert len(code) == 10

    async with deps.sessions() as s:
        [(stored,)] = (await s.execute(select(IdempotencyRecord.body))).all()
    assert stored is not None and code not in stored and "王老师" not in stored
    in_redis = [
        await deps.redis.get(k) async for k in deps.redis.scan_iter(match=f"{deps.keys.prefix}idem:*")
    ]
    assert in_redis and all(code.encode() not in v and "王老师".encode() not in v for v in in_redis)

    # The replay still answers what the first request did, from Redis and, once Redis forgot, from
    # PostgreSQL.
    replayed = await api.post(url, {"name": "王老师"}, token=w.token("school_admin_a"), headers=key)
    assert replayed.status == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == created.json()
    for k in [k async for k in deps.redis.scan_iter(match=f"{deps.keys.prefix}idem:*")]:
        await deps.redis.delete(k)
    from_db = await api.post(url, {"name": "王老师"}, token=w.token("school_admin_a"), headers=key)
    assert from_db.status == 201 and from_db.json() == created.json()

    # The code itself, which only the admin was shown, still binds the teacher.
    assert (await api.post(f"{API}/bindings", {"code": code}, token=w.token("stranger"))).status == 201
