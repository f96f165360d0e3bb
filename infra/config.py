"""Settings from the environment (pydantic-settings).

Production refuses to start with a missing or placeholder secret, and it never starts embedded servers:
a deployment names its PostgreSQL and Redis explicitly.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Placeholders are fine on a laptop and fatal in production.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"  # noqa: S105 - refused in production
# 32 zero-ish bytes, base64: obviously not a key anyone should keep data under.
DEV_FIELD_KEY = base64.urlsafe_b64encode(b"dev-only-field-key-change-me-000").decode()
PLACEHOLDERS = {"", "changeme", "change-me", "secret", DEV_JWT_SECRET, DEV_FIELD_KEY}

# An access token may live at most this long; the brief says two hours.
MAX_ACCESS_TOKEN_TTL = 2 * 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    port: int = 8000
    processes: int = Field(1, ge=0, description="Tornado processes; 0 means one per core")
    data_dir: Path = Path("var")

    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "ps:"

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "parent-school"
    access_token_ttl: int = Field(7200, gt=0, le=MAX_ACCESS_TOKEN_TTL)
    refresh_token_ttl: int = Field(30 * 24 * 3600, gt=0)
    # AES-256-GCM key for sensitive columns, urlsafe base64 of 32 bytes; lives outside the database.
    field_encryption_key: SecretStr = SecretStr(DEV_FIELD_KEY)

    wechat_appid: str | None = None
    wechat_secret: SecretStr | None = None
    wechat_api_base: str = "https://api.weixin.qq.com/"
    wechat_timeout: float = Field(5.0, gt=0)
    # Subscription-message templates chosen in the mini-program's admin console.
    wechat_template_class_reminder: str = "class-reminder"
    wechat_template_waitlist_promoted: str = "waitlist-promoted"
    wechat_template_followup_answered: str = "followup-answered"

    # Only behind a proxy that overwrites X-Forwarded-For / X-Real-IP: otherwise clients could pick the
    # address that login rate limits count against.
    trust_proxy_headers: bool = False

    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 10 * 1024 * 1024

    # Transactions a process lets wait for a database connection before answering 429 (a pool of 10
    # connections clears a few hundred short transactions per second).
    max_queued_transactions: int = 200
    # Sign-ups a process lets wait for the next batch before answering 429 (sign-ups are written in
    # batches, and a batch of 200 commits in a few tens of milliseconds).
    max_queued_signups: int = 2000

    password_max_failures: int = 5
    password_lockout_seconds: int = 15 * 60
    login_rate_per_minute: int = 30

    # Guardian consent is recorded against this privacy-policy version (PIPL art. 31).
    privacy_policy_version: str = "2025-09"
    binding_code_ttl_days: int = 30

    # How long an Idempotency-Key stays claimed by a request that has not answered yet: longer than any
    # request runs. A process killed mid-request leaves its claim; a retry is answered 409 until then.
    idempotency_pending_seconds: int = Field(120, gt=0)

    # Children's data (PIPL): visit notes and circumstances are erased after this long (3 years) by
    # scripts.erase_visit_sensitive.
    visit_sensitive_retention_days: int = Field(3 * 365, gt=0)
    # Home-visit photos: each at most this large (before re-encoding), kept under DATA_DIR/photos.
    max_photo_bytes: int = Field(5 * 1024 * 1024, gt=0)

    load_demo_data: bool = True

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.app_env != "production":
            return self
        problems = []
        if self.jwt_secret.get_secret_value() in PLACEHOLDERS or len(self.jwt_secret.get_secret_value()) < 32:
            problems.append("JWT_SECRET must be set to a random value of at least 32 characters")
        if self.field_encryption_key.get_secret_value() in PLACEHOLDERS:
            problems.append("FIELD_ENCRYPTION_KEY must be set")
        if (
            not self.wechat_appid
            or self.wechat_secret is None
            or (self.wechat_secret.get_secret_value() in PLACEHOLDERS)
        ):
            problems.append("WECHAT_APPID and WECHAT_SECRET must be set")
        if not self.database_url or not self.redis_url:
            problems.append("DATABASE_URL and REDIS_URL must be set (no embedded servers in production)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def demo_data_allowed(self) -> bool:
        return self.load_demo_data and self.app_env != "production"
