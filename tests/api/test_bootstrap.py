"""Start-up pieces a newcomer or operator runs: the first district admin, production settings."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from handlers.deps import Deps
from infra.config import Settings
from server.app import API
from tests.client import Api

ROOT = Path(__file__).resolve().parents[2]


async def run_script(deps: Deps, *args: str, password: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.create_district_admin",
        *args,
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": deps.settings.database_url or "",
            "PARENT_SCHOOL_ADMIN_PASSWORD": password,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_first_district_admin_can_sign_in_and_run_the_district(api: Api, deps: Deps) -> None:
    code, out = await run_script(
        deps, "--district", "渝中区", "--username", "yz-admin", password="a-strong-password"
    )
    assert code == 0, out
    login = await api.post(
        f"{API}/auth/password-login", json={"username": "yz-admin", "password": "a-strong-password"}
    )
    assert login.status == 200
    me = login.json()["user"]
    assert me["roles"] == ["district_admin"]
    assert [d["name"] for d in me["districts"]] == ["渝中区"]
    created = await api.post(
        f"{API}/districts/{me['districts'][0]['id']}/schools",
        json={"name": "巴蜀小学"},
        token=login.json()["access_token"],
    )
    assert created.status == 201

    again, out = await run_script(
        deps, "--district", "渝中区", "--username", "yz-admin", password="another-password"
    )
    assert again == 1 and "用户名已存在" in out


async def test_short_passwords_are_refused(deps: Deps) -> None:
    code, out = await run_script(deps, "--district", "渝中区", "--username", "yz-admin", password="short")
    assert code == 2 and "at least 10 characters" in out


def test_production_refuses_placeholders_and_never_loads_demo_data() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(app_env="production", database_url="postgresql://db/x", redis_url="redis://r")
    settings = Settings(
        app_env="production",
        database_url="postgresql://db/x",
        redis_url="redis://r",
        jwt_secret=SecretStr("x" * 40),
        field_encryption_key=SecretStr("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        wechat_appid="wx123",
        wechat_secret=SecretStr("a-real-looking-secret"),
    )
    assert settings.load_demo_data is True and settings.demo_data_allowed is False
