"""Async gateway to WeChat's HTTPS APIs on Tornado's AsyncHTTPClient.

WeChat answers HTTP 200 with an `errcode` for most failures; this module maps the ones users can run
into onto our problem codes, and turns timeouts and outages into 503 rather than hanging a request.
The interface access_token is shared by every process: one refresher at a time, through a Redis lock,
using the `stable_token` endpoint (which does not invalidate the token other processes still hold).
Subscription messages (订阅消息) go out through `send_subscribe_message`; the two answers a sender must
act on have their own types: `SubscriptionQuotaExhausted` (43101, the user has no one-time allowance
left) and `AccessTokenRejected` (40001/40014/42001, drop the cached token and try again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

from redis.asyncio import Redis
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from infra.errors import AppError, Forbidden, RateLimited, ServiceUnavailable, Unauthenticated, UpstreamFailed
from infra.redis import Keys

log = logging.getLogger(__name__)

# Refresh a little before WeChat's expiry so no request goes out with a token about to die.
TOKEN_EXPIRY_MARGIN = 300
TOKEN_LOCK_SECONDS = 10
# How often a caller waiting for another's refresh looks at the cache again.
TOKEN_POLL_SECONDS = 0.05
WECHAT_RETRY_AFTER = 60


@dataclass(frozen=True)
class WechatIdentity:
    openid: str
    session_key: str
    unionid: str | None


class WechatError(UpstreamFailed):
    code, title = "wechat_error", "微信服务返回错误"
    # WeChat's own errcode when it gave one, so a caller can tell a permanent refusal from a hiccup.
    errcode: int | None = None


class SubscriptionQuotaExhausted(WechatError):
    """43101: the user has no one-time subscription allowance left for this template (or refused it).

    Not a failure of ours and not worth retrying: only the user, by subscribing again, can lift it."""

    status, code, title = 409, "wechat_subscription_quota_exhausted", "用户未订阅或订阅次数已用完"
    errcode = 43101


class AccessTokenRejected(WechatError):
    """WeChat no longer accepts our interface access_token (revoked, expired early, replaced)."""

    code = "wechat_access_token_rejected"


# 40001 invalid credential, 40014 invalid access_token, 42001 access_token expired
ACCESS_TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


def map_errcode(errcode: int, errmsg: str) -> AppError:
    if errcode == 43101:
        return SubscriptionQuotaExhausted(f"微信返回错误 {errcode}: {errmsg}")
    if errcode in ACCESS_TOKEN_ERRCODES:
        rejected = AccessTokenRejected(f"微信返回错误 {errcode}: {errmsg}")
        rejected.errcode = errcode
        return rejected
    if errcode in (40029, 40163):
        return Unauthenticated("登录凭证无效或已使用，请重新登录", code="invalid_login_code")
    if errcode == 45011:
        return RateLimited(WECHAT_RETRY_AFTER, "微信登录过于频繁，请稍后再试", code="wechat_rate_limited")
    if errcode == 40226:
        return Forbidden("该微信账号存在风险，暂时无法登录", code="wechat_user_blocked")
    if errcode == -1:
        return ServiceUnavailable("微信服务繁忙，请稍后再试", code="wechat_unavailable")
    error = WechatError(f"微信返回错误 {errcode}: {errmsg}")
    error.errcode = errcode
    return error


class WechatGateway:
    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        api_base: str,
        timeout: float,
        redis: Redis,
        keys: Keys,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self._base = api_base if api_base.endswith("/") else api_base + "/"
        self._timeout = timeout
        self._redis = redis
        self._keys = keys

    async def _call(self, method: str, path: str, params: dict[str, str], body: Any = None) -> dict[str, Any]:
        url = urljoin(self._base, path) + "?" + urlencode(params)
        request = HTTPRequest(
            url,
            method=method,
            body=json.dumps(body, ensure_ascii=False) if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else None,
            connect_timeout=self._timeout,
            request_timeout=self._timeout,
        )
        started = time.monotonic()
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            log.warning("wechat %s failed: HTTP %s", path, exc.code)
            raise ServiceUnavailable("微信服务暂时不可用", code="wechat_unavailable") from exc
        except (TimeoutError, OSError) as exc:
            log.warning("wechat %s unreachable after %.2fs: %s", path, time.monotonic() - started, exc)
            raise ServiceUnavailable("微信服务暂时不可用", code="wechat_unavailable") from exc
        try:
            data: dict[str, Any] = json.loads(response.body)
        except ValueError as exc:
            raise WechatError("微信返回了无法解析的内容") from exc
        errcode = int(data.get("errcode") or 0)
        if errcode != 0:
            log.info("wechat %s errcode=%s", path, errcode)
            raise map_errcode(errcode, str(data.get("errmsg", "")))
        return data

    async def code_to_session(self, code: str) -> WechatIdentity:
        data = await self._call(
            "GET",
            "sns/jscode2session",
            {
                "appid": self.appid,
                "secret": self._secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        if not data.get("openid") or not data.get("session_key"):
            raise WechatError("微信未返回用户标识")
        return WechatIdentity(str(data["openid"]), str(data["session_key"]), data.get("unionid"))

    async def access_token(self) -> str:
        """The interface token, fetched by one caller at a time across all processes."""
        key = self._keys.wechat_token(self.appid)
        deadline = time.monotonic() + self._timeout * 2
        while True:
            # Waiters watch the cache rather than queue for the lock: once the holder has stored a
            # token every waiter returns at once, instead of taking the lock one by one to read it.
            cached = await self._redis.get(key)
            if cached:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
            lock = self._redis.lock(self._keys.wechat_token_lock(self.appid), timeout=TOKEN_LOCK_SECONDS)
            if await lock.acquire(blocking=False):
                try:
                    return await self._refresh_access_token(key)
                finally:
                    await lock.release()
            if time.monotonic() >= deadline:
                raise ServiceUnavailable("微信接口凭证获取超时", code="wechat_unavailable")
            await asyncio.sleep(TOKEN_POLL_SECONDS)

    async def _refresh_access_token(self, key: str) -> str:
        cached = await self._redis.get(key)  # another process may have refreshed since we looked
        if cached:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        data = await self._call(
            "POST",
            "cgi-bin/stable_token",
            {},
            {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret},
        )
        token = str(data["access_token"])
        ttl = max(60, int(data.get("expires_in", 7200)) - TOKEN_EXPIRY_MARGIN)
        await self._redis.set(key, token, ex=ttl)
        return token

    async def send_subscribe_message(
        self, *, openid: str, template_id: str, page: str, data: dict[str, str]
    ) -> None:
        """Send one subscription message; each success uses up one of the user's one-time allowances.

        Raises SubscriptionQuotaExhausted (43101), AccessTokenRejected (the caller should
        `forget_access_token()` and retry), ServiceUnavailable (timeouts, outages, -1) or WechatError.
        WeChat offers no idempotency key: a request that times out may still have been delivered."""
        token = await self.access_token()
        await self._call(
            "POST",
            "cgi-bin/message/subscribe/send",
            {"access_token": token},  # in the query string, as WeChat expects; the message is the body
            {
                "touser": openid,
                "template_id": template_id,
                "page": page,
                "data": {key: {"value": value} for key, value in data.items()},
                "miniprogram_state": "formal",
            },
        )

    async def msg_sec_check(self, *, openid: str, content: str) -> str:
        """WeChat's content-security check of a user's text (msgSecCheck, version 2, scene 2 = comment):
        its suggestion "pass", "risky" or "review". The openid must have used the mini-program within
        the last two hours. Raises ServiceUnavailable (timeouts, outages) or WechatError."""
        token = await self.access_token()
        data = await self._call(
            "POST",
            "wxa/msg_sec_check",
            {"access_token": token},
            {"content": content, "version": 2, "scene": 2, "openid": openid},
        )
        suggest = str((data.get("result") or {}).get("suggest", ""))
        if suggest not in ("pass", "risky", "review"):
            raise WechatError("微信内容安全接口未给出结论")
        return suggest

    async def forget_access_token(self) -> None:
        """Drop a token WeChat rejected (40001) so the next call refreshes it."""
        await self._redis.delete(self._keys.wechat_token(self.appid))
