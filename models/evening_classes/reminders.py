"""The day-before reminder a parent with a confirmed seat gets (a WeChat subscription message)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from models.evening_classes.rules import message_time
from models.evening_classes.tables import EveningClass
from models.notifications import service as notifications
from models.notifications.allowance import Templates

if TYPE_CHECKING:  # signups imports this module; ClassRules is only an annotation here
    from models.evening_classes.signups import ClassRules

REMINDER_BEFORE = timedelta(days=1)


def class_reminder(
    evening: EveningClass | ClassRules, parent_id: uuid.UUID, templates: Templates, now: datetime
) -> notifications.Job:
    """The day-before reminder for a confirmed seat (at once if the class is sooner than that); not
    sent at all once the class has begun."""
    return notifications.Job(
        kind="class_reminder",
        user_id=parent_id,
        subject_id=evening.id,
        due_at=max(now, evening.starts_at - REMINDER_BEFORE),
        template_id=templates.class_reminder,
        page=f"pages/evening-class/detail?id={evening.id}",
        data={
            "thing1": evening.title[:20],
            "time2": message_time(evening.starts_at),
            "thing3": (evening.place or "线上")[:20],
        },
        expires_at=evening.starts_at,  # once the class has begun, a reminder only confuses
    )
