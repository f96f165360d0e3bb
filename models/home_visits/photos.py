"""Optional photos of a visit (never required): JPEG or PNG, at most MAX_PHOTOS, each re-encoded so that
no metadata survives (EXIF GPS would record where the family lives), stored outside the database. Only
the callers who may read the visit's sensitive part may add or see them; never the parent."""

from __future__ import annotations

import io
import uuid
from datetime import datetime

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import Conflict, Forbidden, PayloadTooLarge, UnsupportedMediaType
from infra.storage import FileStore
from models.accounts.principal import Principal
from models.home_visits.errors import VisitNotFound
from models.home_visits.tables import HomeVisitPhoto
from models.home_visits.visits import get_visit

MAX_PHOTOS = 3
# A phone photo is 12 megapixels; anything far larger is a decompression bomb, not a photo.
MAX_PIXELS = 40_000_000
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}


def reencode(data: bytes, content_type: str) -> bytes:
    """The picture alone: decoded and written afresh, with no EXIF, XMP, ICC or text chunks."""
    wanted = FORMATS.get(content_type)
    if wanted is None:
        raise UnsupportedMediaType("照片须为 JPEG 或 PNG", code="not_an_image")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format != wanted:
                raise UnsupportedMediaType("照片内容与类型不符（须为 JPEG 或 PNG）", code="not_an_image")
            if probe.width * probe.height > MAX_PIXELS:
                raise PayloadTooLarge("照片像素过多", code="photo_too_large")
            image = ImageOps.exif_transpose(probe)  # keep how it was held, then drop the EXIF itself
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UnsupportedMediaType("文件不是有效的图片", code="not_an_image") from exc
    clean = Image.new(image.mode, image.size)  # a new image carries no `info` (EXIF, ICC, text) over
    clean.paste(image)
    if image.mode == "P":
        clean.putpalette(image.getpalette() or [])
    out = io.BytesIO()
    if wanted == "JPEG":
        clean.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    else:
        clean.save(out, "PNG", optimize=True)
    return out.getvalue()


async def add_photo(
    session: AsyncSession,
    principal: Principal,
    visit_id: uuid.UUID,
    data: bytes,
    content_type: str,
    max_bytes: int,
    store: FileStore,
    now: datetime,
) -> HomeVisitPhoto:
    seen = await get_visit(session, principal, visit_id, lock=True)
    if not seen.sensitive:
        raise VisitNotFound()
    if not seen.may_edit:
        raise Forbidden("只有家访老师和学校管理员可以添加照片")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"每张照片不能超过 {max_bytes // (1024 * 1024)} MiB", code="photo_too_large")
    taken = await session.scalar(select(func.count()).where(HomeVisitPhoto.visit_id == visit_id))
    if (taken or 0) >= MAX_PHOTOS:
        raise Conflict(f"每次家访最多 {MAX_PHOTOS} 张照片", code="too_many_photos")
    clean = reencode(data, content_type)
    photo = HomeVisitPhoto(
        id=uuid.uuid4(), visit_id=visit_id, content_type=content_type, size=len(clean), created_at=now
    )
    session.add(photo)
    await session.flush()
    await store.put(photo.id.hex, clean)  # before the commit: a row never names a missing file
    return photo


async def read_photo(
    session: AsyncSession, principal: Principal, visit_id: uuid.UUID, photo_id: uuid.UUID, store: FileStore
) -> tuple[HomeVisitPhoto, bytes, uuid.UUID]:
    seen = await get_visit(session, principal, visit_id)
    photo = await session.get(HomeVisitPhoto, photo_id)
    if not seen.sensitive or photo is None or photo.visit_id != visit_id:
        raise VisitNotFound("照片不存在")
    data = await store.get(photo.id.hex)
    if data is None:
        raise VisitNotFound("照片不存在")
    return photo, data, seen.visit.school_id
