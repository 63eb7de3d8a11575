"""Shared helpers for the benchmarks: machine description, percentiles, databases."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV_VARIABLES = ("SETTLEMENT_BENCH_POSTGRES_URL", "SETTLEMENT_TEST_POSTGRES_URL")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def machine_description() -> dict[str, object]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def percentile_ms(samples_s: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of durations in seconds, reported in milliseconds."""
    if not samples_s:
        return 0.0
    ordered = sorted(samples_s)
    rank = max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 3)


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile_ms(samples_s, 50),
        "p99_ms": percentile_ms(samples_s, 99),
        "p999_ms": percentile_ms(samples_s, 99.9),
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 3) if samples_s else 0.0,
    }


def postgres_url() -> str | None:
    """The PostgreSQL to benchmark against, or None when none is reachable."""
    candidates = [os.environ[name] for name in POSTGRES_ENV_VARIABLES if os.environ.get(name)]
    candidates.append(DEFAULT_POSTGRES_URL)
    for url in candidates:
        try:
            engine = create_engine(url)
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            engine.dispose()
            return url
        except Exception:
            continue
    return None


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    schema = "bench_" + uuid.uuid4().hex[:12]
    admin = create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        version = connection.scalar(text("SHOW server_version"))
        synchronous = connection.scalar(text("SHOW synchronous_commit"))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    print(f"  PostgreSQL {version}, synchronous_commit={synchronous}, schema {schema}")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
