"""Settings from the environment (pydantic-settings).

Production refuses to start with a missing or placeholder secret, and it never starts embedded servers:
a deployment names its PostgreSQL and Redis explicitly.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Placeholders are fine on a laptop and fatal in production.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"  # noqa: S105 - refused in production
# 32 zero-ish bytes, base64: obviously not a key anyone should keep data under.
DEV_FIELD_KEY = base64.urlsafe_b64encode(b"dev-only-field-key-change-me-000").decode()
PLACEHOLDERS = {"", "changeme", "change-me", "secret", DEV_JWT_SECRET, DEV_FIELD_KEY}

log = logging.getLogger(__name__)
# Development secrets, made once per installation in DATA_DIR (mode 0600) instead of placeholders that
# anyone who read this file could forge tokens with.
INSTALLATION_SECRETS = "development-secrets.json"

# An access token may live at most this long; the brief says two hours.
MAX_ACCESS_TOKEN_TTL = 2 * 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    # The address to listen on; unset, a development server listens on this machine only (127.0.0.1),
    # any other on every interface (a container or host behind its proxy).
    host: str | None = None
    port: int = 8000
    processes: int = Field(1, ge=0, description="Tornado processes; 0 means one per core")
    data_dir: Path = Path("var")
    # GET /metrics (Prometheus) is served on its own listener, never on the public port; loopback by
    # default, so that only the machine's own scraper (or an agent beside it) reaches it. 0: no listener.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9100, ge=0, le=65535)
    # `json`: one JSON object per log line, for log collectors.
    log_format: Literal["text", "json"] = "text"

    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "ps:"
    # Redis connections per process. Past this, a command waits (up to infra.redis.POOL_WAIT_SECONDS) for
    # a connection instead of failing; the processes together must stay below Redis's maxclients.
    redis_max_connections: int = Field(200, ge=1)

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

    # Wrong passwords for one username from one address before it is locked there (models.accounts.lockout);
    # the first lockout lasts the base, each one in a row twice the one before, up to the cap.
    password_max_failures: int = 5
    password_lockout_base_seconds: int = 60
    password_lockout_seconds: int = 15 * 60
    # Per client address and endpoint, each its own bucket: a school's staff and parents often share one
    # address (NAT), and a rush of parents logging in must not stop an admin's password login.
    login_rate_per_minute: int = 30  # password login
    wechat_login_rate_per_minute: int = 120
    refresh_rate_per_minute: int = 120

    # Guardian consent is recorded against this privacy-policy version (PIPL art. 31).
    privacy_policy_version: str = "2025-09"
    binding_code_ttl_days: int = 30

    # Seconds a stopping process waits for the requests it has taken in before it closes the connections
    # (a sign-up cut off would leave its parent not knowing whether they hold a seat); keep it below the
    # grace period of whatever stops the process (systemd's TimeoutStopSec, Kubernetes' 30 s), or the
    # process is killed while still draining.
    drain_seconds: float = Field(20, gt=0)

    # The notification worker (models.notifications.worker), one per process: how often it looks for due
    # messages when idle (a full batch is followed at once by the next), how many it sends to WeChat at a
    # time (each holds a pooled database connection while it writes its outcome), and how many tries a
    # message gets. Five tries are 30 s, 2 min, 8 min and 32 min of backoff apart: about 40 minutes of
    # trying before giving up, still well before a class the day after its reminder.
    notification_poll_seconds: float = Field(2.0, gt=0)
    notification_send_concurrency: int = Field(8, ge=1)
    notification_max_attempts: int = Field(5, ge=1)

    # Lesson progress is moved from Redis to PostgreSQL this often (models.learning.progress): a crash
    # loses at most this much watch time (never a completion), and each flush is one transaction.
    progress_flush_seconds: float = Field(1.0, gt=0)

    # Students one roster upload may hold: a large school (12 forms of 9 grades, ~4,000 students) in one
    # file, while the all-or-nothing transaction and the error list a human reads stay of a sane size.
    roster_max_rows: int = Field(5000, gt=0, le=10_000)

    # How long an Idempotency-Key stays claimed by a request that has not answered yet: longer than any
    # request runs. A process killed mid-request leaves its claim; a retry is answered 409 until then.
    idempotency_pending_seconds: int = Field(120, gt=0)

    # The web console's session ends after this long without a request (seconds).
    console_idle_seconds: int = Field(30 * 60, gt=0)
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

    @property
    def listen_host(self) -> str | None:
        """None: every interface."""
        if self.host:
            return self.host
        return "127.0.0.1" if self.app_env == "development" else None


def with_installation_secrets(settings: Settings) -> Settings:
    """In development, a JWT secret and field key left at a placeholder are replaced by random ones made
    for this installation and kept in DATA_DIR (so tokens and encrypted fields survive a restart).
    Production refuses placeholders outright (Settings' validator); tests set their own."""
    if settings.app_env != "development":
        return settings
    jwt_placeholder = settings.jwt_secret.get_secret_value() in PLACEHOLDERS
    key_placeholder = settings.field_encryption_key.get_secret_value() in PLACEHOLDERS
    if not (jwt_placeholder or key_placeholder):
        return settings
    path = settings.data_dir / INSTALLATION_SECRETS
    made = _installation_secrets(path)
    log.warning(
        "development: using the secrets generated for this installation in %s; "
        "set JWT_SECRET and FIELD_ENCRYPTION_KEY for any server others can reach",
        path,
    )
    updates: dict[str, SecretStr] = {}
    if jwt_placeholder:
        updates["jwt_secret"] = SecretStr(made["jwt_secret"])
    if key_placeholder:
        updates["field_encryption_key"] = SecretStr(made["field_encryption_key"])
    return settings.model_copy(update=updates)


def _installation_secrets(path: Path) -> dict[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = {
        "jwt_secret": secrets.token_urlsafe(48),
        "field_encryption_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    try:  # created readable by this account only, and only once, even by two starts at a time
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    with os.fdopen(fd, "w") as out:
        json.dump(fresh, out)
    return fresh
