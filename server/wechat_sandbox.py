"""A stand-in for WeChat's servers, served over real HTTP on 127.0.0.1.

The tests use it, and `make run` starts it when WECHAT_APPID is not set, so every role can be tried
without a real mini-program. Behaviour is chosen by the login code:

- any code `X` logs in the WeChat user whose openid is `X`;
- `errcode:N` answers WeChat error N (e.g. `errcode:40029`, `errcode:45011`, `errcode:-1`);
- `sleep:S` answers after S seconds (to trigger our client's timeout).

Content security (msgSecCheck v2): a text containing 违规 is `risky`, one containing 待审 is `review`,
anything else `pass`; with `state.sec_check_down` the endpoint answers HTTP 503.

`python -m server.wechat_sandbox --port 8001` runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

SANDBOX_APPID = "wx-sandbox-appid"
SANDBOX_SECRET = "wx-sandbox-secret"  # noqa: S105 - the fake server's own credential


@dataclass
class SandboxState:
    appid: str = SANDBOX_APPID
    secret: str = SANDBOX_SECRET
    token_delay: float = 0.05
    token_calls: int = 0
    login_calls: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    # openid -> remaining one-time subscription allowance; missing means unlimited
    subscription_allowance: dict[str, int] = field(default_factory=dict)
    issued_tokens: set[str] = field(default_factory=set)
    sec_check_down: bool = False  # msgSecCheck answers 503 (an outage)
    sec_checks: list[dict[str, Any]] = field(default_factory=list)


class _Base(tornado.web.RequestHandler):
    def initialize(self, state: SandboxState) -> None:
        self.state = state

    def reply(self, data: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, ensure_ascii=False))


class Code2Session(_Base):
    async def get(self) -> None:
        self.state.login_calls += 1
        if (
            self.get_argument("appid", "") != self.state.appid
            or self.get_argument("secret", "") != self.state.secret
        ):
            return self.reply({"errcode": 40013, "errmsg": "invalid appid"})
        code = self.get_argument("js_code", "")
        if code.startswith("errcode:"):
            return self.reply({"errcode": int(code.split(":", 1)[1]), "errmsg": "sandbox error"})
        if code.startswith("sleep:"):
            await asyncio.sleep(float(code.split(":", 1)[1]))
        if not code:
            return self.reply({"errcode": 40029, "errmsg": "invalid code"})
        session_key = base64.b64encode(os.urandom(16)).decode()
        self.reply({"openid": code, "session_key": session_key})


class StableToken(_Base):
    async def post(self) -> None:
        body = json.loads(self.request.body or b"{}")
        if body.get("appid") != self.state.appid or body.get("secret") != self.state.secret:
            return self.reply({"errcode": 40013, "errmsg": "invalid appid"})
        self.state.token_calls += 1
        await asyncio.sleep(self.state.token_delay)  # a real round trip, so racing callers overlap
        token = f"sandbox-token-{self.state.token_calls}"
        self.state.issued_tokens.add(token)
        self.reply({"access_token": token, "expires_in": 7200})


class SubscribeSend(_Base):
    def post(self) -> None:
        if self.get_argument("access_token", "") not in self.state.issued_tokens:
            return self.reply({"errcode": 40001, "errmsg": "invalid credential"})
        body = json.loads(self.request.body or b"{}")
        openid = body.get("touser", "")
        remaining = self.state.subscription_allowance.get(openid)
        if remaining is not None:
            if remaining <= 0:
                return self.reply({"errcode": 43101, "errmsg": "user refuse to accept the msg"})
            self.state.subscription_allowance[openid] = remaining - 1
        self.state.messages.append(body)
        self.reply({"errcode": 0, "errmsg": "ok"})


class MsgSecCheck(_Base):
    def post(self) -> None:
        if self.state.sec_check_down:
            raise tornado.web.HTTPError(503)
        if self.get_argument("access_token", "") not in self.state.issued_tokens:
            return self.reply({"errcode": 40001, "errmsg": "invalid credential"})
        body = json.loads(self.request.body or b"{}")
        if body.get("version") != 2 or not body.get("openid"):
            return self.reply({"errcode": 40003, "errmsg": "invalid openid"})
        self.state.sec_checks.append(body)
        content = str(body.get("content", ""))
        suggest, label = (
            ("risky", 20001)
            if "违规" in content
            else ("review", 21000)
            if "待审" in content
            else ("pass", 100)
        )
        self.reply(
            {"errcode": 0, "errmsg": "ok", "result": {"suggest": suggest, "label": label}, "detail": []}
        )


def make_sandbox_app(state: SandboxState) -> tornado.web.Application:
    args = {"state": state}
    return tornado.web.Application(
        [
            (r"/sns/jscode2session", Code2Session, args),
            (r"/cgi-bin/stable_token", StableToken, args),
            (r"/cgi-bin/message/subscribe/send", SubscribeSend, args),
            (r"/wxa/msg_sec_check", MsgSecCheck, args),
        ]
    )


def start_sandbox(state: SandboxState, port: int = 0) -> tuple[HTTPServer, str]:
    """Listen on 127.0.0.1 (a free port when 0) in the running IOLoop; return the server and base URL."""
    sockets = bind_sockets(port, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(make_sandbox_app(state))
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{bound}/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def serve() -> None:
        _, base = start_sandbox(SandboxState(), args.port)
        print(base, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
