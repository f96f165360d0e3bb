"""The hours ledger: idempotent credits, append-only rows, school-year separation, one certificate."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from handlers.deps import Deps
from models.learning import service as learning
from models.learning.tables import Certificate, HourCredit
from tests.builders import make_world


async def credit(deps: Deps, parent: uuid.UUID, key: str, hours: str = "2", year: str = "2025-2026") -> bool:
    async with deps.sessions() as s, s.begin():
        return await learning.credit_hours(
            s,
            parent_id=parent,
            school_year=year,
            tier="foundation",
            class_hours=Decimal(hours),
            source="evening_class",
            source_key=key,
        )


async def test_the_same_source_is_credited_once(deps: Deps) -> None:
    world = await make_world(deps)
    parent = world.actors["parent_a"].user_id
    assert await credit(deps, parent, "evening:1:p") is True
    assert await credit(deps, parent, "evening:1:p") is False
    async with deps.sessions() as s:
        summary = await learning.learning_summary(s, parent, "2025-2026")
    foundation = next(t for t in summary.tiers if t.tier == "foundation")
    assert (foundation.earned, foundation.missing) == (Decimal(2), Decimal(6))
    assert len(summary.credits) == 1


async def test_ledger_rows_cannot_be_changed_or_deleted(deps: Deps) -> None:
    world = await make_world(deps)
    await credit(deps, world.actors["parent_a"].user_id, "evening:2:p")
    for statement in ("UPDATE hour_credit SET class_hours = 8", "DELETE FROM hour_credit"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with deps.sessions() as s, s.begin():
                await s.execute(text(statement))
    async with deps.sessions() as s:
        assert await s.scalar(select(func.sum(HourCredit.class_hours))) == Decimal(2)


async def test_last_years_credits_stay_in_last_year(deps: Deps) -> None:
    world = await make_world(deps)
    parent = world.actors["parent_a"].user_id
    for n in range(4):
        await credit(deps, parent, f"evening:old-{n}", year="2024-2025")
    async with deps.sessions() as s:
        old = await learning.learning_summary(s, parent, "2024-2025")
        new = await learning.learning_summary(s, parent, "2025-2026")
    assert old.complete and old.certificate is not None
    assert not new.complete and new.certificate is None and new.credits == []


async def test_certificate_issued_exactly_once_under_concurrent_credits(deps: Deps) -> None:
    world = await make_world(deps)
    parent = world.actors["parent_a"].user_id
    # Eight sessions of 2 hours land at once; the requirement (8) is crossed by whichever commits 4th.
    results = await asyncio.gather(*(credit(deps, parent, f"evening:c{n}") for n in range(8)))
    assert all(results)
    async with deps.sessions() as s:
        certs = list(
            (await s.execute(select(Certificate).where(Certificate.parent_user_id == parent))).scalars()
        )
    assert len(certs) == 1
    assert certs[0].school_year == "2025-2026" and certs[0].number.startswith("JX2025")


async def test_district_requirement_overrides_the_default(deps: Deps) -> None:
    world = await make_world(deps)
    parent = world.actors["parent_a"].user_id
    async with deps.sessions() as s, s.begin():
        from models.learning.schemas import RequirementsIn

        await learning.set_requirements(
            s,
            world.district,
            "2025-2026",
            RequirementsIn(foundation=Decimal(4), general=Decimal(0), custom=Decimal(0), online=Decimal(0)),
            world.actors["district_admin"].user_id,
        )
    await credit(deps, parent, "evening:r1")
    await credit(deps, parent, "evening:r2")
    async with deps.sessions() as s:
        summary = await learning.learning_summary(s, parent, "2025-2026")
    assert summary.complete and summary.certificate is not None
