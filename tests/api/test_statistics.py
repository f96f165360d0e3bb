"""Statistics for admins: requirement completion by school, grade and classroom; catalogue size."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from course_catalog.loader import load_catalogue
from handlers.deps import Deps
from models.catalog.service import sync_catalogue
from models.learning.service import credit_hours
from server.app import API
from tests.builders import make_course, make_guardian, make_wechat_user, make_world
from tests.client import Api


async def complete_foundation(deps: Deps, parent_id: object, year: str = "2025-2026") -> None:
    async with deps.sessions() as s, s.begin():
        for n in range(4):
            await credit_hours(
                s,
                parent_id=parent_id,
                school_year=year,
                tier="foundation",
                class_hours=Decimal(2),
                source="evening_class",
                source_key=f"stat:{parent_id}:{year}:{n}",
            )


async def test_school_and_district_completion_shares(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        second_parent = await make_wechat_user(s)
        await make_guardian(s, second_parent, world.student_a)
    await complete_foundation(deps, world.actors["parent_a"].user_id)
    await complete_foundation(deps, world.actors["parent_b"].user_id, year="2024-2025")  # last year only

    school = await api.get(
        f"{API}/schools/{world.school_a.id}/learning/summary?school_year=2025-2026",
        token=world.token("school_admin_a"),
    )
    assert school.status == 200, school.body
    body = school.json()
    assert body["total"] == {"parents": 2, "complete": 1, "share": 0.5}
    assert body["by_grade"] == [{"grade": 3, "parents": 2, "complete": 1, "share": 0.5}]
    assert [(c["classroom_name"], c["complete"]) for c in body["by_classroom"]] == [("三年级1班", 1)]
    assert body["required"]["foundation"] == 8.0

    district = await api.get(
        f"{API}/districts/{world.district.id}/learning/summary?school_year=2025-2026",
        token=world.token("evaluator"),
    )
    assert district.status == 200
    rows = {r["school_name"]: (r["parents"], r["complete"]) for r in district.json()["by_school"]}
    assert rows == {"甲小学": (2, 1), "乙中学": (1, 0)}
    assert district.json()["total"] == {"parents": 3, "complete": 1, "share": 0.3333}
    # Aggregates only: no parent or child appears in what the district and evaluators read.
    text = district.body.decode()
    assert str(world.actors["parent_a"].user_id) not in text and "甲同学" not in text

    last_year = await api.get(
        f"{API}/districts/{world.district.id}/learning/summary?school_year=2024-2025",
        token=world.token("district_admin"),
    )
    assert {r["school_name"]: r["complete"] for r in last_year.json()["by_school"]} == {
        "甲小学": 0,
        "乙中学": 1,
    }


async def test_a_requirement_of_zero_everywhere_means_nobody_is_complete(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    await complete_foundation(deps, world.actors["parent_a"].user_id)
    put = await api.request(
        "PUT",
        f"{API}/districts/{world.district.id}/requirements/2025-2026",
        json_body={"foundation": 0, "general": 0, "custom": 0, "online": 0},
        token=world.token("district_admin"),
    )
    assert put.status == 200
    summary = await api.get(
        f"{API}/schools/{world.school_a.id}/learning/summary?school_year=2025-2026",
        token=world.token("school_admin_a"),
    )
    assert summary.json()["total"]["complete"] == 0


async def test_catalogue_size_against_targets(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        await sync_catalogue(s, load_catalogue())
        await make_course(s, tier="foundation", district=world.district)
        await make_course(s, tier="foundation", school=world.school_a)
        await make_course(s, tier="foundation", district=world.other_district)  # not this district's
    response = await api.get(
        f"{API}/districts/{world.district.id}/catalogue/summary", token=world.token("evaluator")
    )
    assert response.status == 200
    shipped = Counter(c.tier.value for c in load_catalogue())
    tiers = {t["tier"]: t for t in response.json()["tiers"]}
    assert tiers["foundation"]["courses"] == shipped["foundation"] + 2
    assert tiers["foundation"]["target"] == 120
    assert tiers["online"] == {
        "tier": "online",
        "courses": shipped["online"],
        "target": 2000,
        "share_of_target": round(shipped["online"] / 2000, 4),
    }
