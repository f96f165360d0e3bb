"""Benchmark catalogue reads (course list and course details, mixed) against a bare Tornado handler.

    .venv/bin/python -m scripts.bench_catalogue [--seconds 15] [--warmup 3] [--clients 64] [--rounds 3]
                                                [--details 4] [--json]

What it does, in one run (the machinery is bench_platform's, in scripts/benchlib.py):
1. Starts the service (`python -m server`) with PROCESSES=2 and its own embedded PostgreSQL and Redis
   under var/bench (the shipped catalogue is loaded at start-up), logs in the demo parent through the
   WeChat sandbox, and fetches GET /api/v1/courses?tier=online&limit=20 and GET /api/v1/courses/{id}
   for --details ids taken from that page.
2. Starts a bare Tornado server with the same fork model whose handlers return exactly those bytes (the
   list bytes on the list path, each detail's bytes on its path), without auth, Redis or database.
3. Drives both with 64 closed-loop keep-alive clients sending the same request bytes; each client
   alternates list and detail reads (list, detail 1, list, detail 2, ...), starting at its own offset, so
   half the requests are the list and half are spread over the details. The measurement is split into
   --rounds alternating rounds (bare, catalogue, bare, ...) so both see the same background load; every
   200 body is compared with the expected bytes.
4. Prints requests/s, p50/p99/max latency, errors, server CPU per request, memory and CPU per process,
   and the verdict: catalogue reads at >= 50 % of the bare handler's requests/s, with p99 < 40 ms.

Caveats as for bench_platform: servers, Redis and the load generator share the machine's cores, so the
ratio is the figure to watch; with 64 closed-loop clients the mean latency is 64 / (requests/s), so the
p99 goal needs well over 1,600 requests/s; other work on the machine shows in the CPU table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from scripts.benchlib import (
    DATA_DIR,
    DEMO_LOGIN_CODE,
    PROCESSES,
    Target,
    get_ok,
    install_signal_handlers,
    log,
    login,
    print_latency_table,
    print_process_table,
    print_rounds,
    run_rounds,
    start_and_wait_bare,
    start_and_wait_service,
    stopping,
)

LIST_PATH = "/api/v1/courses?tier=online&limit=20"
DETAIL_PATH = "/api/v1/courses/{}"
GOAL_RATIO = 0.50
GOAL_P99_MS = 40.0


def report(results: dict[str, Any]) -> None:
    bare, cat = results["targets"]["bare"], results["targets"]["catalogue"]
    cfg = results["config"]
    print()
    print(
        f"GET {LIST_PATH} ({cfg['list_bytes']} bytes) alternating with GET {DETAIL_PATH.format('{id}')} "
        f"for {len(cfg['detail_ids'])} ids ({cfg['detail_bytes_mean']:.0f} bytes on average);\n"
        f"{cfg['clients']} keep-alive clients, {cfg['seconds']:g} s measured per target in {cfg['rounds']} "
        f"alternating round(s) after {cfg['warmup']:g} s warm-up;\n"
        f"{cfg['server_processes']} Tornado processes per server; {cfg['cpu_count']} CPUs shared by servers, "
        "Redis and the load generator (one Python process)"
    )
    print()
    print_latency_table([("bare Tornado handler", bare), ("service catalogue reads", cat)])
    if cfg["rounds"] > 1:
        print_rounds([("bare", bare), ("catalogue", cat)])
    print()
    print_process_table([("bare", bare), ("catalogue", cat)])
    print()
    goal = results["goal"]
    print(
        f"throughput ratio catalogue ÷ bare: {goal['ratio']:.1%} (goal ≥ {GOAL_RATIO:.0%}) "
        f"{'PASS' if goal['ratio_ok'] else 'FAIL'}"
    )
    print(
        f"catalogue p99: {cat['p99_ms']:.2f} ms (goal < {GOAL_P99_MS:g} ms) "
        f"{'PASS' if goal['p99_ok'] else 'FAIL'}"
    )
    print(f"errors: {cat['errors']} (goal 0) {'PASS' if goal['errors_ok'] else 'FAIL'}")
    print(f"overall: {'PASS' if goal['passed'] else 'FAIL'}")
    if bare["errors"] or cat["errors"]:
        print(f"errors: bare {bare['statuses']} / catalogue {cat['statuses']} (see --json for the breakdown)")


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    with stopping(started):
        service, service_port = start_and_wait_service()
        started.append((service, "service"))
        token = login(service_port)
        list_body = get_ok(service_port, LIST_PATH, token)
        items = json.loads(list_body)["items"]
        if len(items) < args.details:
            raise RuntimeError(f"the online catalogue page has {len(items)} courses, need {args.details}")
        # ids spread over the page, not just its head
        ids = [items[i * len(items) // args.details]["id"] for i in range(args.details)]
        details = [(DETAIL_PATH.format(i), get_ok(service_port, DETAIL_PATH.format(i), token)) for i in ids]
        sizes = sorted(len(body) for _, body in details)
        log(
            f"logged in as {DEMO_LOGIN_CODE}; the list is {len(list_body)} bytes, "
            f"{len(details)} details of {sizes[0]}–{sizes[-1]} bytes"
        )
        mix: list[tuple[str, bytes]] = []
        for detail in details:
            mix += [(LIST_PATH, list_body), detail]

        # Tornado routes on the path: the list's query string is ignored by the bare server
        routes = {LIST_PATH.split("?")[0]: list_body, **dict(details)}
        bare, bare_port = start_and_wait_bare(routes)
        started.append((bare, "bare server"))

        targets = run_rounds(
            [
                Target("bare", bare, bare_port, False, mix),
                Target("catalogue", service, service_port, True, mix),
            ],
            token,
            args.clients,
            args.warmup,
            args.seconds,
            args.rounds,
        )
    ratio = targets["catalogue"]["requests_per_second"] / max(targets["bare"]["requests_per_second"], 1e-9)
    ratio_ok = ratio >= GOAL_RATIO
    p99_ok = targets["catalogue"]["p99_ms"] < GOAL_P99_MS
    errors_ok = targets["catalogue"]["errors"] == 0
    return {
        "config": {
            "clients": args.clients,
            "warmup": args.warmup,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "server_processes": PROCESSES,
            "cpu_count": os.cpu_count(),
            "load_generator": "one Python process (asyncio protocol, keep-alive HTTP/1.1)",
            "requests": [path for path, _ in mix],
            "list_bytes": len(list_body),
            "detail_ids": ids,
            "detail_bytes_mean": sum(len(b) for _, b in details) / len(details),
        },
        "targets": targets,
        "goal": {
            "ratio": round(ratio, 4),
            "ratio_min": GOAL_RATIO,
            "ratio_ok": ratio_ok,
            "p99_max_ms": GOAL_P99_MS,
            "p99_ok": p99_ok,
            "errors_ok": errors_ok,
            "passed": ratio_ok and p99_ok and errors_ok,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="measured seconds per target, split over --rounds"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up per target, not measured")
    parser.add_argument("--clients", type=int, default=64, help="concurrent keep-alive clients")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split each target's measurement into this many alternating rounds (bare, catalogue, "
        "bare, ...), so both see the same background load",
    )
    parser.add_argument(
        "--details", type=int, default=4, help="course ids read in detail (alternating with the list)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args()
    if not 1 <= args.details <= 20:
        parser.error("--details must be between 1 and 20")

    install_signal_handlers()
    try:
        results = run_benchmark(args)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        sys.exit(130)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        report(results)


if __name__ == "__main__":
    main()
