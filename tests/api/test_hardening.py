"""Findings of the penetration test on the HTTP layer: request ids, hardening headers, nesting depth,
and bodies refused by their declared size before they are read."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from urllib.parse import urlsplit

import pytest

from handlers.base import MAX_JSON_DEPTH
from handlers.deps import Deps
from server.app import API
from tests.builders import make_world
from tests.client import Api

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---- X-Request-Id ------------------------------------------------------------------------------------
async def test_a_request_id_that_could_forge_a_log_field_is_replaced(
    api: Api, deps: Deps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="access")
    forged = "abc uid=00000000-0000-0000-0000-000000000000"
    for sent in (forged, "a=b", "x;y", "a/b"):
        response = await api.get(f"{API}/me", headers={"X-Request-Id": sent})
        assert response.status == 401
        assert response.headers["X-Request-Id"] != sent
        assert len(response.headers["X-Request-Id"]) == 32
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "access")
    assert "uid=00000000" not in logged and "rid=abc" not in logged
    kept = await api.get(f"{API}/me", headers={"X-Request-Id": "Mp_7f3a.0001-" + "x" * 51})
    assert kept.headers["X-Request-Id"] == "Mp_7f3a.0001-" + "x" * 51


# ---- hardening headers -------------------------------------------------------------------------------
def _hardened(headers: object) -> None:
    h = dict(headers)  # type: ignore[call-overload]
    assert h.get("X-Content-Type-Options") == "nosniff"
    assert h.get("Referrer-Policy") == "no-referrer"
    assert h.get("Content-Security-Policy") == "frame-ancestors 'none'"
    assert "Tornado" not in h.get("Server", "")


async def test_every_answer_carries_the_hardening_headers(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    me = await api.get(f"{API}/me", token=w.token("parent_a"))
    assert me.status == 200
    _hardened(me.headers)
    assert me.headers["Cache-Control"] == "no-store"  # personal data is never stored by a cache
    refused = await api.get(f"{API}/schools/{w.school_b.id}", token=w.token("school_admin_a"))
    assert refused.status == 404
    _hardened(refused.headers)
    assert refused.headers["Cache-Control"] == "no-store"
    for anonymous in (await api.get("/healthz"), await api.get(f"{API}/nowhere"), await api.get(f"{API}/me")):
        _hardened(anonymous.headers)
    # A token answer is never cached either.
    login = await api.post(f"{API}/auth/wechat-login", {"code": "hardening-openid"})
    assert login.status == 200 and login.headers["Cache-Control"] == "no-store"
    # An answer that sets its own cache policy keeps it (the catalogue is revalidated by ETag).
    courses = await api.get(f"{API}/courses", token=w.token("parent_a"))
    assert courses.status == 200
    assert courses.headers["Cache-Control"] == "private, no-cache"


# ---- nesting depth -----------------------------------------------------------------------------------
async def test_a_deeply_nested_body_is_a_400_without_a_traceback(
    api: Api, deps: Deps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = ("[" * 500 + "]" * 500).encode()
    assert len(body) <= 1024
    nested_object = ('{"a":' * 500 + "1" + "}" * 500).encode()
    for path in (f"{API}/auth/password-login", f"{API}/auth/wechat-login"):
        for sent in (body, nested_object):
            response = await api.request(
                "POST", path, body=sent, headers={"Content-Type": "application/json"}
            )
            assert response.status == 400, response.body
            assert response.code == "json_too_deep"
            assert str(MAX_JSON_DEPTH) in response.json()["detail"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    # Ordinary nesting is still read (and answered on its merits).
    shallow = ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH).encode()
    ok = await api.request(
        "POST", f"{API}/auth/wechat-login", body=shallow, headers={"Content-Type": "application/json"}
    )
    assert ok.status == 422


async def test_a_deeply_nested_cursor_is_a_422_without_a_traceback(
    api: Api, deps: Deps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = await make_world(deps)
    for nested in ("[" * 3000 + "]" * 3000, "[" * 500 + "]" * 500):
        cursor = base64.urlsafe_b64encode(nested.encode()).decode().rstrip("=")
        response = await api.get(
            f"{API}/schools/{w.school_a.id}/classrooms?cursor={cursor}", token=w.token("school_admin_a")
        )
        assert response.status == 422, response.body
        assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # A real cursor still pages.
    first = await api.get(
        f"{API}/schools/{w.school_a.id}/classrooms?limit=1", token=w.token("school_admin_a")
    )
    assert first.status == 200
    assert json.loads(first.body)["items"]


# ---- body size from the headers ----------------------------------------------------------------------
async def _headers_only(api: Api, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send the request line and headers, never the body; the answer must come all the same."""
    url = urlsplit(api.base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status, await asyncio.wait_for(reader.readexactly(length), 3)
    finally:
        writer.close()


async def test_a_body_over_the_limit_is_refused_from_its_content_length_before_it_is_read(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    settings = deps.settings
    started = time.perf_counter()
    status, body = await _headers_only(
        api,
        "POST",
        f"{API}/auth/password-login",
        {"Content-Type": "application/json", "Content-Length": str(settings.max_body_bytes + 1)},
    )
    assert status == 413
    assert json.loads(body)["code"] == "payload_too_large"
    assert "1024 KiB" in json.loads(body)["detail"]
    # An anonymous upload is refused on its headers: nothing of the file is read.
    roster = f"{API}/schools/{w.school_a.id}/roster-imports"
    status, body = await _headers_only(
        api, "POST", roster, {"Content-Type": XLSX, "Content-Length": str(settings.max_upload_bytes - 1)}
    )
    assert status == 401 and json.loads(body)["code"] == "missing_token"
    status, body = await _headers_only(
        api,
        "POST",
        roster,
        {
            "Content-Type": XLSX,
            "Content-Length": str(settings.max_upload_bytes + 1),
            "Authorization": f"Bearer {w.token('school_admin_a')}",
        },
    )
    assert status == 413 and json.loads(body)["code"] == "payload_too_large"
    # A parent may not upload at all: refused before the file arrives.
    status, body = await _headers_only(
        api,
        "POST",
        roster,
        {
            "Content-Type": XLSX,
            "Content-Length": str(settings.max_upload_bytes - 1),
            "Authorization": f"Bearer {w.token('parent_a')}",
        },
    )
    assert status == 403
    assert time.perf_counter() - started < 5


async def test_an_upload_without_a_content_length_is_refused(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    status, body = await _headers_only(
        api,
        "POST",
        f"{API}/schools/{w.school_a.id}/roster-imports",
        {
            "Content-Type": "text/csv",
            "Transfer-Encoding": "chunked",
            "Authorization": f"Bearer {w.token('school_admin_a')}",
        },
    )
    assert status == 411 and json.loads(body)["code"] == "length_required"
