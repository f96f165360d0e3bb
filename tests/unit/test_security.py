"""Pure rules of infra/security.py and the production guard of infra/config.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid

import jwt
import orjson
import pytest
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr, ValidationError

from infra.config import DEV_FIELD_KEY, DEV_JWT_SECRET, Settings
from infra.security import (
    JWT_ALGORITHM,
    FieldCipher,
    TokenError,
    TokenSigner,
    constant_time_equal,
    hash_password,
    hash_token,
    new_binding_code,
    new_refresh_token,
    normalise_binding_code,
    verify_password,
)

SECRET = "unit-test-secret-that-is-long-enough-000"
KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


# ---- access tokens --------------------------------------------------------------------------------
def test_token_round_trip_carries_user_session_and_expiry() -> None:
    signer = TokenSigner(SECRET, "parent-school", ttl=600)
    user_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    before = int(time.time())
    claims = signer.verify(signer.issue(user_id, session_id, now=time.time()), now=time.time())
    assert claims.user_id == user_id
    assert claims.session_id == session_id
    assert before + 600 <= claims.expires_at <= int(time.time()) + 600


def test_token_header_names_hs256_only() -> None:
    token = TokenSigner(SECRET, "parent-school", ttl=600).issue("u", "s", now=time.time())
    assert jwt.get_unverified_header(token)["alg"] == JWT_ALGORITHM == "HS256"


def test_expired_token_is_refused() -> None:
    signer = TokenSigner(SECRET, "parent-school", ttl=60)
    token = signer.issue("u", "s", now=time.time() - 61)
    with pytest.raises(TokenError):
        signer.verify(token, now=time.time())


def test_token_from_another_secret_or_issuer_is_refused() -> None:
    token = TokenSigner(SECRET, "parent-school", ttl=600).issue("u", "s", now=time.time())
    with pytest.raises(TokenError):
        TokenSigner(SECRET + "x", "parent-school", ttl=600).verify(token, now=time.time())
    with pytest.raises(TokenError):
        TokenSigner(SECRET, "someone-else", ttl=600).verify(token, now=time.time())


def test_token_of_another_type_is_refused() -> None:
    now = int(time.time())
    payload = {"sub": "u", "sid": "s", "iss": "parent-school", "iat": now, "exp": now + 60, "typ": "refresh"}
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="not an access token"):
        TokenSigner(SECRET, "parent-school", ttl=600).verify(token, now=time.time())


def test_token_missing_a_required_claim_is_refused() -> None:
    now = int(time.time())
    payload = {"sub": "u", "iss": "parent-school", "iat": now, "exp": now + 60, "typ": "access"}  # no sid
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        TokenSigner(SECRET, "parent-school", ttl=600).verify(token, now=time.time())


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _signed(header: str, payload: str, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 with this secret
def test_only_the_exact_header_this_service_issues_is_accepted() -> None:
    signer = TokenSigner(SECRET, "parent-school", ttl=600)
    now = int(time.time())
    claims = {"sub": "u", "sid": "s", "iss": "parent-school", "iat": now, "exp": now + 60, "typ": "access"}
    payload = _segment(claims)
    assert signer.verify(jwt.encode(claims, SECRET, algorithm="HS256"), now=time.time()).user_id == "u"
    refused = [
        f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.",  # unsigned
        jwt.encode(claims, SECRET, algorithm="HS512"),  # another algorithm, same secret
        jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "other"}),  # an extra header field
        _signed(_segment({"typ": "JWT", "alg": "HS256"}), payload),  # the same fields, another order
    ]
    for token in refused:
        with pytest.raises(TokenError):
            signer.verify(token, now=time.time())


def test_a_tampered_or_malformed_token_is_refused() -> None:
    signer = TokenSigner(SECRET, "parent-school", ttl=600)
    token = signer.issue("u", "s", now=time.time())
    header, payload, signature = token.split(".")
    other_payload = signer.issue("someone-else", "s", now=time.time()).split(".")[1]
    for bad in [
        f"{header}.{other_payload}.{signature}",  # another payload under this signature
        f"{header}.{payload}.{signature[:-2]}",  # a cut signature
        f"{header}.{payload}.{signature}=",  # padding: not the canonical encoding
        f"{header}.{payload}.{signature}.x",  # a fourth segment
        f"{header}.{payload}",
        header,
        "",
        f"{header}.{payload}.é{signature}",  # not ASCII
        "not a token at all",
    ]:
        with pytest.raises(TokenError):
            signer.verify(bad, now=time.time())


def test_claims_of_the_wrong_type_are_refused_even_when_signed() -> None:
    signer = TokenSigner(SECRET, "parent-school", ttl=600)
    header = signer.issue("u", "s", now=time.time()).split(".")[0]
    now = int(time.time())
    good = {"sub": "u", "sid": "s", "iss": "parent-school", "iat": now, "exp": now + 60, "typ": "access"}
    assert signer.verify(_signed(header, _segment(good)), now=time.time()).session_id == "s"
    for change in [{"exp": str(now + 60)}, {"exp": True}, {"sub": 7}, {"iat": None}, {"iss": None}]:
        with pytest.raises(TokenError):
            signer.verify(_signed(header, _segment({**good, **change})), now=time.time())
    not_json = base64.urlsafe_b64encode(b"{not json").rstrip(b"=").decode()
    with pytest.raises(TokenError):
        signer.verify(_signed(header, not_json), now=time.time())
    with pytest.raises(TokenError):
        signer.verify(_signed(header, _segment([good])), now=time.time())  # type: ignore[arg-type]


# ---- refresh tokens ---------------------------------------------------------------------------------
def test_refresh_token_is_random_and_only_its_hash_is_kept() -> None:
    first, first_hash = new_refresh_token()
    second, _ = new_refresh_token()
    assert first != second
    assert first_hash == hash_token(first) != first
    assert len(first_hash) == 64


# ---- field encryption -------------------------------------------------------------------------------
def test_field_cipher_round_trip() -> None:
    cipher = FieldCipher(KEY)
    sealed = cipher.encrypt("会话密钥 session-key", context="wechat_session:1")
    assert b"session-key" not in sealed
    assert cipher.decrypt(sealed, context="wechat_session:1") == "会话密钥 session-key"


def test_field_cipher_uses_a_fresh_nonce_each_time() -> None:
    cipher = FieldCipher(KEY)
    assert cipher.encrypt("same", "ctx") != cipher.encrypt("same", "ctx")


def test_field_cipher_refuses_the_wrong_context() -> None:
    cipher = FieldCipher(KEY)
    sealed = cipher.encrypt("secret", context="wechat_session:user-a")
    with pytest.raises(InvalidTag):
        cipher.decrypt(sealed, context="wechat_session:user-b")


def test_field_cipher_refuses_the_wrong_key_and_tampering() -> None:
    sealed = FieldCipher(KEY).encrypt("secret", "ctx")
    with pytest.raises(InvalidTag):
        FieldCipher(base64.urlsafe_b64encode(b"z" * 32).decode()).decrypt(sealed, "ctx")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InvalidTag):
        FieldCipher(KEY).decrypt(tampered, "ctx")
    with pytest.raises(ValueError, match="version"):
        FieldCipher(KEY).decrypt(b"\x02" + sealed[1:], "ctx")


def test_field_cipher_needs_a_32_byte_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(base64.urlsafe_b64encode(b"short").decode())


# ---- binding codes ----------------------------------------------------------------------------------
def test_binding_code_alphabet_avoids_look_alikes() -> None:
    codes = {new_binding_code() for _ in range(50)}
    assert len(codes) == 50
    for code in codes:
        assert len(code) == 10
        assert not set(code) & set("01OIL")
        assert normalise_binding_code(code) == code


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("abcde-fghjk", "ABCDEFGHJK"),
        ("  ABCDE FGHJK\n", "ABCDEFGHJK"),
        ("ab-cd ef-gh jk", "ABCDEFGHJK"),
        # A Chinese input method types full-width letters, dashes and spaces.
        ("ＡＢＣＤＥ－ＦＧＨＪＫ", "ABCDEFGHJK"),
        ("abcde\u3000fghjk", "ABCDEFGHJK"),
    ],
)
def test_normalise_binding_code(typed: str, expected: str) -> None:
    assert normalise_binding_code(typed) == expected


# ---- passwords --------------------------------------------------------------------------------------
def test_password_hash_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert "correct horse battery" not in stored
    assert stored.startswith("$argon2")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not verify_password(stored, "")
    assert hash_password("correct horse battery") != stored  # salted


def test_verify_password_against_a_malformed_hash_is_false() -> None:
    assert not verify_password("not-a-hash", "anything")


def test_constant_time_equal() -> None:
    assert constant_time_equal("abc", "abc")
    assert not constant_time_equal("abc", "abd")


# ---- production settings ----------------------------------------------------------------------------
PRODUCTION_ENV = (
    "APP_ENV",
    "JWT_SECRET",
    "FIELD_ENCRYPTION_KEY",
    "WECHAT_APPID",
    "WECHAT_SECRET",
    "DATABASE_URL",
    "REDIS_URL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PRODUCTION_ENV:
        monkeypatch.delenv(name, raising=False)


def _production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "app_env": "production",
        "jwt_secret": SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode()),
        "field_encryption_key": SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode()),
        "wechat_appid": "wx0123456789abcdef",
        "wechat_secret": SecretStr("a-real-looking-wechat-app-secret"),
        "database_url": "postgresql+asyncpg://app@db/parent_school",
        "redis_url": "redis://cache:6379/0",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def test_production_refuses_to_start_without_secrets(clean_env: None) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, app_env="production")
    message = str(caught.value)
    for name in ("JWT_SECRET", "FIELD_ENCRYPTION_KEY", "WECHAT_APPID", "DATABASE_URL"):
        assert name in message


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"jwt_secret": SecretStr(DEV_JWT_SECRET)}, "JWT_SECRET"),
        ({"jwt_secret": SecretStr("changeme")}, "JWT_SECRET"),
        ({"jwt_secret": SecretStr("x" * 31)}, "JWT_SECRET"),
        ({"field_encryption_key": SecretStr(DEV_FIELD_KEY)}, "FIELD_ENCRYPTION_KEY"),
        ({"wechat_secret": SecretStr("secret")}, "WECHAT_SECRET"),
        ({"wechat_secret": None}, "WECHAT_SECRET"),
        ({"redis_url": None}, "REDIS_URL"),
    ],
)
def test_production_refuses_each_placeholder(
    clean_env: None, override: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        _production(**override)


def test_production_starts_with_every_secret_set(clean_env: None) -> None:
    settings = _production()
    assert settings.app_env == "production"
    assert not settings.demo_data_allowed


def test_development_accepts_the_placeholders(clean_env: None) -> None:
    settings = Settings(_env_file=None)
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
