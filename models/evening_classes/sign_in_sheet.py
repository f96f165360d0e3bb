"""An evening class's sign-in sheet (签到表) as an A4 PDF: title, time, place, every confirmed family with
a signature column, then the waitlist. The same roster the API's GET …/roster answers (service.roster:
the caller must be staff who reach the class), each parent named as the school knows them
(王小明妈妈), never by an empty name.

Uses the Adobe CID font STSong-Light as the certificate does (models/learning/certificate.py): every
PDF reader provides it, so no font file ships with us."""

from __future__ import annotations

import io
import uuid
from collections import defaultdict

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.clock import SHANGHAI
from models.accounts.principal import Principal
from models.accounts.tables import Guardianship, School, Student
from models.evening_classes.attendance import roster
from models.evening_classes.schemas import RosterOut
from models.evening_classes.tables import EveningClass
from models.evening_classes.visibility import staff_class
from models.learning.certificate import FONT

RELATION_SUFFIX = {"mother": "妈妈", "father": "爸爸", "grandparent": "祖辈家长", "other": "家长"}
WEEKDAYS = "一二三四五六日"


async def sheet_data(
    session: AsyncSession, principal: Principal, class_id: uuid.UUID
) -> tuple[EveningClass, School, RosterOut, dict[uuid.UUID, str]]:
    """The class, its school, its roster and what to call each parent on paper."""
    evening = await staff_class(session, principal, class_id)
    listed = await roster(session, principal, class_id)
    school = await session.get(School, evening.school_id)
    assert school is not None
    children: dict[uuid.UUID, list[str]] = defaultdict(list)
    for parent_id, child, relation in await session.execute(
        select(Guardianship.parent_user_id, Student.name, Guardianship.relation)
        .join(Student, Student.id == Guardianship.student_id)
        .where(
            Guardianship.parent_user_id.in_([e.parent_id for e in listed.items]),
            Student.school_id == evening.school_id,
        )
        .order_by(Student.name)
    ):
        children[parent_id].append(f"{child}{RELATION_SUFFIX.get(relation, '家长')}")
    names = {}
    for entry in listed.items:
        known = "、".join(children.get(entry.parent_id, []))
        names[entry.parent_id] = known or entry.display_name.strip() or "家长（未留姓名）"
    return evening, school, listed, names


def _when(evening: EveningClass) -> str:
    starts, ends = evening.starts_at.astimezone(SHANGHAI), evening.ends_at.astimezone(SHANGHAI)
    return (
        f"{starts.year}年{starts.month}月{starts.day}日（星期{WEEKDAYS[starts.weekday()]}）"
        f"{starts:%H:%M}–{ends:%H:%M}"
    )


def render_sign_in_sheet(
    evening: EveningClass, school: School, listed: RosterOut, names: dict[uuid.UUID, str]
) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"签到表 {evening.title}",
    )
    title = ParagraphStyle("title", fontName=FONT, fontSize=18, leading=24, alignment=1)
    text = ParagraphStyle("text", fontName=FONT, fontSize=11, leading=16)
    heading = ParagraphStyle("heading", fontName=FONT, fontSize=13, leading=20, spaceBefore=8)
    story: list[object] = [
        Paragraph(f"{school.name} 家长夜校签到表", title),
        Spacer(1, 4 * mm),
        Paragraph(f"课程：{evening.title}", text),
        Paragraph(f"时间：{_when(evening)}", text),
        Paragraph(f"地点：{evening.place or evening.meeting_url or '线上'}", text),
        Paragraph(
            f"名额 {listed.capacity} 人，已报名 {listed.confirmed} 人，候补 {listed.waitlisted} 人", text
        ),
        Spacer(1, 4 * mm),
    ]
    confirmed = [e for e in listed.items if e.status == "confirmed"]
    rows: list[list[str]] = [["序号", "家长", "签名", "备注"]]
    rows += [
        [str(n), names[e.parent_id], "", "已签到" if e.present else ""]
        for n, e in enumerate(confirmed, start=1)
    ]
    if not confirmed:
        rows.append(["", "暂无报名家庭", "", ""])
    story.append(_table(rows, [14 * mm, 62 * mm, 56 * mm, 42 * mm]))
    waitlisted = [e for e in listed.items if e.status == "waitlisted"]
    if waitlisted:
        story.append(Paragraph("候补名单（有空位时按顺序递补）", heading))
        wait_rows = [["候补", "家长", "签名", "备注"]]
        wait_rows += [[str(e.position), names[e.parent_id], "", ""] for e in waitlisted]
        story.append(_table(wait_rows, [14 * mm, 62 * mm, 56 * mm, 42 * mm]))
    doc.build(story)
    return buffer.getvalue()


def _table(rows: list[list[str]], widths: list[float]) -> Table:
    table = Table(rows, colWidths=widths, rowHeights=[9 * mm] * len(rows), repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 11),
                ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.9, 0.92, 0.96)),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("ALIGN", (0, 0), (0, -1), "CENTER"),
            ]
        )
    )
    return table
