"""The one object handlers receive: settings, database sessions, Redis, the WeChat gateway, the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.config import Settings
from server.db import make_engine, make_session_factory
from server.redis import Keys, make_redis
from server.security import FieldCipher, TokenSigner
from server.wechat import WechatGateway

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai_now() -> datetime:
    return datetime.now(SHANGHAI)


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    wechat: WechatGateway
    signer: TokenSigner
    cipher: FieldCipher
    clock: Callable[[], datetime] = field(default=shanghai_now)

    @classmethod
    def build(cls, settings: Settings, *, pool_size: int = 10) -> Deps:
        """Create the clients for one process (call after forking, never before)."""
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("database_url and redis_url must be resolved before building deps")
        engine = make_engine(settings.database_url, pool_size=pool_size)
        redis = make_redis(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        wechat = WechatGateway(
            appid=settings.wechat_appid or "",
            secret=settings.wechat_secret.get_secret_value() if settings.wechat_secret else "",
            api_base=settings.wechat_api_base,
            timeout=settings.wechat_timeout,
            redis=redis,
            keys=keys,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            redis=redis,
            keys=keys,
            wechat=wechat,
            signer=TokenSigner(
                settings.jwt_secret.get_secret_value(), settings.jwt_issuer, settings.access_token_ttl
            ),
            cipher=FieldCipher(settings.field_encryption_key.get_secret_value()),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
