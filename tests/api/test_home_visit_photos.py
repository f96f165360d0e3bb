"""Visit photos through HTTP: re-encoded without metadata (no EXIF GPS), at most 3, only images, size
limit, stored outside the database and shown only to those who may read the visit's sensitive part."""

from __future__ import annotations

import io
import os
import uuid
from datetime import timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from handlers.deps import Deps
from infra.storage import LocalStore
from models.audit.tables import AuditEvent
from models.home_visits.tables import HomeVisitPhoto
from server.app import API
from tests.builders import World, make_teacher, make_wechat_user, make_world, signed_in
from tests.client import Api, Response


def jpeg_with_gps(size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.new("RGB", size, "red")
    exif = Image.Exif()
    exif[0x0110] = "SecretCam"  # camera model
    exif[0x8825] = {1: "N", 2: (29.0, 33.0, 10.0)}  # GPS: where the family lives
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def stored_files(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


async def new_visit(api: Api, deps: Deps, w: World) -> str:
    created = await api.post(
        f"{API}/home-visits",
        {
            "student_ids": [str(w.student_a.id)],
            "visited_at": (deps.clock() - timedelta(hours=1)).isoformat(),
            "mode": "home",
        },
        token=w.token("teacher_a"),
    )
    assert created.status == 201
    return str(created.json()["id"])


async def upload(api: Api, visit_id: str, data: bytes, token: str, ctype: str = "image/jpeg") -> Response:
    return await api.request(
        "POST",
        f"{API}/home-visits/{visit_id}/photos",
        body=data,
        token=token,
        headers={"Content-Type": ctype},
    )


async def test_a_photo_is_stored_without_its_metadata(api: Api, deps: Deps, tmp_path: Path) -> None:
    deps.files = LocalStore(tmp_path)
    w = await make_world(deps)
    visit_id = await new_visit(api, deps, w)
    original = jpeg_with_gps()
    assert b"SecretCam" in original and b"Exif" in original

    added = await upload(api, visit_id, original, w.token("teacher_a"))
    assert added.status == 201, added.body
    photo_id = added.json()["id"]
    [stored] = stored_files(tmp_path)
    assert b"Exif" not in stored and b"SecretCam" not in stored
    with Image.open(io.BytesIO(stored)) as reopened:
        assert reopened.format == "JPEG" and reopened.size == (64, 48)
        assert dict(reopened.getexif()) == {}
    async with deps.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(HomeVisitPhoto)) == 1

    path = f"{API}/home-visits/{visit_id}/photos/{photo_id}"
    served = await api.get(path, token=w.token("school_admin_a"))
    assert served.status == 200 and served.body == stored
    assert served.headers["Content-Type"] == "image/jpeg"
    assert (await api.get(path, token=w.token("parent_a"))).status == 403
    async with deps.sessions() as s, s.begin():
        user = await make_wechat_user(s)
        await make_teacher(s, w.school_a, user, name="丁老师")
    other = await signed_in(deps, user.id)
    assert (await api.get(path, token=other.token)).status == 404
    assert (await api.get(path, token=w.token("teacher_b"))).status == 404
    assert (
        await api.get(f"{API}/home-visits/{visit_id}/photos/{uuid.uuid4()}", token=w.token("teacher_a"))
    ).status == 404
    async with deps.sessions() as s:
        actions = list(
            (await s.execute(select(AuditEvent.action).where(AuditEvent.action.like("%photo%")))).scalars()
        )
    assert sorted(actions) == ["home_visit_photo_added", "home_visit_photo_read"]


async def test_what_is_not_a_photo_or_one_too_many_is_refused(api: Api, deps: Deps, tmp_path: Path) -> None:
    deps.files = LocalStore(tmp_path)
    deps.settings.max_photo_bytes = 200_000
    w = await make_world(deps)
    visit_id = await new_visit(api, deps, w)
    token = w.token("teacher_a")
    assert (await upload(api, visit_id, b"%PDF-1.4 not an image", token)).status == 415
    assert (await upload(api, visit_id, jpeg_with_gps(), token, ctype="application/pdf")).status == 415
    assert (await upload(api, visit_id, jpeg_with_gps(), token, ctype="image/png")).status == 415  # lies
    noise = Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3))
    big = io.BytesIO()
    noise.save(big, "PNG")
    assert len(big.getvalue()) > 200_000
    too_large = await upload(api, visit_id, big.getvalue(), token, ctype="image/png")
    assert too_large.status == 413 and too_large.code == "photo_too_large"
    png = io.BytesIO()
    Image.new("RGB", (10, 10), "blue").save(png, "PNG")
    for _ in range(3):
        assert (await upload(api, visit_id, png.getvalue(), token, ctype="image/png")).status == 201
    fourth = await upload(api, visit_id, png.getvalue(), token, ctype="image/png")
    assert fourth.status == 409 and fourth.code == "too_many_photos"
    assert (
        await upload(api, visit_id, png.getvalue(), w.token("teacher_b"), ctype="image/png")
    ).status == 404
    async with deps.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(HomeVisitPhoto)) == 3
    assert len(stored_files(tmp_path)) == 3
