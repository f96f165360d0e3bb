"""A parent's WeChat subscription messages: how many of each kind they will still receive."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from models.notifications import allowance
from models.notifications.schemas import SubscriptionsIn, SubscriptionsOut


class MySubscriptionsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "我的订阅消息：每种提醒（模板）还能收到几条；为 0 时小程序再请家长订阅",
            response=SubscriptionsOut,
            errors=(401,),
            scope=Scope.family,
        ),
        "post": Operation(
            "记录家长在订阅弹窗（wx.requestSubscribeMessage）中同意的模板：每同意一次可收到一条",
            body=SubscriptionsIn,
            response=SubscriptionsOut,
            errors=(401, 422),
            idempotent=True,
            scope=Scope.family,
        ),
    }

    async def get(self) -> None:
        async with self.transaction() as session:
            out = await allowance.listed(session, self.me.id, self.deps.templates)
        self.send(out)

    async def post(self) -> None:
        body = self.body(SubscriptionsIn)
        templates = self.deps.templates
        async with self.transaction() as session:
            await allowance.grant(session, self.me.id, body.accepted, templates, self.deps.clock())
            out = await allowance.listed(session, self.me.id, templates)
        self.send(out)
