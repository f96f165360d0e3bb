"""The course catalogue: list, read, add (districts and schools), assign custom courses to families."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from models.accounts.rules import ADMIN_ROLES, DISTRICT_ADMINS
from models.accounts.tables import District
from models.audit.actions import AuditAction
from models.catalog import service as catalog
from models.catalog.schemas import AssignmentIn, AssignmentOut, CourseIn, CourseOut, CourseQuery
from models.pagination import Page

CoursePage = Page[CourseOut]
CACHE_SECONDS = 600
# Per process; each map is cleared wholesale when full (cheap, and rare: one family's pages are small).
LOCAL_SIGNATURES = 4096
LOCAL_BODY_BYTES = 16 * 1024 * 1024

# In front of the Redis cache, per process: Redis key → (LocalCache generation when read, body). An entry
# counts only while the generation is unchanged, i.e. no invalidation (of the catalogue, or anything
# else, or a lost subscription) arrived since; the key carries the catalogue version as in Redis.
_bodies: dict[str, tuple[int, bytes]] = {}
_body_bytes = 0
# Principal JSON → its visibility signature (a pure function of it), so a hit needs no parsing.
_signatures: dict[bytes, str] = {}


class _CatalogueHandler(ApiHandler):
    def visibility_signature(self) -> str:
        assert self.caller is not None
        principal_json = self.caller.principal_json
        scope = _signatures.get(principal_json)
        if scope is None:
            scope = catalog.visibility_signature(self.me)
            if len(_signatures) >= LOCAL_SIGNATURES:
                _signatures.clear()
            _signatures[principal_json] = scope
        return scope

    async def send_cached(self, what: str, produce: Callable[[], Awaitable[bytes]]) -> None:
        """Serve from the cache of this caller's view of the catalogue (in this process, else Redis).
        Entries live under the catalogue's version, which every change bumps, so a change is visible
        at once everywhere."""
        redis, keys, local = self.deps.redis, self.deps.keys, self.deps.local
        version = local.catalogue_version()
        if version is None:
            generation = local.generation
            version = int(await redis.get(keys.catalogue_version()) or 0)
            local.remember_catalogue_version(generation, version)
        digest = hashlib.blake2b(
            f"{self.visibility_signature()}\n{what}".encode(), digest_size=16
        ).hexdigest()
        key = keys.catalogue_cache(version, digest)
        generation = local.generation
        entry = _bodies.get(key)
        if entry is not None and entry[0] == generation and local.healthy:
            self.send_with_etag(entry[1])
            return
        cached = await redis.get(key)
        body = cached if isinstance(cached, bytes) else None
        if body is None:
            body = await produce()
            await redis.set(key, body, ex=CACHE_SECONDS)
        if local.healthy:  # an announcement while we read makes the generation differ: never used
            _remember_body(key, generation, body)
        self.send_with_etag(body)


def _remember_body(key: str, generation: int, body: bytes) -> None:
    global _body_bytes
    if _body_bytes + len(body) > LOCAL_BODY_BYTES:
        _bodies.clear()
        _body_bytes = 0
    previous = _bodies.get(key)
    _body_bytes += len(body) - (len(previous[1]) if previous else 0)
    _bodies[key] = (generation, body)


class CoursesHandler(_CatalogueHandler):
    openapi: ClassVar = {
        "get": Operation(
            "课程列表（按层级、学段、主题筛选，可搜索标题和简介）；定制课只对被指定的家庭可见",
            query=CourseQuery,
            response=CoursePage,
            errors=(401, 422),
        ),
    }

    async def get(self) -> None:
        query = self.query(CourseQuery)

        async def produce() -> bytes:
            async with self.transaction() as session:
                rows, cursor = await catalog.list_courses(session, self.me, query)
            page = CoursePage(items=[catalog.course_out(c) for c in rows], next_cursor=cursor)
            return page.model_dump_json().encode()

        await self.send_cached(f"list:{query.model_dump_json()}", produce)


class CourseHandler(_CatalogueHandler):
    openapi: ClassVar = {
        "get": Operation("课程详情", response=CourseOut, errors=(401, 404), scope=Scope.record)
    }

    async def get(self, course_id: str) -> None:
        ident = self.path_uuid(course_id)

        async def produce() -> bytes:
            async with self.transaction() as session:
                course = await catalog.get_course(session, self.me, ident)
            return catalog.course_out(course).model_dump_json().encode()

        await self.send_cached(f"course:{ident}", produce)


class DistrictCoursesHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "区县新增课程（本区所有学校可见；定制课只对被指定的家庭可见）",
            body=CourseIn,
            response=CourseOut,
            status=201,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 422),
            idempotent=True,
            scope=Scope.district,
            audit=AuditAction.course_created,
        )
    }

    async def post(self, district_id: str) -> None:
        data = self.body(CourseIn)
        async with self.district_scope(district_id) as (session, district):
            course = await catalog.create_course(session, self.me, data, district, None)
        self.send(catalog.course_out(course), status=201)


class SchoolCoursesHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "学校新增校本课程（本校可见；定制课只对被指定的家庭可见）",
            body=CourseIn,
            response=CourseOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.course_created,
        )
    }

    async def post(self, school_id: str) -> None:
        data = self.body(CourseIn)
        async with self.school_scope(school_id) as (session, school):
            district = await session.get(District, school.district_id)
            assert district is not None
            course = await catalog.create_course(session, self.me, data, district, school)
        self.send(catalog.course_out(course), status=201)


class CourseAssignmentsHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "把定制课指定给本校的家庭（按学生；孩子的所有监护人都能看到）",
            body=AssignmentIn,
            response=AssignmentOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 422),
            scope=Scope.school,
            audit=AuditAction.course_assigned,
        )
    }

    async def post(self, school_id: str) -> None:
        data = self.body(AssignmentIn)
        async with self.school_scope(school_id) as (session, school):
            out = await catalog.assign_course(session, self.me, school, data)
        self.send(out, status=201)
