"""Health probes and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from sqlalchemy import text

from handlers.base import ApiHandler
from handlers.policy import AuthMode, Operation

READY_TIMEOUT = 2.0


class HealthHandler(ApiHandler):
    openapi: ClassVar = {"get": Operation("进程存活", auth=AuthMode.none)}

    async def get(self) -> None:
        self.send({"status": "ok"})


class ReadyHandler(ApiHandler):
    openapi: ClassVar = {"get": Operation("PostgreSQL 与 Redis 可用", auth=AuthMode.none)}

    async def get(self) -> None:
        if self.deps.in_flight.stopping:
            # A load balancer that asks over a kept connection learns to send nothing more here.
            self.send({"status": "stopping", "checks": {}}, status=503)
            return
        checks: dict[str, str] = {}

        async def database() -> None:
            async with self.deps.sessions() as session:
                await session.execute(text("SELECT 1"))

        for name, probe in (("postgresql", database), ("redis", self.deps.redis.ping)):
            try:
                await asyncio.wait_for(probe(), READY_TIMEOUT)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        self.send({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


class OpenApiHandler(ApiHandler):
    openapi: ClassVar = {"get": Operation("OpenAPI 文档", auth=AuthMode.none)}
    document: ClassVar[bytes] = b"{}"

    async def get(self) -> None:
        self.send(self.document)
