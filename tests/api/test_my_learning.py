"""A parent's hours over HTTP: required vs earned per tier, the school year, the certificate and its PDF,
and the district's requirements."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.learning import service as learning
from tests.builders import (
    FakeClock,
    World,
    make_classroom,
    make_course,
    make_parent_of,
    make_world,
    token_for,
)
from tests.client import Api

API = "/api/v1"
AUTUMN_2025 = datetime(2025, 10, 14, 19, 0, tzinfo=SHANGHAI)
NOTHING_ELSE = {"general": 0, "custom": 0, "online": 0}


async def evening_class(
    deps: Deps, parent: uuid.UUID, key: str, *, year: str = "2025-2026", course: uuid.UUID | None = None
) -> None:
    """Credit an evening-class attendance of 2 class hours, as checking in at one does."""
    async with deps.sessions() as s, s.begin():
        await learning.credit_hours(
            s,
            parent_id=parent,
            school_year=year,
            tier="foundation",
            class_hours=Decimal(2),
            source="evening_class",
            source_key=f"evening:{key}:{parent}",
            course_id=course,
        )


async def my_learning(api: Api, token: str, query: str = "") -> dict[str, Any]:
    response = await api.get(f"{API}/me/learning{query}", token=token)
    assert response.status == 200, response.body
    return dict(response.json())


def hours(summary: dict[str, Any], field: str) -> dict[str, float]:
    return {t["tier"]: t[field] for t in summary["tiers"]}


async def setup(deps: Deps) -> World:
    world = await make_world(deps)
    deps.clock = FakeClock(AUTUMN_2025)
    return world


async def test_a_new_parent_sees_what_the_year_requires(api: Api, deps: Deps) -> None:
    world = await setup(deps)
    summary = await my_learning(api, world.token("parent_a"))
    assert summary["school_year"] == "2025-2026"
    assert summary["complete"] is False
    assert hours(summary, "required") == {"foundation": 8, **NOTHING_ELSE}
    assert hours(summary, "earned") == {"foundation": 0, **NOTHING_ELSE}
    assert hours(summary, "missing") == {"foundation": 8, **NOTHING_ELSE}
    assert summary["credits"] == [] and summary["certificate"] is None

    certificates = await api.get(f"{API}/me/certificates", token=world.token("parent_a"))
    assert certificates.status == 200 and certificates.json()["items"] == []
    assert (await api.get(f"{API}/me/learning")).status == 401


async def test_the_default_school_year_follows_the_clock(api: Api, deps: Deps) -> None:
    world = await setup(deps)
    token = world.token("parent_a")
    parent = world.actors["parent_a"].user_id
    await evening_class(deps, parent, "last-year", year="2024-2025")
    await evening_class(deps, parent, "this-year", year="2025-2026")

    clock = FakeClock(datetime(2025, 8, 31, 23, 59, tzinfo=SHANGHAI))
    deps.clock = clock
    last_year = await my_learning(api, token)
    assert last_year["school_year"] == "2024-2025"
    assert [c["source"] for c in last_year["credits"]] == ["evening_class"]
    assert hours(last_year, "earned")["foundation"] == 2

    clock.tick(60)  # Sept 1, 00:00 in Shanghai: a new school year with its own credits
    this_year = await my_learning(api, token)
    assert this_year["school_year"] == "2025-2026"
    assert len(this_year["credits"]) == 1 and hours(this_year, "missing")["foundation"] == 6

    explicit = await my_learning(api, token, "?school_year=2024-2025")
    assert explicit["school_year"] == "2024-2025" and explicit["credits"] == last_year["credits"]
    assert (await my_learning(api, token, "?school_year=2023-2024"))["credits"] == []

    for bad in ("2025", "2025-2027", "2025/2026", "25-26", "abcd-efgh", "2025-2026x"):
        response = await api.get(f"{API}/me/learning?school_year={bad}", token=token)
        assert response.status == 422, bad
    assert (await api.get(f"{API}/me/learning?year=2025-2026", token=token)).status == 422


async def test_credits_then_a_certificate_once_the_requirement_is_met(api: Api, deps: Deps) -> None:
    world = await setup(deps)
    token = world.token("parent_a")
    parent = world.actors["parent_a"].user_id
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="foundation", title="青春期亲子沟通")

    for n in range(3):
        await evening_class(deps, parent, f"session-{n}", course=course.id)
    partway = await my_learning(api, token)
    assert partway["complete"] is False and partway["certificate"] is None
    assert hours(partway, "earned")["foundation"] == 6 and hours(partway, "missing")["foundation"] == 2
    assert [(c["source"], c["tier"], c["class_hours"], c["course_title"]) for c in partway["credits"]] == [
        ("evening_class", "foundation", 2, "青春期亲子沟通")
    ] * 3
    assert (await api.get(f"{API}/me/certificates", token=token)).json()["items"] == []

    await evening_class(deps, parent, "session-3", course=course.id)
    done = await my_learning(api, token)
    assert done["complete"] is True and hours(done, "missing")["foundation"] == 0
    certificate = done["certificate"]
    assert certificate is not None
    assert certificate["school_year"] == "2025-2026" and certificate["number"].startswith("JX2025")
    issued = datetime.fromisoformat(certificate["issued_at"])
    assert issued.tzinfo is not None
    assert certificate["pdf_url"] == f"{API}/me/certificates/{certificate['id']}/pdf"

    listed = await api.get(f"{API}/me/certificates", token=token)
    assert listed.status == 200 and listed.json()["items"] == [certificate]

    # More hours later in the year: still the one certificate, same number.
    await evening_class(deps, parent, "session-4", course=course.id)
    later = await my_learning(api, token)
    assert later["certificate"] == certificate and hours(later, "earned")["foundation"] == 10
    assert len((await api.get(f"{API}/me/certificates", token=token)).json()["items"]) == 1

    # Nobody else's learning shows it.
    other = await my_learning(api, world.token("parent_b"))
    assert other["certificate"] is None and other["credits"] == []
    assert (await api.get(f"{API}/me/certificates", token=world.token("parent_b"))).json()["items"] == []


async def test_the_certificate_pdf(api: Api, deps: Deps) -> None:
    world = await setup(deps)
    parent = world.actors["parent_a"].user_id
    for n in range(4):
        await evening_class(deps, parent, f"pdf-{n}")
    certificate = (await my_learning(api, world.token("parent_a")))["certificate"]

    pdf = await api.get(certificate["pdf_url"], token=world.token("parent_a"))
    assert pdf.status == 200
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.body.startswith(b"%PDF-") and len(pdf.body) > 1000
    assert certificate["number"] in pdf.headers["Content-Disposition"]

    for token in (world.token("parent_b"), world.token("school_admin_a"), world.token("district_admin")):
        response = await api.get(certificate["pdf_url"], token=token)
        assert response.status == 404 and not response.body.startswith(b"%PDF")
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        response = await api.get(f"{API}/me/certificates/{missing}/pdf", token=world.token("parent_a"))
        assert response.status == 404
    assert (await api.get(certificate["pdf_url"])).status == 401


# ---- the district's requirements ------------------------------------------------------------------------
async def test_district_requirements_change_what_its_parents_need(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        classroom = await make_classroom(s, world.school_c, "丙一班", 1)
        parent_c, _ = await make_parent_of(s, classroom)
    token_c = await token_for(deps, parent_c.id)
    deps.clock = FakeClock(AUTUMN_2025)
    path = f"{API}/districts/{world.district.id}/requirements/2025-2026"
    admin = world.token("district_admin")

    defaults = await api.get(path, token=admin)
    assert defaults.status == 200
    assert defaults.json() == {
        "district_id": str(world.district.id),
        "school_year": "2025-2026",
        "foundation": 8,
        **NOTHING_ELSE,
    }

    wanted = {"foundation": 6, "general": 2, "custom": 0, "online": 1.5}
    updated = await api.request("PUT", path, json_body=wanted, token=admin)
    assert updated.status == 200, updated.body
    assert updated.json() == {"district_id": str(world.district.id), "school_year": "2025-2026", **wanted}
    assert (await api.get(path, token=admin)).json() == updated.json()

    # Parents of the district (both schools) now need the new hours; another district's parents do not,
    # nor does another school year.
    for token in (world.token("parent_a"), world.token("parent_b")):
        summary = await my_learning(api, token)
        assert hours(summary, "required") == wanted and hours(summary, "missing") == wanted
    assert hours(await my_learning(api, token_c), "required") == {"foundation": 8, **NOTHING_ELSE}
    earlier = await my_learning(api, world.token("parent_a"), "?school_year=2024-2025")
    assert hours(earlier, "required") == {"foundation": 8, **NOTHING_ELSE}

    # The evaluator may read them, not change them.
    read = await api.get(path, token=world.token("evaluator"))
    assert read.status == 200 and read.json() == updated.json()
    refused = await api.request(
        "PUT", path, json_body={**wanted, "foundation": 0}, token=world.token("evaluator")
    )
    assert refused.status == 403
    assert (await api.get(path, token=admin)).json()["foundation"] == 6

    for bad in ({**wanted, "foundation": -1}, {**wanted, "online": 0.25}, {"foundation": 4}):
        response = await api.request("PUT", path, json_body=bad, token=admin)
        assert response.status == 422, bad
    bad_year = await api.get(f"{API}/districts/{world.district.id}/requirements/2025-2027", token=admin)
    assert bad_year.status == 404


async def test_meeting_a_lowered_requirement_issues_the_certificate(api: Api, deps: Deps) -> None:
    world = await setup(deps)
    token = world.token("parent_a")
    parent = world.actors["parent_a"].user_id
    for n in range(2):
        await evening_class(deps, parent, f"low-{n}")
    assert (await my_learning(api, token))["complete"] is False

    lowered = await api.request(
        "PUT",
        f"{API}/districts/{world.district.id}/requirements/2025-2026",
        json_body={"foundation": 4, **NOTHING_ELSE},
        token=world.token("district_admin"),
    )
    assert lowered.status == 200

    # Due at once, whichever the parent opens first.
    listed = (await api.get(f"{API}/me/certificates", token=token)).json()["items"]
    assert [c["school_year"] for c in listed] == ["2025-2026"]
    summary = await my_learning(api, token)
    assert summary["complete"] is True and summary["certificate"] == listed[0]

    untouched = await my_learning(api, world.token("parent_b"))  # nothing earned: nothing issued
    assert untouched["complete"] is False and untouched["certificate"] is None
    assert (await api.get(f"{API}/me/certificates", token=world.token("parent_b"))).json()["items"] == []
