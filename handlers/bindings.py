"""Redeeming one-time binding codes (teachers and guardians)."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation
from models.accounts import organisation
from models.accounts.principal import load_principal
from models.accounts.schemas import BindingIn, BindingOut

# Codes are ~49 bits; this makes guessing hopeless and still forgives typos.
REDEEM_ATTEMPTS_PER_MINUTE = 10


class BindingsHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "用学校发放的绑定码绑定教师身份或孩子（绑定孩子需监护人同意隐私政策）",
            body=BindingIn,
            response=BindingOut,
            status=201,
            errors=(401, 404, 409, 422, 429),
            idempotent=True,
        )
    }

    async def post(self) -> None:
        data = self.body(BindingIn)
        await self.rate_limit(f"bind:{self.me.id}", REDEEM_ATTEMPTS_PER_MINUTE)
        async with self.transaction() as session:
            row = await organisation.redeem_binding(
                session,
                self.me.id,
                data,
                now=self.deps.clock(),
                policy_version=self.deps.settings.privacy_policy_version,
            )
            principal = await load_principal(session, self.me.id)
        assert principal is not None
        self.send(
            BindingOut(
                kind=row.kind,
                school_id=row.school_id,
                teacher_id=row.teacher_id,
                student_id=row.student_id,
                user=principal,
            ),
            status=201,
        )
