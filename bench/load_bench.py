"""The long form of the load test (``make bench``): 64 clients on hot capped accounts.

Runs ``tests/reliability/test_load.py`` on SQLite and PostgreSQL with more
requests per client (``--requests``, default 200: 12,800 requests per
backend) and a longer time limit, and prints the machine and settings beside
its figures: requests/s, p50 and p99 latency, refusals, and the server's RSS
after the warm-up and at the end (which must stay within the test's bound).
The test's own checks all apply: precise answers only, no cap exceeded,
balances exact, memory flat.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine_description, postgres_url  # noqa: E402 - after sys.path

FIGURES_PREFIX = "load figures "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument(
        "--time-limit-seconds", type=float, default=600, help="the run must end within this"
    )
    options = parser.parse_args()
    environment = {
        **os.environ,
        "SETTLEMENT_LOAD_REQUESTS": str(options.requests),
        "SETTLEMENT_LOAD_TIME_LIMIT_SECONDS": str(options.time_limit_seconds),
    }
    if not environment.get("SETTLEMENT_TEST_POSTGRES_URL"):
        found = postgres_url()
        if found is not None:
            environment["SETTLEMENT_TEST_POSTGRES_URL"] = found
    print("load bench:", json.dumps(machine_description()))
    print(
        f"  64 clients x {options.requests} requests, time limit {options.time_limit_seconds} s, "
        "server: settlement serve --log-level info (a process of its own)"
    )
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability/test_load.py",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--timeout",
            str(int(options.time_limit_seconds * 2 + 120)),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    # pytest's progress dots may precede a line the test printed.
    figures = [
        json.loads(line.split(FIGURES_PREFIX, 1)[1])
        for line in finished.stdout.splitlines()
        if FIGURES_PREFIX in line
    ]
    for figure in figures:
        print(
            f"  {figure['backend']:<8} {figure['requests']} requests in {figure['seconds']} s: "
            f"{figure['requests/s']} requests/s, p50 {figure['p50 ms']} ms, "
            f"p99 {figure['p99 ms']} ms, server RSS {figure['server RSS start MiB']} -> "
            f"{figure['server RSS end MiB']} MiB; answers {figure['answers']}"
        )
    if finished.returncode != 0:
        print(finished.stdout[-4000:])
        print(finished.stderr[-2000:], file=sys.stderr)
    print(json.dumps({"load": figures, "passed": finished.returncode == 0}))
    return finished.returncode


if __name__ == "__main__":
    raise SystemExit(main())
