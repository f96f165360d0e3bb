"""Benchmark GET /api/v1/me on the real service against a bare Tornado handler returning the same JSON.

    .venv/bin/python -m scripts.bench_platform [--seconds 15] [--warmup 3] [--clients 64] [--rounds 3]
                                               [--json]

What it does, in one run:
1. Starts the service (`python -m server`) with PROCESSES=2 on a free port, with its own embedded
   PostgreSQL and Redis under var/bench (so it never touches a developer's `make run` data), waits for
   /readyz, logs in the demo parent through the WeChat sandbox and fetches /api/v1/me once.
2. Starts a bare Tornado server with the same fork model (bind_sockets + fork_processes(2)) whose only
   handler returns exactly those /me bytes, without auth, Redis or database.
3. Drives each target from one load-generator process on 127.0.0.1: N keep-alive HTTP/1.1 clients (raw
   asyncio protocol, one request in flight per connection, the same request bytes for both targets), a
   warm-up, then a fixed measurement window in which every latency is recorded. The window is split into
   --rounds alternating rounds (bare, /me, bare, ...) so both targets see the same background load.
4. Samples RSS (and USS of the Tornado processes) and CPU time of every process involved every 0.5 s
   during the measurement windows, plus the CPU the rest of the machine used.
5. Prints requests/s, p50/p99/max latency, errors, server CPU per request, peak memory per process, and
   the verdict against the goal: /me at >= 60 % of the bare handler's requests/s, with p99 < 50 ms.

Caveats: servers, Redis and the load generator share the machine's cores (the load generator alone takes
a sixth to a third of one core), so absolute figures are lower than with a separate client machine; the
ratio is the figure to watch. With 64 closed-loop clients the mean latency is 64 / (requests/s), so the
p99 goal also needs well over 1,280 requests/s. Other work on the machine disturbs everything: the table
shows how much CPU it took, and `server CPU µs/req` is the least sensitive figure. `wrk` (apt) can
cross-check the load generator, but this script needs nothing beyond the project's virtualenv.
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

ME_PATH = "/api/v1/me"
GOAL_RATIO = 0.60
GOAL_P99_MS = 50.0


def report(results: dict[str, Any]) -> None:
    bare, me = results["targets"]["bare"], results["targets"]["me"]
    cfg = results["config"]
    print()
    print(
        f"GET {ME_PATH}, {cfg['clients']} keep-alive clients, {cfg['seconds']:g} s measured per target "
        f"in {cfg['rounds']} alternating round(s) after {cfg['warmup']:g} s warm-up;\n"
        f"{cfg['server_processes']} Tornado processes per server; {cfg['cpu_count']} CPUs shared by servers, "
        "Redis and the load generator (one Python process)"
    )
    print()
    print_latency_table([("bare Tornado handler", bare), (f"service {ME_PATH}", me)])
    if cfg["rounds"] > 1:
        print_rounds([("bare", bare), ("/me", me)])
    print()
    print_process_table([("bare", bare), ("/me", me)])
    print()
    goal = results["goal"]
    print(
        f"throughput ratio /me ÷ bare: {goal['ratio']:.1%} (goal ≥ {GOAL_RATIO:.0%}) "
        f"{'PASS' if goal['ratio_ok'] else 'FAIL'}"
    )
    print(
        f"/me p99: {me['p99_ms']:.2f} ms (goal < {GOAL_P99_MS:g} ms) {'PASS' if goal['p99_ok'] else 'FAIL'}"
    )
    print(f"overall: {'PASS' if goal['passed'] else 'FAIL'}")
    if bare["errors"] or me["errors"]:
        print(f"errors: bare {bare['statuses']} / me {me['statuses']} (see --json for the breakdown)")


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    with stopping(started):
        service, service_port = start_and_wait_service()
        started.append((service, "service"))
        token = login(service_port)
        me_body = get_ok(service_port, ME_PATH, token)
        log(f"logged in as {DEMO_LOGIN_CODE}; /me is {len(me_body)} bytes")

        bare, bare_port = start_and_wait_bare({ME_PATH: me_body})
        started.append((bare, "bare server"))

        targets = run_rounds(
            [
                Target("bare", bare, bare_port, False, [(ME_PATH, me_body)]),
                Target("me", service, service_port, True, [(ME_PATH, me_body)]),
            ],
            token,
            args.clients,
            args.warmup,
            args.seconds,
            args.rounds,
        )
    ratio = targets["me"]["requests_per_second"] / max(targets["bare"]["requests_per_second"], 1e-9)
    ratio_ok = ratio >= GOAL_RATIO
    p99_ok = targets["me"]["p99_ms"] < GOAL_P99_MS
    return {
        "config": {
            "clients": args.clients,
            "warmup": args.warmup,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "server_processes": PROCESSES,
            "cpu_count": os.cpu_count(),
            "load_generator": "one Python process (asyncio protocol, keep-alive HTTP/1.1)",
        },
        "targets": targets,
        "goal": {
            "ratio": round(ratio, 4),
            "ratio_min": GOAL_RATIO,
            "ratio_ok": ratio_ok,
            "p99_max_ms": GOAL_P99_MS,
            "p99_ok": p99_ok,
            "passed": ratio_ok and p99_ok,
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
        help="split each target's measurement into this many alternating rounds (bare, /me, bare, ...), "
        "so both see the same background load",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args()

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
