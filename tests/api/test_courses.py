"""The course catalogue over HTTP: filters, Chinese search, pagination, who sees what (custom courses only
for the families they are assigned to), adding and assigning courses, and ETag/304 with the Redis cache."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from handlers.deps import Deps
from models.catalog.tables import Course
from tests.builders import World, make_classroom, make_course, make_parent_of, make_world, token_for
from tests.client import Api

API = "/api/v1"


async def list_courses(api: Api, token: str | None, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
    """Every course the caller sees, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {**filters, "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        response = await api.get(f"{API}/courses?{urlencode(params)}", token=token)
        assert response.status == 200, response.body
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def titles(api: Api, token: str | None, **filters: str) -> set[str]:
    return {c["title"] for c in await list_courses(api, token, **filters)}


async def detail_status(api: Api, token: str, course: Course) -> int:
    return (await api.get(f"{API}/courses/{course.id}", token=token)).status


async def parent_elsewhere(deps: Deps, world: World) -> str:
    """A token of a parent whose child is at school C (the other district)."""
    async with deps.sessions() as s, s.begin():
        classroom = await make_classroom(s, world.school_c, "丙一班", 1)
        parent, _ = await make_parent_of(s, classroom)
    return await token_for(deps, parent.id)


# ---- filters, search, pagination, detail -------------------------------------------------------------
async def test_filters_by_tier_grade_band_and_topic(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        await make_course(
            s,
            tier="foundation",
            title="幼小衔接准备",
            grade_bands=["kindergarten", "primary_lower"],
            topic="school_transition",
        )
        await make_course(s, tier="foundation", title="青春期亲子沟通", grade_bands=["junior"])
        await make_course(
            s,
            tier="general",
            title="家庭安全大讲堂",
            grade_bands=["primary_middle", "junior"],
            topic="safety",
        )
        await make_course(
            s,
            tier="online",
            title="手机与网络使用",
            grade_bands=["junior", "senior"],
            topic="digital_life",
        )
    token = world.token("parent_a")

    assert await titles(api, token) == {"幼小衔接准备", "青春期亲子沟通", "家庭安全大讲堂", "手机与网络使用"}
    assert await titles(api, token, tier="foundation") == {"幼小衔接准备", "青春期亲子沟通"}
    assert await titles(api, token, grade_band="junior") == {
        "青春期亲子沟通",
        "家庭安全大讲堂",
        "手机与网络使用",
    }
    assert await titles(api, token, grade_band="kindergarten") == {"幼小衔接准备"}
    assert await titles(api, token, topic="safety") == {"家庭安全大讲堂"}
    assert await titles(api, token, tier="foundation", grade_band="junior") == {"青春期亲子沟通"}
    assert await titles(api, token, tier="general", topic="digital_life") == set()

    online = (await list_courses(api, token, tier="online"))[0]
    assert online["video_seconds"] == 600 and online["media_url"].startswith("https://")
    assert online["grade_bands"] == ["junior", "senior"] and online["scope"] == "catalogue"

    for bad in ("tier=elective", "grade_band=university", "topic=astrology", "limit=101", "limit=0"):
        response = await api.get(f"{API}/courses?{bad}", token=token)
        assert response.status == 422, bad
        assert response.code == "validation_error"


async def test_search_in_chinese_on_title_and_summary_with_words_anded(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        for title, summary in (
            ("青春期亲子沟通", "孩子进入青春期后，父母如何倾听与表达"),
            ("手机与网络使用", "帮助孩子合理使用手机，预防网络沉迷"),
            ("亲子阅读启蒙", "从绘本开始培养阅读习惯，也谈亲子沟通"),
        ):
            course = await make_course(s, title=title)
            course.summary = summary
    token = world.token("parent_a")

    assert await titles(api, token, q="青春期") == {"青春期亲子沟通"}
    assert await titles(api, token, q="网络沉迷") == {"手机与网络使用"}  # in the summary only
    assert await titles(api, token, q="沟通") == {"青春期亲子沟通", "亲子阅读启蒙"}
    assert await titles(api, token, q="阅读 沟通") == {"亲子阅读启蒙"}  # every word must match
    assert await titles(api, token, q="阅读\u3000沟通") == {"亲子阅读启蒙"}  # a full-width space too
    assert await titles(api, token, q="青春期 手机") == set()
    assert await titles(api, token, q="  亲子  ") == {"青春期亲子沟通", "亲子阅读启蒙"}
    assert await titles(api, token, q="沟通", tier="online") == set()


async def test_percent_and_underscore_in_a_search_match_literally(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        for title in ("成绩不是100%的全部", "成绩不是100分的全部", "家庭会议a_b法", "家庭会议axb法"):
            await make_course(s, title=title)
    token = world.token("parent_a")

    assert await titles(api, token, q="100%") == {"成绩不是100%的全部"}
    assert await titles(api, token, q="%") == {"成绩不是100%的全部"}
    assert await titles(api, token, q="a_b") == {"家庭会议a_b法"}
    assert await titles(api, token, q="_") == {"家庭会议a_b法"}
    assert await titles(api, token, q="\\") == set()


async def test_pagination_returns_each_course_exactly_once(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        for n in range(25):
            await make_course(s, tier=("general", "foundation")[n % 2], title=f"家长课堂第{n:02d}讲")
    token = world.token("parent_a")

    pages = 0
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = "limit=7" + (f"&cursor={cursor}" if cursor else "")
        response = await api.get(f"{API}/courses?{query}", token=token)
        assert response.status == 200
        page = response.json()
        assert len(page["items"]) <= 7
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 25

    # A filter applies across pages too.
    foundation = await list_courses(api, token, limit=5, tier="foundation")
    assert len(foundation) == len({c["id"] for c in foundation}) == 12
    assert {c["tier"] for c in foundation} == {"foundation"}

    forged = await api.get(f"{API}/courses?cursor=bm90LWEtY3Vyc29y", token=token)
    assert forged.status == 422


async def test_course_detail(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(
            s, tier="foundation", title="心理健康识别", class_hours="1.5", topic="mental_health"
        )
    token = world.token("parent_a")

    response = await api.get(f"{API}/courses/{course.id}", token=token)
    assert response.status == 200
    body = response.json()
    assert body["id"] == str(course.id)
    assert (body["title"], body["tier"], body["topic"]) == ("心理健康识别", "foundation", "mental_health")
    assert body["summary"] == "心理健康识别的简介"
    assert body["class_hours"] == 1.5  # a JSON number
    assert (body["scope"], body["district_id"], body["school_id"]) == ("catalogue", None, None)
    assert body["video_seconds"] is None and body["media_url"] is None

    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        response = await api.get(f"{API}/courses/{missing}", token=token)
        assert response.status == 404 and response.code == "not_found"


async def test_every_course_endpoint_needs_a_token(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, title="全区通用课")
    for path in (f"{API}/courses", f"{API}/courses/{course.id}"):
        response = await api.get(path)
        assert response.status == 401 and response.code == "missing_token"
        assert "全区通用课" not in response.body.decode()
    created = await api.post(
        f"{API}/districts/{world.district.id}/courses",
        {
            "tier": "general",
            "title": "未登录新增",
            "summary": "不应成功",
            "topic": "law",
            "grade_bands": ["junior"],
            "class_hours": 1,
        },
    )
    assert created.status == 401
    assert "未登录新增" not in await titles(api, world.token("district_admin"))


# ---- visibility --------------------------------------------------------------------------------------
async def test_who_sees_catalogue_district_and_school_courses(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        courses = {
            "catalogue": await make_course(s, title="全区通用课"),
            "district": await make_course(s, title="本区讲座", district=world.district),
            "other_district": await make_course(s, title="外区讲座", district=world.other_district),
            "school_a": await make_course(s, title="甲校校本课", school=world.school_a),
            "school_c": await make_course(s, title="丙校校本课", school=world.school_c),
        }
    tokens = {label: world.token(label) for label in world.actors} | {
        "parent_c": await parent_elsewhere(deps, world)
    }
    own_district = {"catalogue", "district"}
    expected = {
        "parent_a": own_district | {"school_a"},
        "teacher_a": own_district | {"school_a"},
        "school_admin_a": own_district | {"school_a"},
        "district_admin": own_district | {"school_a"},
        "parent_b": own_district,
        "teacher_b": own_district,
        "school_admin_b": own_district,
        "parent_c": {"catalogue", "other_district", "school_c"},
        "other_district_admin": {"catalogue", "other_district", "school_c"},
        "stranger": {"catalogue"},
    }
    for actor, visible in expected.items():
        assert await titles(api, tokens[actor]) == {courses[k].title for k in visible}, actor
        for name, course in courses.items():
            status = await detail_status(api, tokens[actor], course)
            assert status == (200 if name in visible else 404), (actor, name)


async def test_custom_courses_only_for_assigned_families(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        custom = await make_course(s, tier="custom", title="困境家庭支持小组", school=world.school_a)
        catalogue_custom = await make_course(s, tier="custom", title="留守儿童家庭专场")
        neighbour, neighbour_child = await make_parent_of(s, world.classroom_a)
        father, _ = await make_parent_of(s, world.classroom_a, child=world.student_a, relation="father")
    tokens = {label: world.token(label) for label in world.actors} | {
        "neighbour": await token_for(deps, neighbour.id),
        "father": await token_for(deps, father.id),
    }

    async def sees(actor: str, course: Course) -> bool:
        listed = course.title in await titles(api, tokens[actor])
        detail = await detail_status(api, tokens[actor], course)
        assert listed == (detail == 200), (actor, course.title, detail)
        return listed

    # Staff in scope see custom courses; no parent does before an assignment.
    for actor in ("teacher_a", "school_admin_a", "district_admin"):
        assert await sees(actor, custom), actor
    for actor in ("parent_a", "father", "neighbour", "parent_b", "school_admin_b", "teacher_b", "stranger"):
        assert not await sees(actor, custom), actor
    for actor in ("teacher_b", "school_admin_b", "other_district_admin"):
        assert await sees(actor, catalogue_custom), actor
    assert not await sees("parent_a", catalogue_custom)

    assigned = await api.post(
        f"{API}/schools/{world.school_a.id}/course-assignments",
        {"course_id": str(custom.id), "student_ids": [str(world.student_a.id)]},
        token=tokens["school_admin_a"],
    )
    assert assigned.status == 201, assigned.body
    assert assigned.json() == {"course_id": str(custom.id), "assigned": 1, "already_assigned": 0}

    # Every guardian of the assigned child sees it; another family of the same class does not.
    assert await sees("parent_a", custom)
    assert await sees("father", custom)
    assert not await sees("neighbour", custom)
    assert not await sees("parent_b", custom)
    assert not await sees("parent_a", catalogue_custom)  # only the assigned course
    assert await titles(api, tokens["parent_a"], tier="custom") == {"困境家庭支持小组"}

    again = await api.post(
        f"{API}/schools/{world.school_a.id}/course-assignments",
        {"course_id": str(custom.id), "student_ids": [str(world.student_a.id), str(neighbour_child.id)]},
        token=tokens["district_admin"],
    )
    assert again.status == 201
    assert again.json() == {"course_id": str(custom.id), "assigned": 1, "already_assigned": 1}
    assert await sees("neighbour", custom)

    # A school can also offer the district catalogue's custom courses to its own families.
    offered = await api.post(
        f"{API}/schools/{world.school_b.id}/course-assignments",
        {"course_id": str(catalogue_custom.id), "student_ids": [str(world.student_b.id)]},
        token=tokens["school_admin_b"],
    )
    assert offered.status == 201 and offered.json()["assigned"] == 1
    assert await sees("parent_b", catalogue_custom)
    assert not await sees("parent_a", catalogue_custom)


async def test_assignment_refusals(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        general = await make_course(s, tier="general", title="家庭教育讲座", school=world.school_a)
        custom = await make_course(s, tier="custom", title="困境家庭支持小组")
        custom_b = await make_course(s, tier="custom", title="乙校定制课", school=world.school_b)
    path = f"{API}/schools/{world.school_a.id}/course-assignments"
    admin = world.token("school_admin_a")

    not_custom = await api.post(
        path, {"course_id": str(general.id), "student_ids": [str(world.student_a.id)]}, token=admin
    )
    assert not_custom.status == 422 and not_custom.code == "not_custom_course"

    # One child of another school spoils the whole request: nobody is assigned.
    foreign_child = await api.post(
        path,
        {"course_id": str(custom.id), "student_ids": [str(world.student_a.id), str(world.student_b.id)]},
        token=admin,
    )
    assert foreign_child.status == 422
    assert str(world.student_b.id) in foreign_child.body.decode()
    assert custom.title not in await titles(api, world.token("parent_a"))

    unknown_child = await api.post(
        path, {"course_id": str(custom.id), "student_ids": [str(uuid.uuid4())]}, token=admin
    )
    assert unknown_child.status == 422

    # Another school's custom course is not this school's to hand out, even for the district admin.
    for token in (admin, world.token("district_admin")):
        response = await api.post(
            path, {"course_id": str(custom_b.id), "student_ids": [str(world.student_a.id)]}, token=token
        )
        assert response.status == 404
    assert custom_b.title not in await titles(api, world.token("parent_a"))

    unknown_course = await api.post(
        path, {"course_id": str(uuid.uuid4()), "student_ids": [str(world.student_a.id)]}, token=admin
    )
    assert unknown_course.status == 404


# ---- adding courses ------------------------------------------------------------------------------------
def course_body(**overrides: Any) -> dict[str, Any]:
    return {
        "tier": "general",
        "title": "区家庭教育大讲堂",
        "summary": "面向全区家长的家庭教育专题讲座",
        "topic": "family_education",
        "grade_bands": ["primary_upper", "junior"],
        "class_hours": 2,
    } | overrides


async def test_district_and_school_admins_add_courses(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    parent_c = await parent_elsewhere(deps, world)

    by_district = await api.post(
        f"{API}/districts/{world.district.id}/courses", course_body(), token=world.token("district_admin")
    )
    assert by_district.status == 201, by_district.body
    created = by_district.json()
    assert (created["scope"], created["district_id"], created["school_id"]) == (
        "district",
        str(world.district.id),
        None,
    )
    assert created["class_hours"] == 2 and created["key"] is None
    fetched = await api.get(f"{API}/courses/{created['id']}", token=world.token("parent_b"))
    assert fetched.status == 200 and fetched.json() == created
    assert "区家庭教育大讲堂" not in await titles(api, parent_c)

    by_school = await api.post(
        f"{API}/schools/{world.school_a.id}/courses",
        course_body(tier="foundation", title="甲校家长必修课", class_hours=1.5),
        token=world.token("school_admin_a"),
    )
    assert by_school.status == 201, by_school.body
    assert by_school.json()["scope"] == "school" and by_school.json()["school_id"] == str(world.school_a.id)
    assert "甲校家长必修课" in await titles(api, world.token("parent_a"))
    assert "甲校家长必修课" not in await titles(api, world.token("parent_b"))


async def test_an_online_lesson_needs_its_video(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    path = f"{API}/schools/{world.school_a.id}/courses"
    token = world.token("school_admin_a")
    online = {"tier": "online", "title": "家庭安全微课"}
    video = {"video_seconds": 420, "media_url": "https://media.parent-school.cn/a.mp4"}

    for body in (
        course_body(**online),
        course_body(**online, video_seconds=420),
        course_body(**online, media_url=video["media_url"]),
        course_body(**video),  # a video on a course that is not an online lesson
        course_body(**online, video_seconds=0, media_url=video["media_url"]),
    ):
        response = await api.post(path, body, token=token)
        assert response.status == 422, body
    assert await titles(api, token, tier="online") == set()

    ok = await api.post(path, course_body(**online, **video), token=token)
    assert ok.status == 201, ok.body
    assert (ok.json()["video_seconds"], ok.json()["media_url"]) == (420, video["media_url"])
    assert await titles(api, world.token("parent_a"), tier="online") == {"家庭安全微课"}


# ---- ETag, 304 and the cache --------------------------------------------------------------------------
async def test_etag_gives_304_until_the_catalogue_changes(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, title="全区通用课")
    token = world.token("parent_a")

    first = await api.get(f"{API}/courses", token=token)
    etag = first.headers["ETag"]
    assert first.status == 200 and etag
    again = await api.get(f"{API}/courses", token=token, headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    listed_twice = await api.get(f"{API}/courses", token=token)
    assert listed_twice.headers["ETag"] == etag and listed_twice.body == first.body

    one = await api.get(f"{API}/courses/{course.id}", token=token)
    assert one.status == 200
    one_etag = one.headers["ETag"]
    cached = await api.get(f"{API}/courses/{course.id}", token=token, headers={"If-None-Match": one_etag})
    assert cached.status == 304 and cached.body == b""
    assert one_etag != etag

    added = await api.post(
        f"{API}/districts/{world.district.id}/courses",
        course_body(title="新开的讲座"),
        token=world.token("district_admin"),
    )
    assert added.status == 201

    changed = await api.get(f"{API}/courses", token=token, headers={"If-None-Match": etag})
    assert changed.status == 200
    assert {c["title"] for c in changed.json()["items"]} == {"全区通用课", "新开的讲座"}
    assert changed.headers["ETag"] != etag
    # The unchanged course keeps its representation, so the client's copy is still good.
    still = await api.get(f"{API}/courses/{course.id}", token=token, headers={"If-None-Match": one_etag})
    assert still.status == 304


async def test_an_assignment_shows_at_once_in_a_cached_list(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        custom = await make_course(s, tier="custom", title="困境家庭支持小组", school=world.school_a)
    token = world.token("parent_a")

    before = await api.get(f"{API}/courses", token=token)
    assert before.json()["items"] == []
    hidden = await api.get(f"{API}/courses/{custom.id}", token=token)
    assert hidden.status == 404
    assert (
        await api.get(f"{API}/courses", token=token, headers={"If-None-Match": before.headers["ETag"]})
    ).status == 304

    assigned = await api.post(
        f"{API}/schools/{world.school_a.id}/course-assignments",
        {"course_id": str(custom.id), "student_ids": [str(world.student_a.id)]},
        token=world.token("school_admin_a"),
    )
    assert assigned.status == 201

    after = await api.get(f"{API}/courses", token=token, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status == 200
    assert [c["title"] for c in after.json()["items"]] == ["困境家庭支持小组"]
    assert (await api.get(f"{API}/courses/{custom.id}", token=token)).status == 200
