"""Answering: the surveys a parent may answer, one whole response per sampled student, and the mixing
job that writes accepted answers out so that nothing in the database pairs them with a household.

A response is accepted in one transaction that writes two rows: `survey_participation` (this student's
household has answered; the primary key keeps it to one) and `survey_pending_response` (the answers,
sealed with the field key, which is kept outside the database). The two share that transaction's `xmin`,
but what they pair is a household and ciphertext. `mix` then opens, in transactions of its own, every
cell (school and grade) holding at least `MIX_BATCH` sealed answers — or every cell, at closing — and
writes them as `survey_response` rows in shuffled order, with random ids and the day of the batch only,
deleting the sealed copies in the same transaction. At closing, a cell's remainder under a batch is
written out together with the cell's earlier rows, rewritten (new ids, one transaction), so the last few
households of a cell are hidden among all of it; a cell with fewer than MIX_BATCH households in all
cannot be hidden better than among those few (and every figure of it is suppressed).

An answer accepted is in PostgreSQL from the moment it is acknowledged, so a restart loses nothing. It
counts in the response rate at once and in the statistics once written out (see `written_answers`; at
closing every answer is)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.clock import SHANGHAI
from infra.errors import Conflict, NotFound, ValidationFailed
from infra.security import FieldCipher
from models.accounts.principal import Principal
from models.accounts.tables import User
from models.surveys.rules import MIX_BATCH, answer_errors
from models.surveys.schemas import DimensionOut, MySurvey, ResponseAccepted, ResponseIn
from models.surveys.service import SurveyClosed, close
from models.surveys.tables import (
    Survey,
    SurveyParticipation,
    SurveyPendingResponse,
    SurveyResponse,
    SurveySample,
)

SEAL_CONTEXT = "survey-response:v1"
OPENID_CONTEXT = "survey-text-openid:v1"
UNCHECKED, HELD = "unchecked", "held"
# Sealed answers are padded to a multiple of this many bytes, so their length says little of the text.
SEAL_BLOCK = 512
_shuffle = random.SystemRandom().shuffle


class AlreadyAnswered(Conflict):
    code, title = "already_answered", "这个孩子的家庭已经填写过本调查"


class NotSampled(NotFound):
    code, title = "not_in_sample", "这个孩子不在本调查的对象中"


def _open(survey: Survey, now: datetime) -> bool:
    return (
        survey.status == "published"
        and survey.opens_at is not None
        and survey.closes_at is not None
        and survey.opens_at <= now < survey.closes_at
    )


async def my_surveys(session: AsyncSession, principal: Principal, now: datetime) -> list[MySurvey]:
    """Open surveys, one entry per child of this parent in the sample, oldest child binding first."""
    children = {c.id: c for c in principal.children}
    if not children:
        return []
    answered = exists().where(
        SurveyParticipation.survey_id == SurveySample.survey_id,
        SurveyParticipation.student_id == SurveySample.student_id,
    )
    rows = await session.execute(
        select(Survey, SurveySample.student_id, answered)
        .join(SurveySample, SurveySample.survey_id == Survey.id)
        .where(
            SurveySample.student_id.in_(children),
            Survey.status == "published",
            Survey.opens_at <= now,
            Survey.closes_at > now,
        )
        .order_by(Survey.closes_at, Survey.id)
    )
    order = list(children)
    items = [
        MySurvey(
            survey_id=survey.id,
            title=survey.title,
            intro=survey.intro,
            closes_at=survey.closes_at,
            student_id=student_id,
            student_name=children[student_id].name,
            answered=bool(done),
            dimensions=[DimensionOut.model_validate(d) for d in survey.dimensions],
        )
        for survey, student_id, done in rows
    ]
    return sorted(items, key=lambda i: (i.closes_at, str(i.survey_id), order.index(i.student_id)))


def seal(cipher: FieldCipher, payload: dict[str, Any]) -> bytes:
    plain = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()
    padding = -(len(plain.encode()) + 1) % SEAL_BLOCK
    return cipher.encrypt(plain + "\n" + " " * padding, SEAL_CONTEXT)


def unseal(cipher: FieldCipher, blob: bytes) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads(cipher.decrypt(blob, SEAL_CONTEXT).rstrip(" ").rstrip("\n"))
    return payload


def seal_openid(cipher: FieldCipher, openid: str) -> bytes:
    return cipher.encrypt(openid, OPENID_CONTEXT)


def unseal_openid(cipher: FieldCipher, blob: bytes) -> str:
    return cipher.decrypt(blob, OPENID_CONTEXT)


@dataclass(frozen=True)
class Accepted:
    """What the request that accepted a response needs after its commit: the free texts to check with
    WeChat, and the sealed row to record the outcome on. Never sent to the client."""

    out: ResponseAccepted
    pending_id: uuid.UUID
    cell: tuple[uuid.UUID, int]  # the school and grade it waits in
    texts: dict[str, str]
    openid: str | None


def text_keys(dimensions: list[dict[str, Any]]) -> set[str]:
    return {q["key"] for d in dimensions for q in d["questions"] if q["kind"] == "text"}


async def submit(
    session: AsyncSession,
    principal: Principal,
    survey_id: uuid.UUID,
    data: ResponseIn,
    cipher: FieldCipher,
    now: datetime,
) -> Accepted:
    """Accept one whole response for a sampled child of the caller. Nothing written here names the
    caller: the openid that WeChat's text check needs travels sealed inside the answers."""
    children = principal.child_ids()
    survey = await session.get(Survey, survey_id)
    if survey is None or survey.status == "draft" or not children:
        raise NotFound("调查不存在")
    sampled = await session.scalar(
        select(SurveySample)
        .where(SurveySample.survey_id == survey.id, SurveySample.student_id.in_(children))
        .limit(1)
    )
    if sampled is None:
        raise NotFound("调查不存在")
    if not _open(survey, now):
        raise SurveyClosed()
    cell = await session.get(SurveySample, (survey.id, data.student_id))
    if cell is None or data.student_id not in children:
        raise NotSampled()
    errors = answer_errors(survey.dimensions, data.answers)
    if errors:
        raise ValidationFailed("答卷有误，请检查后再提交", errors=errors)
    taken = await session.scalar(
        insert(SurveyParticipation)
        .values(survey_id=survey.id, student_id=data.student_id)
        .on_conflict_do_nothing()
        .returning(SurveyParticipation.student_id)
    )
    if taken is None:
        raise AlreadyAnswered()
    texts = {
        k: v for k, v in data.answers.items() if k in text_keys(survey.dimensions) and isinstance(v, str)
    }
    openid = None
    if texts:
        user = await session.get(User, principal.id)
        openid = user.wechat_openid if user is not None else None
    pending = SurveyPendingResponse(
        id=uuid.uuid4(),
        survey_id=survey.id,
        school_id=cell.school_id,
        grade=cell.grade,
        sealed=seal(cipher, {"answers": data.answers, "openid": openid, "checks": {}}),
    )
    session.add(pending)
    out = ResponseAccepted(survey_id=survey.id, student_id=data.student_id)
    return Accepted(out, pending.id, (cell.school_id, cell.grade), texts, openid)


async def record_checks(
    session: AsyncSession, pending_id: uuid.UUID, checks: dict[str, str], cipher: FieldCipher
) -> bool:
    """Write WeChat's verdicts into a response still sealed (False: it was written out meanwhile, and
    the text-check job takes it from there). Once every text is checked the openid is dropped."""
    row = await session.get(SurveyPendingResponse, pending_id, with_for_update={"skip_locked": True})
    if row is None:
        return False
    payload = unseal(cipher, row.sealed)
    payload["checks"] = checks
    if UNCHECKED not in checks.values():
        payload["openid"] = None
    row.sealed = seal(cipher, payload)
    return True


def _written(
    payload: dict[str, Any], keys: set[str], cipher: FieldCipher
) -> tuple[dict[str, str], bytes | None]:
    """A response's text statuses and sealed openid as it is written out."""
    answers, checks = payload["answers"], payload.get("checks") or {}
    status = {k: checks.get(k, UNCHECKED) for k in answers if k in keys}
    openid = payload.get("openid")
    unchecked = UNCHECKED in status.values()
    if unchecked and not openid:
        status = {k: HELD if v == UNCHECKED else v for k, v in status.items()}  # no one to check it as
    return status, seal_openid(cipher, openid) if unchecked and openid else None


async def mix(
    session: AsyncSession,
    survey_id: uuid.UUID,
    cipher: FieldCipher,
    now: datetime,
    *,
    everything: bool = False,
    cell: tuple[uuid.UUID, int] | None = None,
) -> int:
    """Write out the sealed answers of every cell holding at least MIX_BATCH (or, `everything`, of all
    cells: at closing) as shuffled plain rows; with `cell`, of that cell only (the one an answer just
    joined). Rows another transaction is mixing are skipped (SKIP LOCKED). Returns how many answers were
    written out."""
    survey = await session.get(Survey, survey_id)
    assert survey is not None
    keys = text_keys(survey.dimensions)
    query = select(SurveyPendingResponse).where(SurveyPendingResponse.survey_id == survey_id)
    if cell is not None:
        query = query.where(
            SurveyPendingResponse.school_id == cell[0], SurveyPendingResponse.grade == cell[1]
        )
    pending = (await session.execute(query.with_for_update(skip_locked=True))).scalars()
    cells: dict[tuple[uuid.UUID, int], list[SurveyPendingResponse]] = defaultdict(list)
    for row in pending:
        cells[(row.school_id, row.grade)].append(row)
    batch = [rows for rows in cells.values() if everything or len(rows) >= MIX_BATCH]
    chosen = [row for rows in batch for row in rows]
    if not chosen:
        return 0
    written: list[tuple[uuid.UUID, int, dict[str, Any], dict[str, str], bytes | None]] = []
    for row in chosen:
        payload = unseal(cipher, row.sealed)
        written.append((row.school_id, row.grade, payload["answers"], *_written(payload, keys, cipher)))
    # A remainder under a batch (at closing) is written out together with its cell's earlier answers,
    # rewritten in the same transaction: alone, its few rows would point at the last few households.
    short = [cell for cell, rows in cells.items() if len(rows) < MIX_BATCH and rows in batch]
    for school_id, grade in short:
        earlier = await session.execute(
            delete(SurveyResponse)
            .where(
                SurveyResponse.survey_id == survey_id,
                SurveyResponse.school_id == school_id,
                SurveyResponse.grade == grade,
            )
            .returning(SurveyResponse.answers, SurveyResponse.text_status, SurveyResponse.sealed_openid)
        )
        written += [(school_id, grade, a, t, o) for a, t, o in earlier]
    day = now.astimezone(SHANGHAI).date()
    plain = [
        {
            "id": uuid.uuid4(),
            "survey_id": survey_id,
            "school_id": school,
            "grade": grade,
            "day": day,
            "answers": answers,
            "text_status": status,
            "sealed_openid": openid,
        }
        for school, grade, answers, status, openid in written
    ]
    _shuffle(plain)
    await session.execute(insert(SurveyResponse), plain)
    await session.execute(
        update(Survey).where(Survey.id == survey_id).values(results_version=Survey.results_version + 1)
    )
    await session.execute(
        delete(SurveyPendingResponse).where(SurveyPendingResponse.id.in_([row.id for row in chosen]))
    )
    return len(chosen)


async def ready_to_mix(session: AsyncSession, survey_id: uuid.UUID, cell: tuple[uuid.UUID, int]) -> bool:
    """Whether the cell an answer just joined holds a full batch (an index range count)."""
    waiting = await session.scalar(
        select(func.count())
        .select_from(SurveyPendingResponse)
        .where(
            SurveyPendingResponse.survey_id == survey_id,
            SurveyPendingResponse.school_id == cell[0],
            SurveyPendingResponse.grade == cell[1],
        )
    )
    return (waiting or 0) >= MIX_BATCH


async def written_answers(
    session: AsyncSession, survey_id: uuid.UUID
) -> list[tuple[uuid.UUID, int, dict[str, Any]]]:
    """(school, grade, answers) of every response written out. Statistics read only these: figures that
    moved with each single answer would let whoever watches them alongside the participation rows work
    out one household's answers; written out, they move by batches of at least MIX_BATCH (and at closing
    every answer is written out, so the final figures hold every response)."""
    rows = await session.execute(
        select(SurveyResponse.school_id, SurveyResponse.grade, SurveyResponse.answers).where(
            SurveyResponse.survey_id == survey_id
        )
    )
    return [(school, grade, answers) for school, grade, answers in rows]


async def close_survey(session: AsyncSession, survey: Survey, cipher: FieldCipher, now: datetime) -> Survey:
    """Close, and write out every answer still sealed (cells under MIX_BATCH included)."""
    closed = await close(session, survey, now)
    await mix(session, survey.id, cipher, now, everything=True)
    return closed
