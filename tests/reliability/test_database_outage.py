"""The database goes away under a running hub: NOT_SERVING, UNAVAILABLE, then back by itself.

The hub runs in process (``running_hub``: mutual TLS, demo participants),
health refreshed every 0.1 s. Its database then fails:

- PostgreSQL down and back (what a restart looks like to the hub): the hub
  reaches PostgreSQL through a TCP proxy of the test's own; cutting the
  proxy closes every connection and refuses new ones, restoring it lets
  them through again. The shared PostgreSQL server itself is never touched.
- PostgreSQL connections killed from the database side:
  ``pg_terminate_backend`` on every backend whose ``application_name`` is
  this hub's (set in its URL), so no other test's connection is touched;
  three times, under a stream of writes and reads.
- SQLite's storage failing: every statement on the hub's database file
  raises ``disk I/O error`` (injected at the DBAPI cursor, as a lost volume
  would), then works again.

While it is down, the health check says NOT_SERVING, every write and every
read is answered UNAVAILABLE (never INTERNAL), and nothing is half written.
Once it is back, with no restart and no help, health says SERVING again and
the same signed instructions, retried, commit exactly once: each is in the
journal once, and the ledger's invariants hold.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from settlement.pki import DevPki
from settlement.v1 import common_pb2, ledger_pb2
from tests.conftest import postgres_base_url, postgres_schema
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    HubClient,
    running_hub,
    transaction,
    transfer_postings,
)

HEALTH_INTERVAL_SECONDS = 0.1
NOT_SERVING_WITHIN_SECONDS = 5.0
RECOVERED_WITHIN_SECONDS = 15.0
"""The lease is retaken on the hub's 1 s timer; the pool reconnects on first use."""
CALL_TIMEOUT_DURING_OUTAGE_SECONDS = 10.0
OWNER = "bank-pk"
WRITERS = 3
KILLS = 6

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


# -- ways to cut the database -------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that the test can cut and restore.

    Cut: every proxied connection is shut down at once and new ones are
    accepted and closed (as a server that is restarting). Restored: new
    connections go through again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.down = threading.Event()
        self.closed = threading.Event()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name="pg-proxy", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            end.close()
        with self.lock:
            self.sockets.discard(end)

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            live = list(self.sockets)
        for end in live:
            self._close(end)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.closed.set()
        self.cut()
        self.listener.close()
        self.thread.join(timeout=5)


class FailingStorage:
    """SQLite: every statement on one database file fails, until restored."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.down = False
        event.listen(Engine, "before_cursor_execute", self._statement)

    def _statement(self, connection: Any, *_: Any) -> None:
        if self.down and connection.engine.url.database == self.path:
            raise sqlite3.OperationalError("disk I/O error")

    def cut(self) -> None:
        self.down = True

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._statement)


@contextmanager
def postgres_behind_proxy() -> Iterator[tuple[str, TcpProxy, str]]:
    """A fresh schema reached through a proxy; yields (hub URL, proxy, application_name)."""
    base = postgres_base_url()
    with postgres_schema(base) as direct:
        url = make_url(direct)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        application_name = f"outage-{uuid.uuid4().hex[:12]}"
        proxied = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"application_name": application_name}
        )
        try:
            yield proxied.render_as_string(hide_password=False), proxy, application_name
        finally:
            proxy.close()


def terminate_backends(application_name: str) -> int:
    """Kill, from the database side, every connection of this hub (and only those)."""
    admin = create_engine(postgres_base_url())
    try:
        with admin.begin() as connection:
            killed = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name "
                    "AND pid <> pg_backend_pid()"
                ),
                {"name": application_name},
            ).all()
    finally:
        admin.dispose()
    return len(killed)


# -- helpers ------------------------------------------------------------------------------


def health(client: HubClient) -> int:
    stub: Any = health_pb2_grpc.HealthStub(client.channel("operator"))
    try:
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)
    except grpc.RpcError:
        return -1


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def signed_transfers(client: HubClient, count: int) -> tuple[str, list[tuple[str, Any]]]:
    payer, payee = client.funded_pair(OWNER, 1_000_000)
    transfers = []
    for number in range(count):
        instruction = transaction(OWNER, transfer_postings(payer, payee, number + 1))
        request = ledger_pb2.CreateTransactionRequest(instruction=client.sign(instruction))
        transfers.append((instruction.instruction_id, request))
    return payer, transfers


def create(client: HubClient, request: Any) -> Callable[[], Any]:
    """A CreateTransaction call of ``request`` by the owner, to pass to :func:`answer`."""

    def invoke() -> Any:
        return client.ledger(OWNER).CreateTransaction(
            request, timeout=CALL_TIMEOUT_DURING_OUTAGE_SECONDS
        )

    return invoke


def answer(invoke: Callable[[], Any]) -> tuple[grpc.StatusCode, str, Any]:
    try:
        return grpc.StatusCode.OK, "", invoke()
    except grpc.RpcError as error:
        failure: Any = error
        metadata = dict(failure.trailing_metadata() or ())
        raw = metadata.get("settlement-error-bin")
        code = common_pb2.Error.FromString(raw).code if raw is not None else ""
        return failure.code(), code, failure.details()


def retry_until_committed(client: HubClient, requests: list[tuple[str, Any]]) -> dict[str, int]:
    """Send each request until it is answered OK; UNAVAILABLE is the only other answer."""
    indexes: dict[str, int] = {}
    deadline = time.monotonic() + RECOVERED_WITHIN_SECONDS
    for instruction_id, request in requests:
        while True:
            status, code, response = answer(create(client, request))
            if status is grpc.StatusCode.OK:
                indexes[instruction_id] = response.result.receipt.journal_index
                break
            assert status is UNAVAILABLE, f"{instruction_id}: {status} {code} {response}"
            assert time.monotonic() < deadline, f"{instruction_id} still UNAVAILABLE"
            time.sleep(0.1)
    return indexes


def assert_committed_once(client: HubClient, indexes: dict[str, int]) -> None:
    ledger = client.server.hub.ledger
    for instruction_id, index in indexes.items():
        assert ledger.transaction(instruction_id).journal_index == index
    assert len(set(indexes.values())) == len(indexes)
    ledger.check_invariants()


def outage_round(client: HubClient, outage: Any, figures: dict[str, Any]) -> None:
    """Cut, check NOT_SERVING and UNAVAILABLE, restore, check recovery and exactly-once."""
    payer, transfers = signed_transfers(client, 6)
    wait_for(lambda: health(client) == SERVING, 5, "SERVING before the outage")
    size = client.journal_size()

    outage.cut()
    figures["NOT_SERVING after (s)"] = round(
        wait_for(lambda: health(client) == NOT_SERVING, NOT_SERVING_WITHIN_SECONDS, "NOT_SERVING"),
        2,
    )
    answers = []
    for _instruction_id, request in transfers[:3]:
        answers.append(answer(create(client, request)))
    for read in (
        lambda: client.ledger(OWNER).GetBalance(
            ledger_pb2.GetBalanceRequest(account_id=payer), timeout=CALL_TIMEOUT_SECONDS
        ),
        lambda: client.ledger(OWNER).ListAccounts(
            ledger_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_SECONDS
        ),
    ):
        answers.append(answer(read))
    assert [(status, code) for status, code, _ in answers] == [(UNAVAILABLE, "unavailable")] * 5, (
        answers
    )
    assert health(client) == NOT_SERVING

    outage.restore()
    figures["SERVING again after (s)"] = round(
        wait_for(lambda: health(client) == SERVING, RECOVERED_WITHIN_SECONDS, "SERVING again"), 2
    )
    # Nothing was written while the database was away; the retries commit each once.
    assert client.journal_size() == size
    indexes = retry_until_committed(client, transfers)
    assert client.journal_size() == size + len(transfers)
    again = retry_until_committed(client, transfers)
    assert again == indexes, "a retry after recovery was committed again"
    assert_committed_once(client, indexes)


# -- the tests ----------------------------------------------------------------------------


def test_postgres_down_and_back(dev_pki: DevPki, figures: dict[str, dict[str, Any]]) -> None:
    with (
        postgres_behind_proxy() as (url, proxy, _name),
        running_hub(dev_pki, url, health_interval_seconds=HEALTH_INTERVAL_SECONDS) as client,
    ):
        outage_round(client, proxy, figures.setdefault("database outage (postgres, down)", {}))


def test_postgres_connections_killed(dev_pki: DevPki, figures: dict[str, dict[str, Any]]) -> None:
    """``pg_terminate_backend`` on this hub's connections, under writes and reads.

    Six kills, 0.15 s apart, while three writers and a reader keep the hub
    busy: kills land between statements, inside group commits and on the
    writer lease's connection.
    """
    with (
        postgres_behind_proxy() as (url, _proxy, application_name),
        running_hub(dev_pki, url, health_interval_seconds=HEALTH_INTERVAL_SECONDS) as client,
    ):
        payer, transfers = signed_transfers(client, 60)
        size = client.journal_size()
        answers: list[tuple[grpc.StatusCode, str]] = []
        indexes: dict[str, int] = {}
        stop = threading.Event()

        def writer(share: list[tuple[str, Any]]) -> None:
            for instruction_id, request in share:
                while not stop.is_set():
                    status, code, response = answer(create(client, request))
                    answers.append((status, code))
                    if status is grpc.StatusCode.OK:
                        indexes[instruction_id] = response.result.receipt.journal_index
                        break
                    time.sleep(0.05)

        def reader() -> None:
            while not stop.is_set():
                status, code, _ = answer(
                    lambda: client.ledger(OWNER).GetBalance(
                        ledger_pb2.GetBalanceRequest(account_id=payer), timeout=CALL_TIMEOUT_SECONDS
                    )
                )
                answers.append((status, code))
                time.sleep(0.02)

        threads = [
            threading.Thread(target=writer, args=(transfers[number::WRITERS],))
            for number in range(WRITERS)
        ] + [threading.Thread(target=reader)]
        for thread in threads:
            thread.start()
        killed = []
        try:
            for _ in range(KILLS):
                time.sleep(0.15)
                killed.append(terminate_backends(application_name))
            wait_for(lambda: len(indexes) == len(transfers), 30, "every transfer committed")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert sum(killed) > 0, f"nothing to kill: {killed}"
        refused = {(status, code) for status, code in answers if status is not grpc.StatusCode.OK}
        assert refused <= {(UNAVAILABLE, "unavailable")}, refused
        wait_for(lambda: health(client) == SERVING, RECOVERED_WITHIN_SECONDS, "SERVING")
        assert client.journal_size() == size + len(transfers)
        assert_committed_once(client, indexes)
        section = figures.setdefault("database outage (postgres, connections killed)", {})
        section["backends killed"] = killed
        section["answers"] = len(answers)
        section["UNAVAILABLE answers"] = sum(1 for status, _ in answers if status is UNAVAILABLE)


def test_sqlite_storage_fails_and_comes_back(
    dev_pki: DevPki, tmp_path: Path, figures: dict[str, dict[str, Any]]
) -> None:
    location = str(tmp_path / "hub.db")
    storage = FailingStorage(location)
    try:
        with running_hub(
            dev_pki, location, health_interval_seconds=HEALTH_INTERVAL_SECONDS
        ) as client:
            outage_round(client, storage, figures.setdefault("database outage (sqlite)", {}))
    finally:
        storage.close()


def test_stops_cleanly_while_postgres_is_down(dev_pki: DevPki) -> None:
    """SIGTERM while the database is away: the hub closes (the lease dies with its
    connection anyway) instead of failing its shutdown."""
    with postgres_behind_proxy() as (url, proxy, _name):
        with running_hub(dev_pki, url, health_interval_seconds=HEALTH_INTERVAL_SECONDS) as client:
            wait_for(lambda: health(client) == SERVING, 5, "SERVING")
            proxy.cut()
            wait_for(
                lambda: health(client) == NOT_SERVING, NOT_SERVING_WITHIN_SECONDS, "NOT_SERVING"
            )
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 10
