"""The HTTP shapes of subscription allowances."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SubscriptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accepted: list[str] = Field(
        min_length=1,
        max_length=3,  # wx.requestSubscribeMessage asks for three templates at most
        description="the template ids the parent accepted in wx.requestSubscribeMessage",
    )


class Subscription(BaseModel):
    kind: Literal["class_reminder", "waitlist_promoted", "followup_answered"]
    template_id: str
    remaining: int = Field(description="messages of this kind the parent will still receive")


class SubscriptionsOut(BaseModel):
    items: list[Subscription]
