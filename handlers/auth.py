"""Login endpoints: WeChat code, staff password, refresh rotation, logout."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.base import ApiHandler
from handlers.policy import AuthMode, Operation
from models.accounts import auth
from models.accounts.principal import Principal, load_principal
from models.accounts.schemas import EmptyIn, PasswordLoginIn, RefreshIn, TokenOut, WechatLoginIn


class _TokenHandler(ApiHandler):
    async def login_rate_limit(self, endpoint: str, per_minute: int) -> None:
        """Per address and endpoint: WeChat logins and refreshes from a school's shared address do not
        use up its admins' password logins, nor the other way round."""
        await self.rate_limit(f"{endpoint}:{self.client_ip}", per_minute)

    async def respond_with(self, session: AsyncSession, issued: auth.IssuedTokens) -> TokenOut:
        principal = await load_principal(session, issued.user_id)
        assert principal is not None
        await self.deps.redis.set(
            self.deps.keys.principal(str(issued.user_id)), principal.model_dump_json(), ex=600
        )
        self.set_header("Cache-Control", "no-store")  # tokens (RFC 6749 §5.1)
        return TokenOut(
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_in=issued.expires_in,
            user=principal,
        )


class WechatLoginHandler(_TokenHandler):
    openapi: ClassVar = {
        "post": Operation(
            "用微信 wx.login() 的 code 登录",
            auth=AuthMode.none,
            body=WechatLoginIn,
            response=TokenOut,
            errors=(401, 403, 422, 429, 503),
        )
    }

    async def post(self) -> None:
        data = self.body(WechatLoginIn)
        await self.login_rate_limit("login-wechat", self.deps.settings.wechat_login_rate_per_minute)
        identity = await self.deps.wechat.code_to_session(data.code)
        async with self.transaction() as session:
            user = await auth.wechat_login(session, identity, self.deps.cipher)
            issued = await auth.open_session(
                session,
                user.id,
                self.deps.signer,
                refresh_ttl=self.deps.settings.refresh_token_ttl,
                now=self.deps.clock(),
            )
            out = await self.respond_with(session, issued)
        self.send(out)


class PasswordLoginHandler(_TokenHandler):
    openapi: ClassVar = {
        "post": Operation(
            "管理员用户名密码登录",
            auth=AuthMode.none,
            body=PasswordLoginIn,
            response=TokenOut,
            errors=(401, 422, 429),
        )
    }

    async def post(self) -> None:
        data = self.body(PasswordLoginIn)
        settings = self.deps.settings
        await self.login_rate_limit("login-password", settings.login_rate_per_minute)
        async with self.transaction() as session:
            user = await auth.password_login(
                session,
                data.username,
                data.password,
                address=self.client_ip,
                lockout=self.deps.lockout,
                now=self.deps.clock(),
            )
            issued = await auth.open_session(
                session,
                user.id,
                self.deps.signer,
                refresh_ttl=settings.refresh_token_ttl,
                now=self.deps.clock(),
            )
            out = await self.respond_with(session, issued)
        self.send(out)


class RefreshHandler(_TokenHandler):
    openapi: ClassVar = {
        "post": Operation(
            "用刷新令牌换一对新令牌（旧的刷新令牌作废；重复使用会注销整个登录）",
            auth=AuthMode.none,
            body=RefreshIn,
            response=TokenOut,
            errors=(401, 422, 429),
        )
    }

    async def post(self) -> None:
        data = self.body(RefreshIn)
        await self.login_rate_limit("refresh", self.deps.settings.refresh_rate_per_minute)
        async with self.transaction() as session:
            issued = await auth.rotate_refresh_token(
                session,
                data.refresh_token,
                self.deps.signer,
                refresh_ttl=self.deps.settings.refresh_token_ttl,
                now=self.deps.clock(),
            )
            out = await self.respond_with(session, issued)
        self.send(out)


class LogoutHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation("退出登录（作废本次登录的所有令牌）", body=EmptyIn, status=204, errors=(401,))
    }

    async def post(self) -> None:
        self.body(EmptyIn)
        async with self.transaction() as session:
            await auth.revoke_family(session, self.session_id, now=self.deps.clock())
        self.set_status(204)
        self.finish()


class MeHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation("当前用户：角色、学校、已绑定的孩子", response=Principal, errors=(401,))
    }

    async def get(self) -> None:
        assert self.caller is not None
        self.send(self.caller.principal_json)
