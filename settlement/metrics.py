"""Prometheus metrics of the hub, in a registry of their own.

The server's interceptor records every call (:func:`record_call`); the hub
reports its sequencer and log with :func:`observe_group_commit_size`,
:func:`set_journal_size` and :func:`set_checkpoint_age_seconds`. The registry
is served over HTTP by :func:`start_metrics_server` on a port apart from the
gRPC port (``settlement serve --metrics-port``), in the Prometheus text
exposition format.

A registry of our own, not prometheus-client's global one: what a scrape shows
is exactly what this module declares, and importing a library that registers
its own collectors changes nothing here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""From half a millisecond (a read on a warm SQLite) to the 30 s a long export
or stream may take; anything longer lands in +Inf."""

GROUP_COMMIT_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""Commands per database transaction, up to a little past the default
``group_commit_max`` of 2000."""

RPC_CALLS = Counter(
    "settlement_rpc_calls",
    "gRPC calls finished, by full method name and status code.",
    ["method", "code"],
    registry=REGISTRY,
)

RPC_DURATION = Histogram(
    "settlement_rpc_duration_seconds",
    "Time from a call's arrival at the interceptor to its status, by method and status code.",
    ["method", "code"],
    buckets=LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)

GROUP_COMMIT_SIZE = Histogram(
    "settlement_group_commit_size",
    "Commands committed together in one database transaction by the sequencer.",
    buckets=GROUP_COMMIT_SIZE_BUCKETS,
    registry=REGISTRY,
)

JOURNAL_SIZE = Gauge(
    "settlement_journal_size",
    "Entries in the signed journal (the next journal index).",
    registry=REGISTRY,
)

CHECKPOINT_AGE_SECONDS = Gauge(
    "settlement_checkpoint_age_seconds",
    "Seconds since the latest signed checkpoint was issued.",
    registry=REGISTRY,
)


def record_call(method: str, code: str, duration_seconds: float) -> None:
    """Count one finished call. ``code`` is the status code's name, e.g. "OK"."""
    RPC_CALLS.labels(method, code).inc()
    RPC_DURATION.labels(method, code).observe(duration_seconds)


def observe_group_commit_size(commands: int) -> None:
    """The sequencer committed ``commands`` commands in one database transaction."""
    GROUP_COMMIT_SIZE.observe(commands)


def set_journal_size(entries: int) -> None:
    """The journal now holds ``entries`` entries."""
    JOURNAL_SIZE.set(entries)


def set_checkpoint_age_seconds(seconds: float) -> None:
    """The latest checkpoint was signed ``seconds`` ago."""
    CHECKPOINT_AGE_SECONDS.set(seconds)


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """The HTTP server of ``/metrics``, running on a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving and release the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def start_metrics_server(port: int, address: str = "127.0.0.1") -> MetricsServer:
    """Serve :data:`REGISTRY` on ``http://address:port/metrics``; port 0 picks a free one."""
    server, thread = start_http_server(port, address, REGISTRY)
    return MetricsServer(server, thread)
