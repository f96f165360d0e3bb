"""The completion certificate (结业证书) as a one-page PDF a parent can save or print.

Uses the Adobe CID font STSong-Light that every PDF reader provides, so no font file ships with us.
"""

from __future__ import annotations

import io

from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from infra.clock import SHANGHAI
from models.learning.tables import Certificate

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))


def render_certificate_pdf(cert: Certificate, *, parent_name: str, district_name: str) -> bytes:
    buffer = io.BytesIO()
    width, height = landscape(A4)
    pdf = canvas.Canvas(buffer, pagesize=(width, height))
    pdf.setTitle(f"结业证书 {cert.number}")
    pdf.setStrokeColorRGB(0.7, 0.1, 0.1)
    pdf.setLineWidth(6)
    pdf.rect(30, 30, width - 60, height - 60)
    pdf.setFillColorRGB(0.6, 0.05, 0.05)
    pdf.setFont(FONT, 44)
    pdf.drawCentredString(width / 2, height - 130, "家长学校结业证书")
    pdf.setFillColorRGB(0, 0, 0)
    pdf.setFont(FONT, 20)
    name = parent_name or "家长"
    lines = [
        f"{name}：",
        f"您已完成 {cert.school_year} 学年家长学校规定的全部学习内容，",
        "准予结业。感谢您对孩子成长的用心陪伴！",
    ]
    y = height - 220
    for index, line in enumerate(lines):
        pdf.drawString(110 if index == 0 else 150, y, line)
        y -= 40
    pdf.setFont(FONT, 16)
    issued = cert.issued_at.astimezone(SHANGHAI)
    pdf.drawRightString(width - 110, 150, f"{district_name}家长学校")
    pdf.drawRightString(width - 110, 120, f"{issued.year}年{issued.month}月{issued.day}日")
    pdf.setFont(FONT, 12)
    pdf.drawString(110, 80, f"证书编号：{cert.number}")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
