"""The service answers its probes and serves its OpenAPI document."""

from __future__ import annotations

from tests.client import Api


async def test_healthz_and_readyz(api: Api) -> None:
    health = await api.get("/healthz")
    assert health.status == 200 and health.json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status == 200
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}


async def test_openapi_lists_every_documented_route(api: Api) -> None:
    from server.app import ROUTES

    doc = (await api.get("/api/v1/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {path for path, _ in ROUTES}
    login = doc["paths"]["/api/v1/auth/wechat-login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WechatLoginIn"
    }


async def test_unknown_route_is_a_problem_404(api: Api) -> None:
    response = await api.get("/api/v1/nothing-here")
    assert response.status == 404
    assert response.code == "not_found"
    assert response.headers["Content-Type"] == "application/problem+json"
