"""Printable sheets (A4 PDF), reachable with a bearer token as any endpoint: an evening class's sign-in
sheet (签到表)."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from models.accounts.rules import STAFF_ROLES
from models.audit.actions import AuditAction
from models.evening_classes.sign_in_sheet import render_sign_in_sheet, sheet_data


class SignInSheetHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "家长夜校签到表（A4 PDF）：课程、时间、地点、每个报名家庭一行（含签名栏），以及候补名单",
            roles=STAFF_ROLES,
            errors=(401, 403, 404),
            scope=Scope.record,
            media_type="application/pdf",
            audit=AuditAction.evening_roster_read,  # it names the families, as the roster does
        )
    }

    async def get(self, class_id: str) -> None:
        async with self.transaction() as session:
            evening, school, listed, names = await sheet_data(session, self.me, self.path_uuid(class_id))
        pdf = render_sign_in_sheet(evening, school, listed, names)
        filename = f"签到表-{evening.title}-{evening.starts_at:%Y%m%d}.pdf"
        self.set_header("Content-Type", "application/pdf")
        self.set_header("Content-Disposition", f"inline; filename*=UTF-8''{quote(filename)}")
        self.finish(pdf)
