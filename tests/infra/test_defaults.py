"""`make run` out of the box: listens on this machine only, and signs tokens and seals fields with secrets
made for this installation, not with placeholders anyone can read in the source."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.config import DEV_FIELD_KEY, DEV_JWT_SECRET, INSTALLATION_SECRETS, Settings
from infra.security import FieldCipher, TokenError, TokenSigner
from server.__main__ import configure, listen


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("APP_ENV", "JWT_SECRET", "FIELD_ENCRYPTION_KEY", "HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return tmp_path / "var"


def test_development_uses_secrets_generated_for_this_installation(
    development: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = configure()
    jwt_secret = settings.jwt_secret.get_secret_value()
    field_key = settings.field_encryption_key.get_secret_value()
    assert settings.app_env == "development"
    assert jwt_secret != DEV_JWT_SECRET and len(jwt_secret) >= 32
    assert field_key != DEV_FIELD_KEY
    FieldCipher(field_key)  # a usable AES-256 key
    stored = development / INSTALLATION_SECRETS
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"jwt_secret": jwt_secret, "field_encryption_key": field_key}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(stored) in warnings[0].getMessage()

    # A token forged with the placeholder is refused by the server's signer.
    now = 1_760_000_000.0
    forged = TokenSigner(DEV_JWT_SECRET, settings.jwt_issuer, 600).issue("u", "s", now)
    with pytest.raises(TokenError):
        TokenSigner(jwt_secret, settings.jwt_issuer, 600).verify(forged, now)

    # The next start keeps them: tokens and sealed fields survive a restart.
    again = configure()
    assert again.jwt_secret.get_secret_value() == jwt_secret
    assert again.field_encryption_key.get_secret_value() == field_key


def test_secrets_given_in_development_are_used_as_they_are(
    development: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "x" * 40)
    settings = configure()
    assert settings.jwt_secret.get_secret_value() == "x" * 40
    assert settings.field_encryption_key.get_secret_value() != DEV_FIELD_KEY  # only the missing one made


def test_development_listens_on_this_machine_only_unless_told_otherwise(
    development: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = listen(configure(), 0, shared=False)
    try:
        assert {s.getsockname()[0] for s in sockets} == {"127.0.0.1"}
    finally:
        for s in sockets:
            s.close()
    monkeypatch.setenv("HOST", "0.0.0.0")  # noqa: S104 - told otherwise
    sockets = listen(configure(), 0, shared=False)
    try:
        assert {s.getsockname()[0] for s in sockets} == {"0.0.0.0"}  # noqa: S104
    finally:
        for s in sockets:
            s.close()


def test_production_still_refuses_placeholders(development: Path) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(
            app_env="production",
            database_url="postgresql://db/x",
            redis_url="redis://r",
            jwt_secret=DEV_JWT_SECRET,  # type: ignore[arg-type]
        )
    assert Settings(app_env="production", _env_file=None, **_production()).listen_host is None


def _production() -> dict[str, object]:
    return {
        "database_url": "postgresql://db/x",
        "redis_url": "redis://r",
        "jwt_secret": "j" * 40,
        "field_encryption_key": "k" * 43 + "=",
        "wechat_appid": "wx1",
        "wechat_secret": "s" * 32,
    }
