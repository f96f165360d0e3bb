"""A small HTTP client for the tests, speaking to the service over a real socket."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders


@dataclass
class Response:
    status: int
    headers: HTTPHeaders
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The problem+json `code` of an error response."""
        if self.headers.get("Content-Type", "").startswith("application/problem+json"):
            return str(self.json()["code"])
        return None


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = AsyncHTTPClient(force_instance=True, max_clients=1000)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        request_timeout: float = 30,
        follow_redirects: bool = True,
    ) -> Response:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        request = HTTPRequest(
            self.base + path,
            method=method,
            body=body,
            headers=all_headers,
            request_timeout=request_timeout,
            allow_nonstandard_methods=True,
            follow_redirects=follow_redirects,
        )
        response = await self.http.fetch(request, raise_error=False)
        return Response(response.code, response.headers, response.body or b"")

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, json_body=json, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, json_body=json, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)
