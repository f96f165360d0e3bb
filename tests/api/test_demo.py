"""The demo data `make run` loads at every start (development only)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from course_catalog.loader import load_catalogue
from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.catalog.service import sync_catalogue
from models.demo import load_demo, load_demo_evening_classes
from models.evening_classes.tables import EveningClass

MONDAY = datetime(2025, 10, 13, 9, 0, tzinfo=SHANGHAI)


async def test_starting_the_demo_week_after_week_lists_each_class_once(deps: Deps) -> None:
    """Each week the demo is started brings upcoming classes; a class of last week's set that is still
    ahead is not doubled by this week's."""
    async with deps.sessions() as s, s.begin():
        await sync_catalogue(s, load_catalogue())
    for now in (MONDAY, MONDAY + timedelta(days=7), MONDAY + timedelta(days=9), MONDAY + timedelta(days=30)):
        async with deps.sessions() as s, s.begin():
            await load_demo(s, now, deps.settings.privacy_policy_version)
            await load_demo_evening_classes(s, now)
        async with deps.sessions() as s:
            upcoming = (
                await s.execute(
                    select(EveningClass.school_id, EveningClass.course_id, EveningClass.capacity).where(
                        EveningClass.starts_at > now
                    )
                )
            ).all()
        per_course = Counter((school, course) for school, course, _ in upcoming)
        assert len(per_course) == 5 and set(per_course.values()) == {1}, now
        assert [capacity for *_, capacity in upcoming].count(2) == 1  # the one class with a waitlist
