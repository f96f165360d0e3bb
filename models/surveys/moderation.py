"""Free text is read by no one before WeChat's content-security check (msgSecCheck v2) has passed it or
a district admin has released it.

- Right after a response is accepted, the request asks WeChat about each text and records the verdict
  on the sealed response: `pass` → passed; `risky` or `review` → held for a district admin to release
  or reject; an outage or timeout → unchecked. Either way the rest of the response counts as usual.
- Texts still unchecked when written out keep the writer's openid sealed beside them (WeChat needs it)
  and `TextChecker`, a durable job every process runs, asks again until WeChat answers; then the openid
  is dropped. A refusal other than an outage (e.g. the openid's two-hour window passed) holds the text
  for a person.
- Only passed and released texts are shown (the workbook's 意见建议), and only from a school whose
  responses are at least MIN_CELL, with no identity."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import cast, func, select
from sqlalchemy.dialects.postgresql import JSONPATH
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.errors import Conflict, NotFound, ServiceUnavailable
from infra.security import FieldCipher
from infra.wechat import WechatError, WechatGateway
from models.accounts.tables import School
from models.surveys.answering import HELD, UNCHECKED, unseal_openid
from models.surveys.rules import MIN_CELL, questions_of
from models.surveys.tables import Survey, SurveyResponse

log = logging.getLogger("surveys.moderation")
PASSED, RELEASED, REJECTED = "passed", "released", "rejected"
SHOWN = frozenset({PASSED, RELEASED})
POLL_INTERVAL = 30.0  # seconds between rounds of the job while WeChat stays down
BATCH = 20
VERDICT = {"pass": PASSED, "risky": HELD, "review": HELD}


class NotHeld(Conflict):
    code, title = "text_not_held", "这条意见不在待审核状态"


async def check(wechat: WechatGateway, openid: str | None, texts: dict[str, str]) -> dict[str, str]:
    """Each text's status after asking WeChat once: passed, held, or unchecked (WeChat unreachable)."""
    found: dict[str, str] = {}
    for key, content in texts.items():
        if not openid:
            found[key] = HELD
            continue
        try:
            found[key] = VERDICT[await wechat.msg_sec_check(openid=openid, content=content)]
        except ServiceUnavailable:
            found[key] = UNCHECKED
        except WechatError as exc:
            log.info("msgSecCheck refused (errcode %s): held for a person", exc.errcode)
            found[key] = HELD
    return found


class TextChecker:
    """The durable job: texts written out unchecked are asked about again until WeChat answers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        wechat: WechatGateway,
        cipher: FieldCipher,
    ) -> None:
        self._sessions, self._wechat, self._cipher = sessions, wechat, cipher

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                while await self.run_once() >= BATCH and not stop.is_set():
                    pass
            except Exception:
                log.exception("text check round failed; will retry")
            try:
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Check one batch; returns how many responses were settled (0 while WeChat is down)."""
        settled = 0
        async with self._sessions() as session, session.begin():
            rows = (
                await session.scalars(
                    select(SurveyResponse)
                    .where(SurveyResponse.sealed_openid.is_not(None))
                    .limit(BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                assert row.sealed_openid is not None
                openid = unseal_openid(self._cipher, row.sealed_openid)
                texts = {k: str(row.answers[k]) for k, v in row.text_status.items() if v == UNCHECKED}
                found = await check(self._wechat, openid, texts)
                if UNCHECKED in found.values():
                    break  # WeChat is still down: try again next round
                row.text_status = row.text_status | found
                row.sealed_openid = None
                settled += 1
        return settled


class HeldText(BaseModel):
    id: str = Field(description="待审核意见的编号")
    question_key: str
    question: str
    body: str


class HeldTexts(BaseModel):
    items: list[HeldText]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["release", "reject"]


def _text_id(response_id: uuid.UUID, key: str) -> str:
    return f"{response_id}.{key}"


async def held_texts(session: AsyncSession, survey: Survey) -> HeldTexts:
    questions = questions_of(survey.dimensions)
    rows = await session.execute(
        select(SurveyResponse.id, SurveyResponse.answers, SurveyResponse.text_status)
        .where(
            SurveyResponse.survey_id == survey.id,
            func.jsonb_path_exists(SurveyResponse.text_status, cast(f'$.* ? (@ == "{HELD}")', JSONPATH)),
        )
        .order_by(SurveyResponse.id)
    )
    items = [
        HeldText(
            id=_text_id(rid, key), question_key=key, question=questions[key]["text"], body=str(answers[key])
        )
        for rid, answers, status in rows
        for key, value in sorted(status.items())
        if value == HELD
    ]
    return HeldTexts(items=items)


async def decide(session: AsyncSession, survey: Survey, text_id: str, decision: str) -> HeldText:
    raw_id, _, key = text_id.partition(".")
    try:
        response_id = uuid.UUID(raw_id)
    except ValueError as exc:
        raise NotFound("意见不存在") from exc
    row = await session.get(SurveyResponse, response_id, with_for_update=True)
    if row is None or row.survey_id != survey.id or key not in row.text_status:
        raise NotFound("意见不存在")
    if row.text_status[key] != HELD:
        raise NotHeld()
    row.text_status = row.text_status | {key: RELEASED if decision == "release" else REJECTED}
    question = questions_of(survey.dimensions)[key]
    return HeldText(id=text_id, question_key=key, question=question["text"], body=str(row.answers[key]))


async def shown_quotes(session: AsyncSession, survey: Survey) -> list[tuple[str, str, str]]:
    """(school, question, text) of passed and released texts, from schools with at least MIN_CELL
    responses only, in a stable order that says nothing of who wrote first."""
    questions = questions_of(survey.dimensions)
    counts = dict(
        (school, n)
        for school, n in await session.execute(
            select(SurveyResponse.school_id, func.count())
            .where(SurveyResponse.survey_id == survey.id)
            .group_by(SurveyResponse.school_id)
        )
    )
    names = {
        school_id: name
        for school_id, name in await session.execute(
            select(School.id, School.name).where(School.id.in_(counts))
        )
    }
    quotes: list[tuple[str, str, str]] = []
    rows = await session.execute(
        select(SurveyResponse.school_id, SurveyResponse.answers, SurveyResponse.text_status).where(
            SurveyResponse.survey_id == survey.id
        )
    )
    for school_id, answers, status in rows:
        if counts.get(school_id, 0) < MIN_CELL:
            continue
        for key, value in status.items():
            if value in SHOWN:
                quotes.append((names.get(school_id, ""), questions[key]["text"], str(answers[key])))
    return sorted(quotes)
