"""Home visits through HTTP: logging, reading with and without the sensitive part, editing under ETag and
If-Match, a child's history, a teacher's list, bad input, encryption at rest and the audit of every read."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select, text

from handlers.deps import Deps
from infra.embedded import pg_bin
from models.audit.tables import AuditEvent
from models.home_visits.retention import erase_expired_sensitive
from models.home_visits.tables import Followup, HomeVisit
from server.app import API
from tests.builders import (
    Actor,
    World,
    make_classroom,
    make_student,
    make_teacher,
    make_wechat_user,
    make_world,
    signed_in,
)
from tests.client import Api

NOTE = "父母离异，孩子随祖母生活，情绪低落"


def visit_body(w: World, deps: Deps, **extra: Any) -> dict[str, Any]:
    return {
        "student_ids": [str(w.student_a.id)],
        "visited_at": (deps.clock() - timedelta(hours=2)).isoformat(),
        "mode": "home",
        **extra,
    }


async def other_teacher_of_a(deps: Deps, w: World) -> Actor:
    """A teacher of school A who is neither a visitor nor the head teacher of the child."""
    async with deps.sessions() as s, s.begin():
        user = await make_wechat_user(s)
        await make_teacher(s, w.school_a, user, name="丁老师")
    return await signed_in(deps, user.id)


async def count(deps: Deps, model: Any) -> int:
    async with deps.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_visit_is_logged_with_only_students_time_and_mode(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(f"{API}/home-visits", visit_body(w, deps), token=w.token("teacher_a"))
    assert created.status == 201, created.body
    visit = created.json()
    assert visit["status"] == "submitted"
    assert visit["mode"] == "home"
    assert [t["name"] for t in visit["teachers"]] == ["甲老师"]
    assert [s["name"] for s in visit["students"]] == ["甲同学"]
    assert visit["school_year"] == "2025-2026" or visit["school_year"].count("-") == 1
    assert visit["private_note"] is None and visit["circumstances"] == []
    assert created.headers["ETag"]

    read = await api.get(f"{API}/home-visits/{visit['id']}", token=w.token("teacher_a"))
    assert read.status == 200
    assert read.headers["ETag"] == created.headers["ETag"]
    assert read.json()["id"] == visit["id"]


async def test_the_full_record_and_who_sees_its_sensitive_part(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        co_user = await make_wechat_user(s)
        co = await make_teacher(s, w.school_a, co_user, name="丙老师")
    co_visitor = await signed_in(deps, co_user.id)
    other = await other_teacher_of_a(deps, w)
    body = visit_body(
        w,
        deps,
        teacher_ids=[str(co.id)],
        duration_minutes=45,
        mode="phone",
        four_to_home={"care": {"done": True, "note": "了解孩子近况"}, "policy": {"done": True}},
        three_back=[
            {"kind": "demand", "text": "希望学校提供课后托管"},
            {"kind": "suggestion", "text": "多开家长夜校"},
        ],
        private_note=NOTE,
        circumstances=["left_behind", "special_family"],
    )
    created = await api.post(f"{API}/home-visits", body, token=w.token("teacher_a"))
    assert created.status == 201, created.body
    visit_id = created.json()["id"]
    assert sorted(t["name"] for t in created.json()["teachers"]) == sorted(["甲老师", "丙老师"])
    assert [i["state"] for i in created.json()["three_back"]] == ["open", "open"]
    assert created.json()["four_to_home"]["care"] == {"done": True, "note": "了解孩子近况"}
    assert created.json()["four_to_home"]["resources"] == {"done": False, "note": None}

    path = f"{API}/home-visits/{visit_id}"
    for label, token in (
        ("visitor", w.token("teacher_a")),
        ("co-visitor", co_visitor.token),
        ("school admin", w.token("school_admin_a")),
    ):
        seen = (await api.get(path, token=token)).json()
        assert seen["private_note"] == NOTE, label
        assert seen["circumstances"] == ["left_behind", "special_family"], label

    for label, token in (("another teacher of the school", other.token), ("the parent", w.token("parent_a"))):
        response = await api.get(path, token=token)
        assert response.status == 200, label
        seen = response.json()
        assert "private_note" not in seen and "circumstances" not in seen, label
        assert NOTE not in response.body.decode(), label
        assert [i["text"] for i in seen["three_back"]] == ["希望学校提供课后托管", "多开家长夜校"]

    assert (await api.get(path, token=w.token("district_admin"))).status == 403
    assert (await api.get(path, token=w.token("evaluator"))).status == 403
    for outsider in ("teacher_b", "school_admin_b", "parent_b", "other_district_admin"):
        response = await api.get(path, token=w.token(outsider))
        assert response.status in (403, 404), outsider
        if outsider != "other_district_admin":
            assert response.status == 404, outsider


async def test_the_head_teacher_now_reads_the_sensitive_part_of_a_visit_by_someone_else(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    other = await other_teacher_of_a(deps, w)
    created = await api.post(f"{API}/home-visits", visit_body(w, deps, private_note=NOTE), token=other.token)
    assert created.status == 201, created.body
    seen = (await api.get(f"{API}/home-visits/{created.json()['id']}", token=w.token("teacher_a"))).json()
    assert seen["private_note"] == NOTE


async def test_sensitive_fields_are_ciphertext_in_the_database_and_in_a_dump(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    body = visit_body(w, deps, private_note=NOTE, circumstances=["orphan"])
    created = await api.post(f"{API}/home-visits", body, token=w.token("teacher_a"))
    assert created.status == 201
    async with deps.sessions() as s:
        visit = await s.get(HomeVisit, uuid.UUID(created.json()["id"]))
        assert visit is not None and visit.private_note_encrypted and visit.circumstances_encrypted
        assert NOTE.encode() not in visit.private_note_encrypted
        assert b"orphan" not in visit.circumstances_encrypted
        as_text = await s.scalar(text("SELECT row_to_json(h)::text FROM home_visit h"))
        assert NOTE not in as_text and "orphan" not in as_text
    url = deps.settings.database_url or ""
    dump = await asyncio.to_thread(
        subprocess.run,
        [pg_bin("pg_dump"), "--data-only", url.replace("+asyncpg", "")],
        capture_output=True,
        check=True,
    )
    assert b"home_visit" in dump.stdout
    assert NOTE.encode() not in dump.stdout and b"orphan" not in dump.stdout


async def test_every_read_is_audited_with_the_sensitive_fields_it_carried(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    other = await other_teacher_of_a(deps, w)
    created = await api.post(
        f"{API}/home-visits", visit_body(w, deps, private_note=NOTE), token=w.token("teacher_a")
    )
    visit_id = created.json()["id"]
    path = f"{API}/home-visits/{visit_id}"
    assert (await api.get(path, token=w.token("teacher_a"))).status == 200
    assert (await api.get(path, token=w.token("teacher_a"))).status == 200
    assert (await api.get(path, token=other.token)).status == 200
    assert (await api.get(path, token=w.token("teacher_b"))).status == 404  # nothing read: no event

    async with deps.sessions() as s:
        events = list(
            (
                await s.execute(
                    select(AuditEvent).where(AuditEvent.action.like("home_visit%")).order_by(AuditEvent.at)
                )
            ).scalars()
        )
    reads = [e for e in events if e.action == "home_visit_read"]
    assert [(str(e.actor_user_id), e.subject["fields"]) for e in reads] == [
        (str(w.actors["teacher_a"].user_id), "private_note,circumstances"),
        (str(w.actors["teacher_a"].user_id), "private_note,circumstances"),
        (str(other.user_id), ""),
    ]
    assert all(e.subject["visit_id"] == visit_id and e.school_id == w.school_a.id for e in reads)
    [creation] = [e for e in events if e.action == "home_visit_created"]
    assert creation.subject["visit_id"] == visit_id
    assert len({e.request_id for e in reads}) == 3


async def test_the_audit_log_refuses_update_and_delete(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(f"{API}/home-visits", visit_body(w, deps), token=w.token("teacher_a"))
    assert created.status == 201
    for statement in ("UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"):
        async with deps.sessions() as s:
            try:
                await s.execute(text(statement))
            except Exception as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement} was allowed")
    assert await count(deps, AuditEvent) == 1


async def test_patch_needs_the_current_etag(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(f"{API}/home-visits", visit_body(w, deps), token=w.token("teacher_a"))
    path = f"{API}/home-visits/{created.json()['id']}"
    first = created.headers["ETag"]

    missing = await api.patch(path, {"duration_minutes": 30}, token=w.token("teacher_a"))
    assert missing.status == 428 and missing.code == "precondition_required"

    changed = await api.patch(
        path,
        {"duration_minutes": 30, "private_note": NOTE},
        token=w.token("teacher_a"),
        headers={"If-Match": first},
    )
    assert changed.status == 200, changed.body
    assert changed.json()["duration_minutes"] == 30 and changed.json()["private_note"] == NOTE
    assert changed.headers["ETag"] != first

    stale = await api.patch(
        path, {"duration_minutes": 40}, token=w.token("teacher_a"), headers={"If-Match": first}
    )
    assert stale.status == 412 and stale.code == "precondition_failed"
    assert (await api.get(path, token=w.token("teacher_a"))).json()["duration_minutes"] == 30

    other = await other_teacher_of_a(deps, w)
    forbidden = await api.patch(
        path, {"mode": "video"}, token=other.token, headers={"If-Match": changed.headers["ETag"]}
    )
    assert forbidden.status == 403
    foreign = await api.patch(path, {"mode": "video"}, token=w.token("teacher_b"), headers={"If-Match": "*"})
    assert foreign.status == 404
    bad = await api.patch(
        path, {"mode": "car"}, token=w.token("teacher_a"), headers={"If-Match": changed.headers["ETag"]}
    )
    assert bad.status == 422
    unknown = await api.patch(
        path, {"colour": "red"}, token=w.token("teacher_a"), headers={"If-Match": changed.headers["ETag"]}
    )
    assert unknown.status == 422
    async with deps.sessions() as s:
        [event] = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "home_visit_updated"))
        ).scalars()
        assert event.subject["changed"] == "private_note"


async def test_two_editors_with_the_same_etag_one_wins(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(f"{API}/home-visits", visit_body(w, deps), token=w.token("teacher_a"))
    path = f"{API}/home-visits/{created.json()['id']}"
    tag = created.headers["ETag"]
    answers = await asyncio.gather(
        api.patch(path, {"duration_minutes": 20}, token=w.token("teacher_a"), headers={"If-Match": tag}),
        api.patch(path, {"duration_minutes": 50}, token=w.token("school_admin_a"), headers={"If-Match": tag}),
    )
    assert sorted(a.status for a in answers) == [200, 412]
    winner = next(a for a in answers if a.status == 200)
    final = (await api.get(path, token=w.token("teacher_a"))).json()
    assert final["duration_minutes"] == winner.json()["duration_minutes"]


async def test_a_draft_is_finished_later_and_its_items_become_followups_on_submit(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    body = visit_body(w, deps, status="draft", three_back=[{"kind": "feedback", "text": "作业太多"}])
    created = await api.post(f"{API}/home-visits", body, token=w.token("teacher_a"))
    assert created.status == 201 and created.json()["status"] == "draft"
    assert created.json()["three_back"] == [
        {"kind": "feedback", "text": "作业太多", "followup_id": None, "state": None, "answer": None}
    ]
    assert await count(deps, Followup) == 0
    path = f"{API}/home-visits/{created.json()['id']}"
    assert (await api.get(path, token=w.token("parent_a"))).status == 404  # a draft is the teacher's own

    submitted = await api.patch(
        path,
        {"status": "submitted"},
        token=w.token("teacher_a"),
        headers={"If-Match": created.headers["ETag"]},
    )
    assert submitted.status == 200, submitted.body
    assert submitted.json()["three_back"][0]["state"] == "open"
    assert await count(deps, Followup) == 1
    back = await api.patch(
        path, {"status": "draft"}, token=w.token("teacher_a"), headers={"If-Match": submitted.headers["ETag"]}
    )
    assert back.status == 409 and back.code == "visit_submitted"
    assert (await api.get(path, token=w.token("parent_a"))).status == 200


async def test_bad_input_answers_a_problem_and_writes_nothing(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        foreign_teacher = await make_teacher(s, w.school_b, name="外校老师")
    token = w.token("teacher_a")
    cases: list[tuple[dict[str, Any], int, str]] = [
        (visit_body(w, deps, colour="red"), 422, "unknown field"),
        ({"visited_at": visit_body(w, deps)["visited_at"], "mode": "home"}, 422, "no students"),
        (visit_body(w, deps, student_ids=[str(w.student_b.id)]), 404, "a student of another school"),
        (visit_body(w, deps, student_ids=[str(uuid.uuid4())]), 404, "a student that does not exist"),
        (visit_body(w, deps, teacher_ids=[str(foreign_teacher.id)]), 422, "a co-visitor of another school"),
        (
            visit_body(w, deps, visited_at=(deps.clock() + timedelta(days=1)).isoformat()),
            422,
            "in the future",
        ),
        (visit_body(w, deps, duration_minutes=0), 422, "duration 0"),
        (visit_body(w, deps, duration_minutes=601), 422, "duration over 600"),
        (visit_body(w, deps, mode="car"), 422, "unknown mode"),
        (visit_body(w, deps, circumstances=["rich"]), 422, "unknown circumstance"),
        (visit_body(w, deps, three_back=[{"kind": "demand", "text": "  "}]), 422, "empty 三带回 text"),
        (visit_body(w, deps, three_back=[{"kind": "wish", "text": "x"}]), 422, "unknown kind"),
    ]
    for body, status, label in cases:
        response = await api.post(f"{API}/home-visits", body, token=token)
        assert response.status == status, (label, response.body)
        assert response.headers["Content-Type"].startswith("application/problem+json"), label
        assert response.json()["title"], label
    future = await api.post(
        f"{API}/home-visits",
        visit_body(w, deps, visited_at=(deps.clock() + timedelta(days=1)).isoformat()),
        token=token,
    )
    assert future.code == "visited_in_future" and "晚于" in future.json()["detail"]
    malformed = await api.request(
        "POST",
        f"{API}/home-visits",
        body=b"{not json",
        token=token,
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status == 400
    assert await count(deps, HomeVisit) == 0
    assert await count(deps, Followup) == 0


async def test_a_childs_history_for_staff_and_for_the_parent(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    first = await api.post(
        f"{API}/home-visits", visit_body(w, deps, private_note=NOTE), token=w.token("teacher_a")
    )
    await api.post(
        f"{API}/home-visits",
        visit_body(
            w, deps, mode="video", status="draft", visited_at=(deps.clock() - timedelta(hours=1)).isoformat()
        ),
        token=w.token("teacher_a"),
    )
    path = f"{API}/students/{w.student_a.id}/home-visits"
    as_teacher = await api.get(path, token=w.token("teacher_a"))
    assert as_teacher.status == 200
    assert [v["mode"] for v in as_teacher.json()["items"]] == ["home", "video"]
    assert as_teacher.json()["items"][0]["private_note"] == NOTE

    as_parent = await api.get(path, token=w.token("parent_a"))
    assert [v["id"] for v in as_parent.json()["items"]] == [first.json()["id"]]
    assert "private_note" not in as_parent.json()["items"][0]
    for outsider in ("parent_b", "teacher_b", "school_admin_b"):
        assert (await api.get(path, token=w.token(outsider))).status == 404, outsider
    assert (
        await api.get(f"{API}/students/{uuid.uuid4()}/home-visits", token=w.token("teacher_a"))
    ).status == 404
    assert (await api.get(path, token=w.token("district_admin"))).status == 403
    async with deps.sessions() as s:
        events = list(
            (
                await s.execute(select(AuditEvent).where(AuditEvent.action == "student_home_visits_read"))
            ).scalars()
        )
    assert sorted(e.subject["fields"] for e in events) == ["", "private_note,circumstances"]


async def test_the_teachers_list_puts_unvisited_students_first(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        second = await make_student(s, w.classroom_a, "乙同学", "A002")
        other_class = await make_classroom(s, w.school_a, "四年级2班", 4)
        assigned = await make_student(s, other_class, "丙同学", "A100")
    created = await api.post(
        f"{API}/home-visits", visit_body(w, deps, mode="phone"), token=w.token("teacher_a")
    )
    assert created.status == 201
    todo = await api.get(f"{API}/me/home-visits/todo", token=w.token("teacher_a"))
    assert todo.status == 200, todo.body
    items = todo.json()["items"]
    assert [i["student_name"] for i in items] == ["乙同学", "甲同学"]
    assert items[0]["last_visit"] is None
    assert items[1]["last_visit"]["mode"] == "phone"
    assert (todo.json()["students"], todo.json()["visited"]) == (2, 1)

    year = todo.json()["school_year"]
    given = await api.post(
        f"{API}/schools/{w.school_a.id}/home-visit-assignments",
        {"teacher_id": str(w.teacher_a.id), "student_ids": [str(assigned.id)]},
        token=w.token("school_admin_a"),
    )
    assert given.status == 200, given.body
    todo = (await api.get(f"{API}/me/home-visits/todo?school_year={year}", token=w.token("teacher_a"))).json()
    assert {i["student_name"]: i["reason"] for i in todo["items"]} == {
        "乙同学": "head_teacher",
        "丙同学": "assigned",
        "甲同学": "head_teacher",
    }
    earlier = (
        await api.get(f"{API}/me/home-visits/todo?school_year=2020-2021", token=w.token("teacher_a"))
    ).json()
    assert earlier["visited"] == 0 and len(earlier["items"]) == 2
    assert (
        await api.get(f"{API}/me/home-visits/todo?school_year=2020", token=w.token("teacher_a"))
    ).status == 422
    assert (await api.get(f"{API}/me/home-visits/todo", token=w.token("parent_a"))).status == 403
    foreign = await api.post(
        f"{API}/schools/{w.school_a.id}/home-visit-assignments",
        {"teacher_id": str(w.teacher_a.id), "student_ids": [str(w.student_b.id)]},
        token=w.token("school_admin_a"),
    )
    assert foreign.status == 404
    assert second.id


async def test_a_school_admin_lists_the_schools_audit_log(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(
        f"{API}/home-visits", visit_body(w, deps, private_note=NOTE), token=w.token("teacher_a")
    )
    visit_id = created.json()["id"]
    await api.get(f"{API}/home-visits/{visit_id}", token=w.token("teacher_a"))
    await api.get(f"{API}/home-visits/{visit_id}", token=w.token("school_admin_a"))
    path = f"{API}/schools/{w.school_a.id}/audit-log"
    listed = await api.get(path, token=w.token("school_admin_a"))
    assert listed.status == 200, listed.body
    items = listed.json()["items"]
    assert [(i["action"], i["label"]) for i in items] == [
        ("home_visit_created", "新建家访记录"),
        ("home_visit_read", "查看家访记录"),
        ("home_visit_read", "查看家访记录"),
    ]
    assert items[1]["subject"] == {"visit_id": visit_id, "fields": "private_note,circumstances"}
    assert NOTE not in listed.body.decode()
    by_admin = await api.get(
        f"{path}?actor={w.actors['school_admin_a'].user_id}", token=w.token("school_admin_a")
    )
    assert [i["actor_user_id"] for i in by_admin.json()["items"]] == [str(w.actors["school_admin_a"].user_id)]
    since = quote((deps.clock() + timedelta(minutes=1)).isoformat())
    later = await api.get(f"{path}?since={since}", token=w.token("school_admin_a"))
    assert later.status == 200 and later.json()["items"] == []
    assert (await api.get(path, token=w.token("teacher_a"))).status == 403
    assert (
        await api.get(f"{API}/schools/{w.school_b.id}/audit-log", token=w.token("school_admin_a"))
    ).status == 404
    assert (await api.get(f"{path}?since=yesterday", token=w.token("school_admin_a"))).status == 422


async def test_sensitive_fields_of_old_visits_are_erased(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    old = await api.post(
        f"{API}/home-visits",
        visit_body(w, deps, private_note=NOTE, visited_at=(deps.clock() - timedelta(days=1100)).isoformat()),
        token=w.token("teacher_a"),
    )
    recent = await api.post(
        f"{API}/home-visits", visit_body(w, deps, private_note=NOTE), token=w.token("teacher_a")
    )
    async with deps.sessions() as s, s.begin():
        erased = await erase_expired_sensitive(s, deps.clock(), deps.settings.visit_sensitive_retention_days)
    assert erased == 1
    gone = (await api.get(f"{API}/home-visits/{old.json()['id']}", token=w.token("teacher_a"))).json()
    assert gone["private_note"] is None and gone["circumstances"] == []
    kept = (await api.get(f"{API}/home-visits/{recent.json()['id']}", token=w.token("teacher_a"))).json()
    assert kept["private_note"] == NOTE
