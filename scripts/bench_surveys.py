"""Satisfaction-survey benchmark: a district of 300 schools with 50,000 responses of 20 questions
(1,000,000 answers) generated first; then

(a) a submission rush: 256 parents at once (keep-alive connections, one request in flight each), each
    answering for each of their sampled children, against the service with 2 processes — responses/s,
    p50/p99, and lost or duplicated responses (both must be 0);
(b) `results?group_by=school` and the xlsx export of the 50,000-response survey, cold and cached.

Goals (issue 15): (a) ≥ 1,000 responses/s with p99 < 150 ms; (b) results < 500 ms cold, < 20 ms cached,
the export < 3 s.

    .venv/bin/python -m scripts.bench_surveys [--parents 256] [--children 8]

Starts its own service (embedded PostgreSQL and Redis under var/bench) and a JWT secret for this run."""

# ruff: noqa: E501, S608 - SQL statements read best unbroken; their fragments are constants of this script
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
import uuid
from typing import Any

from infra.security import TokenSigner
from models.surveys.schemas import dump
from models.surveys.templates import load_template
from scripts.bench_signups import JWT_ISSUER, _connect
from scripts.benchlib import log, start_and_wait_service, stopping

SCHOOLS = 300
GRADES = (3, 7)
PER_GRADE = 90  # 300 × 2 × 90 = 54,000 students
RESPONSES = 50_000


async def seed(args: argparse.Namespace) -> dict[str, Any]:
    """Everything written straight into PostgreSQL (the service is not what is measured here)."""
    conn = await _connect()
    template = load_template("parent-satisfaction")
    dims = json.dumps([dump(d) for d in template.dimensions], ensure_ascii=False)
    likert = [q.key for d in template.dimensions for q in d.questions if q.kind == "likert5"]
    singles = {
        q.key: q.options[0].key
        for d in template.dimensions
        for q in d.questions
        if q.kind == "single" and q.options
    }
    district = uuid.uuid4()
    admin = uuid.uuid4()
    closed, rush = uuid.uuid4(), uuid.uuid4()
    await _clear(conn)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO district (id, name) VALUES ($1, $2)", district, f"压测区-{district.hex[:6]}"
        )
        await conn.execute(
            "INSERT INTO app_user (id, username, display_name, failed_logins) VALUES ($1, $2, '压测管理员', 0)",
            admin,
            f"bench-{admin.hex[:8]}",
        )
        await conn.execute(
            "INSERT INTO role_grant (id, user_id, role, district_id) VALUES ($1, $2, 'district_admin', $3)",
            uuid.uuid4(),
            admin,
            district,
        )
        await conn.execute(
            """INSERT INTO school (id, district_id, name)
               SELECT gen_random_uuid(), $1, '压测学校' || lpad(n::text, 3, '0') FROM generate_series(1, $2) n""",
            district,
            SCHOOLS,
        )
        await conn.execute(
            """INSERT INTO classroom (id, school_id, name, grade)
               SELECT gen_random_uuid(), s.id, g || '年级1班', g FROM school s, unnest($2::int[]) g
               WHERE s.district_id = $1""",
            district,
            list(GRADES),
        )
        await conn.execute(
            """INSERT INTO student (id, school_id, classroom_id, student_no, name)
               SELECT gen_random_uuid(), c.school_id, c.id, 'B' || c.grade || '-' || n, '学生' || n
               FROM classroom c JOIN school s ON s.id = c.school_id, generate_series(1, $2) n
               WHERE s.district_id = $1""",
            district,
            PER_GRADE,
        )
        for survey, status in ((closed, "closed"), (rush, "published")):
            await conn.execute(
                """INSERT INTO survey (id, district_id, title, intro, status, school_year, opens_at, closes_at,
                       sampling_method, seed, template, template_version, dimensions, published_at, closed_at,
                       results_version)
                   VALUES ($1, $2, $3, '', $4::varchar, '2025-2026', now() - interval '1 day', now() + interval '14 days',
                       'census', 1, $5, $6, $7::jsonb, now() - interval '1 day',
                       CASE WHEN $4::varchar = 'closed' THEN now() END, 0)""",
                survey,
                district,
                f"压测调查-{status}",
                status,
                template.key,
                template.version,
                dims,
            )
            await conn.execute(
                """INSERT INTO survey_sample (survey_id, student_id, school_id, grade)
                   SELECT $1, st.id, st.school_id, c.grade FROM student st JOIN classroom c ON c.id = st.classroom_id
                   JOIN school s ON s.id = st.school_id WHERE s.district_id = $2""",
                survey,
                district,
            )
            await conn.execute(
                """INSERT INTO survey_stratum (survey_id, school_id, grade, population, sampled)
                   SELECT $1, school_id, grade, count(*), count(*) FROM survey_sample WHERE survey_id = $1
                   GROUP BY school_id, grade""",
                survey,
            )
        await conn.execute("ANALYZE survey_sample")
        # 50,000 of the closed survey's households answered: participation and answers (random 1–5).
        await conn.execute(
            """INSERT INTO survey_participation (survey_id, student_id)
               SELECT survey_id, student_id FROM survey_sample WHERE survey_id = $1 ORDER BY random() LIMIT $2""",
            closed,
            RESPONSES,
        )
        await conn.execute(
            """INSERT INTO survey_response (id, survey_id, school_id, grade, day, answers, text_status)
               SELECT gen_random_uuid(), $1, sa.school_id, sa.grade, current_date,
                      (SELECT jsonb_object_agg(k, 1 + floor(random() * 5)::int + 0 * length(sa.student_id::text))
                       FROM unnest($2::text[]) k) || $3::jsonb, '{}'
               FROM survey_sample sa
               WHERE sa.survey_id = $1 AND sa.student_id IN (SELECT student_id FROM survey_participation WHERE survey_id = $1)""",
            closed,
            likert,
            json.dumps(singles),
        )
        # The rush: parents, each bound to `children` students of the open survey's sample.
        parents = [uuid.uuid4() for _ in range(args.parents)]
        await conn.executemany(
            "INSERT INTO app_user (id, wechat_openid, display_name, failed_logins) VALUES ($1, $2, '压测家长', 0)",
            [(p, f"bench-{p.hex}") for p in parents],
        )
        students = await conn.fetch(
            "SELECT student_id FROM survey_sample WHERE survey_id = $1 ORDER BY student_id LIMIT $2",
            rush,
            args.parents * args.children,
        )
        pairs = [(parents[i // args.children], r["student_id"]) for i, r in enumerate(students)]
        await conn.executemany(
            """INSERT INTO guardianship (id, parent_user_id, student_id, relation, consent_policy_version, consent_at)
               VALUES (gen_random_uuid(), $1, $2, 'mother', '2025-09', now())""",
            pairs,
        )
    await conn.close()
    answers = {k: 4 for k in likert} | singles
    return {
        "district": district,
        "admin": admin,
        "closed": closed,
        "rush": rush,
        "pairs": pairs,
        "answers": answers,
    }


async def _clear(conn: Any) -> None:
    """Remove what an earlier run generated, so that every run measures the same amount of data."""
    districts = "SELECT id FROM district WHERE name LIKE '压测区-%'"
    surveys = f"SELECT id FROM survey WHERE district_id IN ({districts})"
    schools = f"SELECT id FROM school WHERE district_id IN ({districts})"
    students = f"SELECT id FROM student WHERE school_id IN ({schools})"
    bench_users = "SELECT id FROM app_user WHERE wechat_openid LIKE 'bench-%' OR username LIKE 'bench-%'"
    statements = [
        *(
            f"DELETE FROM {table} WHERE survey_id IN ({surveys})"
            for table in (
                "survey_response",
                "survey_pending_response",
                "survey_participation",
                "survey_sample",
                "survey_stratum",
            )
        ),
        f"DELETE FROM audit_event WHERE district_id IN ({districts})",
        f"DELETE FROM survey WHERE district_id IN ({districts})",
        f"DELETE FROM guardianship WHERE student_id IN ({students})",
        f"DELETE FROM student WHERE school_id IN ({schools})",
        f"DELETE FROM classroom WHERE school_id IN ({schools})",
        f"DELETE FROM school WHERE district_id IN ({districts})",
        f"DELETE FROM role_grant WHERE district_id IN ({districts})",
        f"DELETE FROM district WHERE id IN ({districts})",
        f"DELETE FROM refresh_token WHERE user_id IN ({bench_users})",
        f"DELETE FROM app_user WHERE id IN ({bench_users})",
    ]
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)


async def _client(
    port: int, jobs: list[tuple[str, bytes]], latencies: list[float], statuses: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for head, body in jobs:
        started = time.perf_counter()
        writer.write(head.encode() + body)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        statuses.append(int(status_line.split()[1]))
    writer.close()


async def rush(port: int, secret: str, plan: dict[str, Any]) -> dict[str, Any]:
    signer = TokenSigner(secret, JWT_ISSUER, 7200)
    by_parent: dict[uuid.UUID, list[uuid.UUID]] = {}
    for parent, student in plan["pairs"]:
        by_parent.setdefault(parent, []).append(student)
    work = []
    for parent, students in by_parent.items():
        token = signer.issue(str(parent), str(uuid.uuid4()), now=time.time())
        jobs = []
        for student in students:
            body = json.dumps({"student_id": str(student), "answers": plan["answers"]}).encode()
            head = (
                f"POST /api/v1/surveys/{plan['rush']}/responses HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            jobs.append((head, body))
        work.append(jobs)
    latencies: list[float] = []
    statuses: list[int] = []
    began = time.perf_counter()
    await asyncio.gather(*(_client(port, jobs, latencies, statuses) for jobs in work))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    conn = await _connect()
    participations = await conn.fetchval(
        "SELECT count(*) FROM survey_participation WHERE survey_id = $1", plan["rush"]
    )
    stored = await conn.fetchval(
        "SELECT (SELECT count(*) FROM survey_response WHERE survey_id = $1)"
        " + (SELECT count(*) FROM survey_pending_response WHERE survey_id = $1)",
        plan["rush"],
    )
    await conn.close()
    accepted = statuses.count(201)
    return {
        "requests": len(statuses),
        "accepted": accepted,
        "other_statuses": sorted(set(statuses) - {201}),
        "responses_per_s": accepted / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "lost": accepted - int(stored),
        "duplicated": int(stored) - int(participations),
    }


async def timed_get(port: int, path: str, token: str) -> tuple[float, int, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    writer.close()
    return 1000 * (time.perf_counter() - started), status, length


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parents", type=int, default=256)
    parser.add_argument("--children", type=int, default=8)
    args = parser.parse_args()
    secret = secrets.token_urlsafe(32)
    started: list[Any] = []
    with stopping(started):
        service, port = start_and_wait_service({"JWT_SECRET": secret})
        started.append((service, "service"))
        log("generating the district, 50,000 responses and the rush's parents")
        t = time.perf_counter()
        plan = asyncio.run(seed(args))
        log(f"generated in {time.perf_counter() - t:.1f} s")
        signer = TokenSigner(secret, JWT_ISSUER, 7200)
        admin = signer.issue(str(plan["admin"]), str(uuid.uuid4()), now=time.time())
        results_path = f"/api/v1/surveys/{plan['closed']}/results?group_by=school"
        xlsx_path = f"/api/v1/surveys/{plan['closed']}/results.xlsx"

        async def part_b() -> list[tuple[str, float, int, int]]:
            rows = []
            for label, path in (("results?group_by=school", results_path), ("results.xlsx", xlsx_path)):
                for state in ("cold", "cached", "cached"):
                    ms, status, size = await timed_get(port, path, admin)
                    rows.append((f"{label} {state}", ms, status, size))
            return rows

        b = asyncio.run(part_b())
        log(f"rush: {args.parents} parents × {args.children} children")
        a = asyncio.run(rush(port, secret, plan))
    print("\n(a) submission rush, 2 service processes")
    for key, value in a.items():
        print(f"  {key:16} {value:.1f}" if isinstance(value, float) else f"  {key:16} {value}")
    ok_a = a["responses_per_s"] >= 1000 and a["p99_ms"] < 150 and a["lost"] == 0 and a["duplicated"] == 0
    print(f"  goal ≥ 1,000 responses/s, p99 < 150 ms, 0 lost, 0 duplicated: {'met' if ok_a else 'NOT met'}")
    print("\n(b) the 50,000-response survey (300 schools)")
    for label, ms, status, size in b:
        print(f"  {label:32} {ms:8.1f} ms  HTTP {status}  {size:,} bytes")
    print("  goals: results < 500 ms cold, < 20 ms cached; the export < 3 s (the export is not cached)")


if __name__ == "__main__":
    main()
