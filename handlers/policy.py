"""`Operation`: the one declaration of an endpoint's policy. The handler base enforces it, the OpenAPI
document is generated from it and the authorisation-matrix test reads it, so what an endpoint allows is
written once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from models.accounts.rules import Role
from models.audit.actions import AuditAction


class Scope(StrEnum):
    """Whose records the endpoint touches, and so what an id in its path is checked against."""

    school = "school"  # {school_id}: a school the caller holds one of the roles at (or in their district)
    district = "district"  # {district_id}: a district the caller holds one of the roles in
    family = "family"  # the caller's own family: their children, sign-ups, hours and certificates
    record = (
        "record"  # a record named in the path (a class, a lesson) that the service checks the caller reaches
    )
    none = "none"  # nothing beyond the caller themself, or public data (login, the catalogue)


class AuthMode(StrEnum):
    bearer = "bearer"  # Authorization: Bearer <access token> (the mini-program and API clients)
    session = (
        "session"  # the console's session cookie (handlers/console/sessions.py); writes carry a CSRF token
    )
    none = "none"  # no credentials (login, probes, the OpenAPI document)


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Every status a handler may answer besides its success, by what can cause it.
AUTH_ERRORS = (401, 403)
BODY_ERRORS = (400, 413, 415, 422)
ALWAYS_ERRORS = (429, 503)


@dataclass(frozen=True)
class Operation:
    """One verb of one route.

    `roles`: who may call (403 for anyone else); empty means any signed-in caller. `scope` says which ids
    in the path are checked against the caller (404 outside it). `idempotent`: a creating POST that
    replays its first answer to a retry under the same `Idempotency-Key`. `audit`: the action written to
    the audit log in the request's transaction. `records_identity=False`: who called is never recorded —
    not in the access log, the idempotency store or the audit log (an anonymous survey answer)."""

    summary: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    scope: Scope = Scope.none
    auth: AuthMode = AuthMode.bearer
    idempotent: bool = False
    audit: AuditAction | None = None
    records_identity: bool = True
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    media_type: str = "application/json"
    status: int = 200
    errors: tuple[int, ...] = ()
    etag: bool = False  # answers carry an ETag (and If-None-Match answers 304)
    extra: dict[str, Any] = field(default_factory=dict)

    def spreadsheet(self) -> Operation:
        """The same policy for the `.xlsx` twin of this read (the summaries schools report with)."""
        return dataclasses.replace(self, summary=f"{self.summary}（Excel）", response=None, media_type=XLSX)

    def __post_init__(self) -> None:
        roles: Iterable[Role] = self.roles
        object.__setattr__(self, "roles", frozenset(Role(r) for r in roles))
        if self.auth is AuthMode.none and (self.roles or self.scope not in (Scope.none,)):
            raise ValueError(f"{self.summary}: an endpoint without credentials has no roles or scope")
        if self.scope in (Scope.school, Scope.district) and not self.roles:
            raise ValueError(f"{self.summary}: a {self.scope} scope is checked against roles; name them")

    @property
    def authenticated(self) -> bool:
        return self.auth is not AuthMode.none

    def answers(self) -> tuple[int, ...]:
        """Every error status this operation can answer: the declared ones plus what the base adds."""
        found = set(self.errors) | set(ALWAYS_ERRORS)
        if self.authenticated:
            found.add(401)
            if self.roles:
                found.add(403)
        if self.scope is not Scope.none:
            found.add(404)
        if self.body is not None:
            found.update(BODY_ERRORS)
        if self.query is not None:
            found.add(422)
        if self.idempotent:
            found.update((409, 422))
        return tuple(sorted(found))
