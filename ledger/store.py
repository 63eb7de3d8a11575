"""The ledger store: SQLite (embedded default) or PostgreSQL, via SQLAlchemy Core.

Writes are serialized by a single writer lock (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-scoped advisory lock). We chose one writer over
row locks because the journal index must be gapless and the Merkle log is
appended in index order: every commit already needs the tail of the log, so
row-level concurrency would buy nothing and cost deadlock handling. Throughput
comes from batching instead: many commands are applied in memory and written
in one database transaction (group commit), with one durable commit for all.

Durability: SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on
disk before ``execute`` returns, surviving power loss); PostgreSQL with
``synchronous_commit=on``. ``execute`` returns only after the commit.

Pending expiry: a pending transaction whose timeout has passed can no longer be
posted. Its reservation is released by an ``expire_pending`` journal entry,
written at the start of the next write transaction (every ``execute``
sweeps first) or by an explicit :meth:`Ledger.expire_pending` call, which a
server runs on a timer so that reservations are freed without other traffic.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final, NamedTuple, Protocol

from psycopg.pq import TransactionStatus
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, PendingRollbackError

from ledger import migrations
from ledger.batch import (
    JOURNAL_COLUMNS,
    POSTING_COLUMNS,
    TRANSACTION_COLUMNS,
    AccountState,
    Batch,
    KeyState,
    PriorEntry,
    TransactionRecord,
    entry_key,
)
from ledger.canonical import decode
from ledger.errors import (
    AccountNotFound,
    BatchMustNotExceedLimit,
    IntegrityError,
    LedgerError,
    LinkedCommandFailed,
    NotFound,
    TransactionNotFound,
)
from ledger.journal import (
    MERKLE_NODE_COLUMNS,
    LatestCheckpoint,
    LogSettings,
    SqlNodeStore,
    append_leaves,
    checkpoint_due,
    issue_checkpoint,
    latest_checkpoint_row,
    load_frontier,
)
from ledger.merkle import CompactRange
from ledger.merkle import consistency_proof as build_consistency_proof
from ledger.merkle import inclusion_proof as build_inclusion_proof
from ledger.records import (
    Account,
    AccountFlag,
    AccountStatus,
    Balance,
    Command,
    CommandResult,
    EntryKind,
    NewTransaction,
    Page,
    Posting,
    PostPending,
    Receipt,
    RegisterSigningKey,
    Reverse,
    SetAccountStatus,
    SetDebitLimit,
    Side,
    SignedInstruction,
    SigningKey,
    Transaction,
    TransactionState,
    VoidPending,
)
from ledger.schema import (
    accounts,
    checkpoints,
    journal,
    merkle_nodes,
    postings,
    signing_keys,
    transactions,
)

MAX_BATCH: Final = 8000
"""Commands per ``execute`` call: bounds one write transaction's memory and lock time."""

PAGE_SIZE_MAX: Final = 1000

WRITER_LOCK_KEY: Final = 0x5E77_1E00_0002
"""PostgreSQL advisory-lock key that serializes ledger writers."""

_EXPLICIT_TRANSACTION = "ledger_explicit_transaction"
"""Execution option of SQLite write connections whose transaction the ledger sends itself."""

_IN_CHUNK = 500
"""Bound on ids per ``IN (...)`` query (SQLite's variable limit and plan size)."""

_VALUES: Any = bindparam("values", expanding=True)

_ACCOUNT_COLUMNS: Final = (
    "id",
    "owner",
    "currency",
    "normal_side",
    "flags",
    "debit_limit_minor",
    "metadata",
    "status",
    "journal_index",
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
)


# Statements of the write path, built once (building them per call showed up
# in profiles as a third of a single transaction's cost).
_LAST_ENTRY = (
    select(journal.c.journal_index, journal.c.committed_at_us)
    .order_by(journal.c.journal_index.desc())
    .limit(1)
)
_PRIOR_ENTRIES = select(
    journal.c.entry_key,
    journal.c.journal_index,
    journal.c.leaf_hash,
    journal.c.request,
    journal.c.committed_at_us,
).where(journal.c.entry_key.in_(_VALUES))
_EXPIRED = (
    select(transactions.c.id)
    .where(transactions.c.state == TransactionState.PENDING.value)
    .where(transactions.c.timeout_at_us <= bindparam("now"))
    .order_by(transactions.c.journal_index)
)

# The write path's hot statements, run on the driver's cursor: SQLAlchemy's own
# overhead per statement was most of a single transaction's reading time.
_BEGIN = ("BEGIN", ())
_LOCK_WRITER = (f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})", ())
_HEAD = (
    "SELECT"
    " (SELECT journal_index FROM journal ORDER BY journal_index DESC LIMIT 1),"
    " (SELECT committed_at_us FROM journal ORDER BY journal_index DESC LIMIT 1),"
    # The earliest timeout of a pending transaction: the expiry sweep looks
    # for expired ones only when this has passed (an index lookup).
    " (SELECT MIN(timeout_at_us) FROM transactions"
    f" WHERE state = '{TransactionState.PENDING.value}')",
    (),
)
"""Last journal index, its commit time, and the earliest pending timeout."""
_PRIOR_ENTRIES_SQL = (
    "SELECT entry_key, journal_index, leaf_hash, request, committed_at_us FROM journal"
)
_ACCOUNTS_SQL = f"SELECT {', '.join(_ACCOUNT_COLUMNS)} FROM accounts"
_LATEST_CHECKPOINT = (
    "SELECT tree_size, root_hash, created_at_us FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
    (),
)
_TRANSACTIONS_BY_ID = select(
    transactions.c.id,
    transactions.c.kind,
    transactions.c.journal_index,
    transactions.c.state,
    transactions.c.timeout_at_us,
).where(transactions.c.id.in_(_VALUES))
_LEGS_BY_INDEX = (
    select(postings)
    .where(postings.c.effect != "released")
    .where(postings.c.journal_index.in_(_VALUES))
    .order_by(postings.c.journal_index, postings.c.sequence)
)
_REVERSED_IDS = select(transactions.c.reverses_id).where(transactions.c.reverses_id.in_(_VALUES))
_CURRENT_KEYS = (
    select(signing_keys)
    .where(signing_keys.c.last_index.is_(None))
    .where(signing_keys.c.signer.in_(_VALUES))
)


class Projection(Protocol):
    """A caller's own read model, kept in the same database transaction as the entries.

    The service keeps participants, payments and contracts as projections of
    ledger commands: rows written atomically with the entries that justify
    them, so a crash can never leave one without the other.
    """

    def project(self, connection: Connection, created: Sequence[tuple[Command, Receipt]]) -> None:
        """Write rows for newly committed commands (idempotent retries are excluded)."""


Clock = Callable[[], int]
"""Returns the current time in microseconds since the Unix epoch (UTC)."""


def storable(text: str) -> bool:
    """Whether the database can hold ``text``: PostgreSQL's text type refuses NUL (U+0000).

    A caller's string that is not storable names nothing stored. Look-ups
    answer "not found" for it without asking the database, which would refuse
    the whole query (and fail a group commit with it); SQLite and PostgreSQL
    then answer alike.
    """
    return "\x00" not in text


def system_clock_us() -> int:
    return time.time_ns() // 1000


def database_url(location: str) -> URL:
    """Accept a SQLAlchemy URL or a plain file path (meaning SQLite)."""
    url = make_url(location if "://" in location else "sqlite+pysqlite:///" + location)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ValueError("the SQLite ledger needs a file path (WAL does not apply to :memory:)")
    return url


def _sqlite_engine(url: URL, *, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are
        # deferred, which would let two writers both start and one fail).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_EXPLICIT_TRANSACTION):
            return  # Ledger._write_transaction sends its own BEGIN IMMEDIATE
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: URL, pool_size: int) -> Engine:
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET synchronous_commit = on")
        cursor.close()
        dbapi_connection.commit()

    return engine


class Ledger:
    """A double-entry ledger on one database. Thread-safe; several processes may share it."""

    def __init__(
        self,
        location: str,
        *,
        clock: Clock = system_clock_us,
        migrate: bool = True,
        log: LogSettings | None = None,
        verify_signatures: bool = True,
        projections: Sequence[Projection] = (),
        pool_size: int = 8,
    ) -> None:
        self.url = database_url(location)
        self.dialect = self.url.get_backend_name()
        self.clock = clock
        self.log = log
        self.verify_signatures = verify_signatures
        self.projections = tuple(projections)
        self._frontier_cache = CompactRange()
        if self.dialect == "sqlite":
            self._writer = _sqlite_engine(self.url, immediate=True)
            # The write path sends BEGIN IMMEDIATE and COMMIT itself (see _write_transaction).
            self._transactions_writer: Engine = self._writer.execution_options(
                **{_EXPLICIT_TRANSACTION: True}
            )
            self._reader = _sqlite_engine(self.url, immediate=False)
        elif self.dialect == "postgresql":
            self._writer = _postgres_engine(self.url, pool_size)
            # The write path sends BEGIN and COMMIT itself (see _write_transaction).
            self._transactions_writer = self._writer.execution_options(isolation_level="AUTOCOMMIT")
            # Reads of several statements (invariants, balances, listings) see
            # one snapshot; under READ COMMITTED a commit between two of them
            # made check_invariants report a breach that was never there.
            # Read-only transactions never fail to serialize.
            self._reader = self._writer.execution_options(isolation_level="REPEATABLE READ")
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        if migrate:
            migrations.upgrade(self._writer)

    def close(self) -> None:
        self._writer.dispose()
        if self.dialect == "sqlite":
            self._reader.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------

    def execute(self, commands: Sequence[Command], *, linked: bool = False) -> list[CommandResult]:
        """Apply commands in order in one durable database transaction.

        Independent (default): each command succeeds or fails on its own; a
        failure leaves no trace. Linked: all or nothing; on the first failure
        nothing is written, the failing command carries its error and every
        other command ``LinkedCommandFailed``.
        """
        if len(commands) > MAX_BATCH:
            raise BatchMustNotExceedLimit(
                f"a batch holds at most {MAX_BATCH} commands, got {len(commands)}"
            )
        with self._write_transaction() as connection:
            batch, latest_checkpoint = self._load_batch(connection, commands, begin=True)
            results: list[CommandResult] = []
            failed_at: int | None = None
            for position, command in enumerate(commands):
                try:
                    receipt = batch.apply(command)
                except LedgerError as error:
                    results.append(CommandResult(command.id, error=error))
                    if linked:
                        failed_at = position
                        break
                else:
                    results.append(CommandResult(command.id, receipt=receipt))
            if failed_at is None:
                frontier = self._write(
                    connection, batch, latest_checkpoint, commit=not self.projections
                )
                self._project(connection, commands, results)
            else:
                # None of the commands is applied, but the expiry sweep before
                # them is: a pending past its timeout is released whatever
                # else happens (the failure may itself be PendingExpired).
                sweep, _ = self._load_batch(connection, [], begin=False)
                frontier = self._write(connection, sweep, latest_checkpoint, commit=True)
        self._frontier_cache = frontier
        if failed_at is not None:
            return _linked_failure(commands, failed_at, results[failed_at])
        return results

    def _project(
        self, connection: Connection, commands: Sequence[Command], results: list[CommandResult]
    ) -> None:
        """Let the projections write their rows for new entries, in this transaction."""
        if not self.projections:
            return
        created = [
            (command, result.receipt)
            for command, result in zip(commands, results, strict=True)
            if result.receipt is not None and not result.receipt.existed
        ]
        for projection in self.projections:
            projection.project(connection, created)

    def submit(self, command: Command) -> Receipt:
        """Execute one command and return its receipt, raising its error if it failed."""
        (result,) = self.execute([command])
        if result.error is not None:
            raise result.error
        if result.receipt is None:
            raise IntegrityError("a successful command returned no receipt")
        return result.receipt

    def expire_pending(self) -> int:
        """Release every pending transaction past its timeout; returns how many."""
        with self._write_transaction() as connection:
            batch, latest_checkpoint = self._load_batch(connection, [], begin=True)
            count = len(batch.output.journal)
            frontier = self._write(connection, batch, latest_checkpoint, commit=True)
        self._frontier_cache = frontier
        return count

    def issue_checkpoint(self, *, force: bool = True) -> bytes | None:
        """Sign a checkpoint at the current size (None when none is signed).

        ``force``: now, whenever there are entries since the latest checkpoint
        (an auditor asking for one, an export). Otherwise only when one is due
        by the log settings (``checkpoint_every_entries`` or
        ``checkpoint_every_seconds`` since the latest): the timer's use, which a
        server calls every second so that a quiet log still gets a checkpoint
        covering its last entries, at the configured cadence.
        """
        if self.log is None:
            raise IntegrityError("this ledger was opened without log settings (no signer)")
        with self._writer.begin() as connection:
            self._lock_writer(connection)
            size = self._next_index(connection)
            frontier = self._frontier(connection, size)
            latest = latest_checkpoint_row(connection)
            now = self.clock()
            if not checkpoint_due(self.log, latest, size, now, force=force):
                return None
            note = issue_checkpoint(connection, self.log, frontier, latest, now)
        self._frontier_cache = frontier
        return note

    @staticmethod
    def _next_index(connection: Connection) -> int:
        last = connection.execute(_LAST_ENTRY).first()
        return 0 if last is None else int(last.journal_index) + 1

    def _frontier(self, connection: Connection, size: int) -> CompactRange:
        """A private copy of the frontier at ``size`` (cached: leaves never change)."""
        cached = self._frontier_cache
        if cached.size == size:
            return CompactRange.from_hashes(size, cached.hashes())
        return load_frontier(connection, size)

    @contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        """A connection in one write transaction, committed at the end unless it failed.

        The transaction is the ledger's own, sent on the driver, not
        SQLAlchemy's: on SQLite, ``BEGIN IMMEDIATE`` (it takes the writer lock)
        costs one call instead of SQLAlchemy's events and statement handling.
        On PostgreSQL the connection is in autocommit mode and the write path
        sends ``BEGIN`` (with the writer lock and its first reads) and
        ``COMMIT`` (with its writes) itself; psycopg would give each its own
        round trip. Whatever is still open here is committed, or rolled back
        on any error.
        """
        with self._transactions_writer.connect() as connection:
            if self.dialect == "sqlite":
                with _driver_errors(connection, "BEGIN IMMEDIATE"):
                    _dbapi_connection(connection).execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                # A rollback that fails too (the connection is gone) must not
                # hide why the transaction failed; the pool discards the connection.
                # Once the driver's error invalidated it, SQLAlchemy refuses any use
                # of the connection with PendingRollbackError (not a DBAPIError).
                with suppress(DBAPIError, PendingRollbackError):
                    _end_transaction(connection, "ROLLBACK")
                raise
            _end_transaction(connection, "COMMIT")

    def _lock_writer(self, connection: Connection) -> None:
        if self.dialect == "postgresql":
            _run_queries(connection, [_LOCK_WRITER])

    def _load_batch(
        self, connection: Connection, commands: Sequence[Command], *, begin: bool
    ) -> tuple[Batch, LatestCheckpoint | None]:
        """Read what the commands touch, and the latest checkpoint when there is a log.

        With ``begin``, it starts the write transaction (on PostgreSQL: BEGIN
        and the writer lock). The lock, the log's head and the rows named by
        the commands are read in one round trip on PostgreSQL (a pipeline:
        each statement still runs after the one before, with its own snapshot,
        so every read sees the previous writer's commit). Pending transactions
        are looked up only when one can have expired, and earlier transactions
        only when a command names one.
        """
        wanted_transactions: set[str] = set()
        wanted_accounts: dict[str, None] = {}
        for command in commands:
            if isinstance(command, NewTransaction):
                for posting in command.postings:
                    wanted_accounts[posting.account_id] = None
            elif isinstance(command, (PostPending, VoidPending)):
                wanted_transactions.add(command.pending_id)
            elif isinstance(command, Reverse):
                wanted_transactions.add(command.original_id)
            elif isinstance(command, (SetAccountStatus, SetDebitLimit)):
                wanted_accounts[command.account_id] = None
        # An id that cannot be stored names nothing stored (and would fail the
        # whole query on PostgreSQL): its command meets its own rule when applied.
        keys = [key for key in dict.fromkeys(map(entry_key, commands)) if storable(key)]
        queries = [_BEGIN, _LOCK_WRITER] if begin and self.dialect == "postgresql" else []
        if self.log is not None:
            queries.append(_LATEST_CHECKPOINT)
        queries.append(_HEAD)
        prior_queries = _select_in_queries(connection, _PRIOR_ENTRIES_SQL, "entry_key", keys)
        account_queries = _select_in_queries(
            connection, _ACCOUNTS_SQL, "id", [name for name in wanted_accounts if storable(name)]
        )
        results = _run_queries(connection, [*queries, *prior_queries, *account_queries])
        ((last_index, last_committed_at_us, earliest_timeout_us),) = results[len(queries) - 1]
        latest_checkpoint = None
        if self.log is not None and results[len(queries) - 2]:
            ((tree_size, root_hash, created_at_us),) = results[len(queries) - 2]
            latest_checkpoint = LatestCheckpoint(tree_size, bytes(root_hash), created_at_us)
        next_index = 0 if last_index is None else last_index + 1
        # Commit times never run backwards, even if the wall clock does.
        now = max(self.clock(), last_committed_at_us or 0)
        prior = {
            row[0]: PriorEntry(row[1], bytes(row[2]), bytes(row[3]), row[4])
            for rows in results[len(queries) : len(queries) + len(prior_queries)]
            for row in rows
        }
        account_states = {
            row[0]: _account_state(row)
            for rows in results[len(queries) + len(prior_queries) :]
            for row in rows
        }

        expired_ids: list[str] = []
        if earliest_timeout_us is not None and earliest_timeout_us <= now:
            expired_ids = list(connection.scalars(_EXPIRED, {"now": now}))
        wanted_transactions.update(expired_ids)
        records = self._load_transactions(
            connection, {name for name in wanted_transactions if storable(name)}
        )
        more_accounts = {
            posting.account_id: None
            for record in records.values()
            for posting in record.postings
            if posting.account_id not in account_states
        }
        if more_accounts:
            more_queries = _select_in_queries(connection, _ACCOUNTS_SQL, "id", list(more_accounts))
            for rows in _run_queries(connection, more_queries):
                for row in rows:
                    account_states[row[0]] = _account_state(row)
        signers = {
            command.instruction.signer for command in commands if command.instruction is not None
        } | {command.signer for command in commands if isinstance(command, RegisterSigningKey)}
        keys_by_signer = {
            row.signer: KeyState(bytes(row.public_key), row.first_index)
            for row in _select_in(connection, _CURRENT_KEYS, signers)
        }
        batch = Batch(
            next_index=next_index,
            committed_at_us=now,
            accounts=account_states,
            transactions=records,
            prior_entries=prior,
            keys=keys_by_signer,
            verify_signatures=self.verify_signatures,
        )
        for pending_id in expired_ids:
            batch.expire(pending_id)
        return batch, latest_checkpoint

    def _load_transactions(
        self, connection: Connection, ids: Iterable[str]
    ) -> dict[str, TransactionRecord]:
        rows = list(_select_in(connection, _TRANSACTIONS_BY_ID, ids))
        if not rows:
            return {}
        legs: dict[int, list[Posting]] = {row.journal_index: [] for row in rows}
        for posting in _select_in(connection, _LEGS_BY_INDEX, legs):
            legs[posting.journal_index].append(
                Posting(
                    posting.account_id, Side(posting.side), posting.amount_minor, posting.currency
                )
            )
        reversed_ids = set(
            _select_in(connection, _REVERSED_IDS, [row.id for row in rows], scalars=True)
        )
        return {
            row.id: TransactionRecord(
                id=row.id,
                kind=EntryKind(row.kind),
                journal_index=row.journal_index,
                state=TransactionState(row.state),
                postings=tuple(legs[row.journal_index]),
                timeout_at_us=row.timeout_at_us,
                reversed=row.id in reversed_ids,
            )
            for row in rows
        }

    def _write(
        self,
        connection: Connection,
        batch: Batch,
        latest_checkpoint: LatestCheckpoint | None,
        *,
        commit: bool,
    ) -> CompactRange:
        """Write a batch's rows, extend the Merkle log, and sign a checkpoint when due.

        With ``commit``, the transaction may be committed here, in the round
        trip of the writes (PostgreSQL); the caller commits otherwise.
        """
        output = batch.finish()
        frontier = self._frontier(connection, batch.first_index)
        if not output.journal:
            return frontier
        new_accounts = []
        changed_accounts = []
        for state in batch.accounts.values():
            if state.is_new:
                new_accounts.append(_account_row(state))
            elif state.dirty:
                changed_accounts.append(_account_update_row(state))
        resolved = [
            (record.state.value, record.id)
            for record in batch.transactions.values()
            if record.state_changed and not record.is_new
        ]
        new_keys = [tuple(row[name] for name in _SIGNING_KEY_COLUMNS) for row in batch.new_keys]
        retired_keys = [
            (last_index, signer, first_index)
            for signer, first_index, last_index in batch.retired_keys
        ]
        nodes = append_leaves(frontier, output.leaf_hashes)
        inserts = [
            _Insert(journal, JOURNAL_COLUMNS, output.journal),
            _Insert(accounts, _ACCOUNT_COLUMNS, new_accounts),
            _Insert(transactions, TRANSACTION_COLUMNS, output.new_transactions),
            _Insert(postings, POSTING_COLUMNS, output.postings),
            _Insert(signing_keys, _SIGNING_KEY_COLUMNS, new_keys),
            _Insert(merkle_nodes, MERKLE_NODE_COLUMNS, nodes),
        ]
        updates = [
            _Update(accounts, _UPDATED_ACCOUNT_COLUMNS, ("id",), changed_accounts),
            _Update(transactions, ("state",), ("id",), resolved),
            _Update(signing_keys, ("last_index",), ("signer", "first_index"), retired_keys),
        ]
        due = self.log is not None and checkpoint_due(
            self.log, latest_checkpoint, frontier.size, batch.committed_at_us, force=False
        )
        small = all(len(insert.rows) < _COPY_THRESHOLD for insert in inserts) and all(
            len(change.rows) < _COPY_THRESHOLD for change in updates
        )
        if self.dialect != "postgresql" or small:
            # On PostgreSQL a small batch (a single transaction) goes out in
            # one round trip, its COMMIT included unless a checkpoint is still
            # to be signed. (One statement for all the rows, arrays unnested by
            # CTEs, measured slower on both ends than these few.)
            with _pipeline(connection):
                for insert in inserts:
                    _insert_many(connection, insert.table, insert.columns, insert.rows)
                for change in updates:
                    if change.rows:
                        _execute_many(connection, _update_sql(connection, change), change.rows)
                if commit and not due and self.dialect == "postgresql":
                    _execute_many(connection, "COMMIT", [()])
        else:
            # A large batch on PostgreSQL: COPY each table's rows (a pipeline
            # cannot carry COPY), then one statement for the updates.
            for insert in inserts:
                if insert.rows:
                    _copy_rows(connection, insert.table, insert.columns, insert.rows)
            if any(change.rows for change in updates):
                _execute_many(connection, *_updates_statement(connection, updates))
        if self.log is not None and due:
            issue_checkpoint(
                connection, self.log, frontier, latest_checkpoint, batch.committed_at_us
            )
        return frontier

    # -- reads -------------------------------------------------------------------

    def reading(self) -> Any:
        """A read-only connection context (``with ledger.reading() as connection``)."""
        return self._reader.connect()

    def journal_size(self) -> int:
        with self._reader.connect() as connection:
            last = connection.scalar(select(func.max(journal.c.journal_index)))
        return 0 if last is None else int(last) + 1

    def leaf(self, index: int) -> bytes:
        with self._reader.connect() as connection:
            leaf = connection.scalar(select(journal.c.leaf).where(journal.c.journal_index == index))
        if leaf is None:
            raise NotFound(f"no journal entry at index {index}")
        return bytes(leaf)

    def leaves(self, start: int = 0, end: int | None = None, chunk: int = 2000) -> Iterator[bytes]:
        """Leaf bytes in index order from ``start`` up to (not including) ``end``."""
        position = start
        while end is None or position < end:
            stop = position + chunk if end is None else min(position + chunk, end)
            with self._reader.connect() as connection:
                rows = connection.execute(
                    select(journal.c.journal_index, journal.c.leaf)
                    .where(journal.c.journal_index >= position)
                    .where(journal.c.journal_index < stop)
                    .order_by(journal.c.journal_index)
                ).all()
            if not rows:
                return
            for row in rows:
                yield bytes(row.leaf)
            position = rows[-1].journal_index + 1

    def account(self, account_id: str) -> Account:
        if not storable(account_id):
            raise AccountNotFound(f"account {account_id!r} does not exist")
        with self._reader.connect() as connection:
            row = connection.execute(select(accounts).where(accounts.c.id == account_id)).first()
        if row is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        return _account(row)

    def accounts(self, owner: str | None = None) -> list[Account]:
        query = select(accounts).order_by(accounts.c.id)
        if owner is not None:
            query = query.where(accounts.c.owner == owner)
        with self._reader.connect() as connection:
            return [_account(row) for row in connection.execute(query)]

    def balance(self, account_id: str, as_of_index: int | None = None) -> Balance:
        """Current balance, or the balance right after the entry at ``as_of_index``."""
        if not storable(account_id):
            raise AccountNotFound(f"account {account_id!r} does not exist")
        with self._reader.begin() as connection:
            row = connection.execute(select(accounts).where(accounts.c.id == account_id)).first()
            if row is None:
                raise AccountNotFound(f"account {account_id!r} does not exist")
            if as_of_index is None:
                size = connection.scalar(select(func.max(journal.c.journal_index)))
                return Balance(
                    account_id,
                    row.currency,
                    row.debits_posted,
                    row.credits_posted,
                    row.debits_pending,
                    row.credits_pending,
                    None if size is None else int(size),
                )
            totals = _sum_postings(connection, account_id, as_of_index)
        return Balance(account_id, row.currency, *totals, as_of_index=as_of_index)

    def transaction(self, transaction_id: str) -> Transaction:
        if not storable(transaction_id):
            raise TransactionNotFound(f"transaction {transaction_id!r} does not exist")
        found = self._transactions(transactions.c.id == transaction_id)
        if not found:
            raise TransactionNotFound(f"transaction {transaction_id!r} does not exist")
        return found[0]

    def transactions_by_reference(
        self, reference: str, limit: int = PAGE_SIZE_MAX
    ) -> list[Transaction]:
        return self._transactions(transactions.c.reference == reference, limit=limit)

    def transactions_by_account(
        self,
        account_id: str,
        *,
        limit: int = 100,
        cursor: int | None = None,
        newest_first: bool = True,
    ) -> Page:
        """Keyset-paged: pass the returned ``next_cursor`` to get the next page."""
        limit = max(1, min(limit, PAGE_SIZE_MAX))
        query = (
            select(postings.c.journal_index)
            .join(transactions, transactions.c.journal_index == postings.c.journal_index)
            .where(postings.c.account_id == account_id)
            .distinct()
        )
        if newest_first:
            if cursor is not None:
                query = query.where(postings.c.journal_index < cursor)
            query = query.order_by(postings.c.journal_index.desc())
        else:
            if cursor is not None:
                query = query.where(postings.c.journal_index > cursor)
            query = query.order_by(postings.c.journal_index)
        with self._reader.connect() as connection:
            indexes = list(connection.scalars(query.limit(limit + 1)))
        more = len(indexes) > limit
        indexes = indexes[:limit]
        items = self._transactions(transactions.c.journal_index.in_(indexes)) if indexes else []
        items.sort(key=lambda item: item.journal_index, reverse=newest_first)
        return Page(tuple(items), indexes[-1] if more else None)

    def _transactions(self, condition: Any, limit: int = PAGE_SIZE_MAX) -> list[Transaction]:
        with self._reader.begin() as connection:
            rows = connection.execute(
                select(transactions, journal.c.leaf)
                .join(journal, journal.c.journal_index == transactions.c.journal_index)
                .where(condition)
                .order_by(transactions.c.journal_index)
                .limit(limit)
            ).all()
            indexes = [row.journal_index for row in rows]
            legs: dict[int, list[Posting]] = {index: [] for index in indexes}
            for posting in _select_in(connection, _LEGS_BY_INDEX, indexes):
                legs[posting.journal_index].append(
                    Posting(
                        posting.account_id,
                        Side(posting.side),
                        posting.amount_minor,
                        posting.currency,
                    )
                )
        return [
            Transaction(
                id=row.id,
                kind=EntryKind(row.kind),
                journal_index=row.journal_index,
                state=TransactionState(row.state),
                postings=tuple(legs[row.journal_index]),
                code=row.code,
                reference=row.reference,
                metadata=decode(row.metadata.encode("utf-8")),
                committed_at_us=row.committed_at_us,
                timeout_at_us=row.timeout_at_us,
                pending_id=row.pending_id,
                reverses_id=row.reverses_id,
                instruction=_leaf_instruction(bytes(row.leaf)),
            )
            for row in rows
        ]

    # -- the signed log ------------------------------------------------------------

    def checkpoint(self, tree_size: int | None = None) -> bytes:
        """The signed checkpoint at exactly ``tree_size``, or the latest one."""
        query = select(checkpoints.c.note)
        if tree_size is None:
            query = query.order_by(checkpoints.c.tree_size.desc()).limit(1)
        else:
            query = query.where(checkpoints.c.tree_size == tree_size)
        with self._reader.connect() as connection:
            note = connection.scalar(query)
        if note is None:
            where = "yet" if tree_size is None else f"at tree size {tree_size}"
            raise NotFound(f"no checkpoint {where}")
        return bytes(note)

    def latest_checkpoint_time_us(self) -> int | None:
        """When the latest checkpoint was signed (microseconds since the epoch), if any."""
        with self._reader.connect() as connection:
            latest = latest_checkpoint_row(connection)
        return None if latest is None else int(latest.created_at_us)

    def checkpoints(self, up_to_size: int | None = None) -> list[tuple[int, bytes]]:
        """Every stored checkpoint as (tree size, signed note), ascending."""
        query = select(checkpoints.c.tree_size, checkpoints.c.note).order_by(
            checkpoints.c.tree_size
        )
        if up_to_size is not None:
            query = query.where(checkpoints.c.tree_size <= up_to_size)
        with self._reader.connect() as connection:
            return [(int(size), bytes(note)) for size, note in connection.execute(query)]

    def inclusion_proof(self, index: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, RFC 9162 inclusion proof) of entry ``index`` in the tree of ``tree_size``."""
        self._require_size(tree_size)
        with self._reader.begin() as connection:
            store = SqlNodeStore(connection)
            proof = build_inclusion_proof(store, index, tree_size)
            return store.node(0, index), proof

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes."""
        self._require_size(new_size)
        with self._reader.begin() as connection:
            return build_consistency_proof(SqlNodeStore(connection), old_size, new_size)

    def _require_size(self, tree_size: int) -> None:
        size = self.journal_size()
        if tree_size > size:
            raise NotFound(f"tree size {tree_size} is beyond the log's {size} entries")

    def signing_keys(self) -> list[SigningKey]:
        with self._reader.connect() as connection:
            rows = connection.execute(
                select(signing_keys).order_by(signing_keys.c.signer, signing_keys.c.first_index)
            ).all()
        return [
            SigningKey(row.signer, bytes(row.public_key), row.first_index, row.last_index)
            for row in rows
        ]

    def closing_balances(self, tree_size: int) -> list[Balance]:
        """Every account's balance after the first ``tree_size`` entries, by account id."""
        with self._reader.begin() as connection:
            known = connection.execute(
                select(accounts.c.id, accounts.c.currency)
                .where(accounts.c.journal_index < tree_size)
                .order_by(accounts.c.id)
            ).all()
            totals: dict[str, dict[tuple[str, str], int]] = {}
            for account_id, side, effect, high, low in connection.execute(
                select(
                    postings.c.account_id,
                    postings.c.side,
                    postings.c.effect,
                    *_exact_sum(postings.c.amount_minor),
                )
                .where(postings.c.journal_index < tree_size)
                .group_by(postings.c.account_id, postings.c.side, postings.c.effect)
            ):
                totals.setdefault(account_id, {})[(side, effect)] = _combined(high, low)
        result = []
        for account_id, currency in known:
            sums = totals.get(account_id, {})
            result.append(
                Balance(
                    account_id,
                    currency,
                    sums.get(("debit", "posted"), 0),
                    sums.get(("credit", "posted"), 0),
                    sums.get(("debit", "pending"), 0) - sums.get(("debit", "released"), 0),
                    sums.get(("credit", "pending"), 0) - sums.get(("credit", "released"), 0),
                    as_of_index=tree_size - 1,
                )
            )
        return result

    # -- invariants --------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise IntegrityError unless every ledger invariant holds.

        1. The journal index is gapless from 0.
        2. Per currency, posted and pending balances sum to zero over all accounts.
        3. Every account's stored totals equal the sum of its postings.
        """
        findings: list[str] = []
        with self._reader.begin() as connection:
            count, lowest, highest = connection.execute(
                select(
                    func.count(),
                    func.min(journal.c.journal_index),
                    func.max(journal.c.journal_index),
                )
            ).one()
            if count and (lowest != 0 or highest != count - 1):
                findings.append(
                    f"journal is not gapless: {count} entries spanning {lowest}..{highest}"
                )
            per_currency = connection.execute(
                select(
                    accounts.c.currency,
                    *_exact_sum(accounts.c.debits_posted - accounts.c.credits_posted),
                    *_exact_sum(accounts.c.debits_pending - accounts.c.credits_pending),
                ).group_by(accounts.c.currency)
            ).all()
            for code, posted_high, posted_low, pending_high, pending_low in per_currency:
                posted = _combined(posted_high, posted_low)
                pending = _combined(pending_high, pending_low)
                if posted != 0 or pending != 0:
                    findings.append(
                        f"{code} balances do not sum to zero: posted {posted}, pending {pending}"
                    )
            stored = {row.id: row for row in connection.execute(select(accounts))}
            summed = _sum_all_postings(connection)
            for account_id, row in stored.items():
                expected = summed.get(account_id, (0, 0, 0, 0))
                got = (
                    row.debits_posted,
                    row.credits_posted,
                    row.debits_pending,
                    row.credits_pending,
                )
                if tuple(int(x) for x in expected) != got:
                    findings.append(
                        f"account {account_id!r} totals {got} differ from its postings {expected}"
                    )
            unknown = set(summed) - set(stored)
            if unknown:
                findings.append(f"postings name unknown accounts: {sorted(unknown)[:5]}")
        if findings:
            raise IntegrityError("; ".join(findings))


# -- helpers -------------------------------------------------------------------


def _linked_failure(
    commands: Sequence[Command], failed_at: int, failed: CommandResult
) -> list[CommandResult]:
    results: list[CommandResult] = []
    for position, command in enumerate(commands):
        if position == failed_at:
            results.append(failed)
        else:
            results.append(
                CommandResult(
                    command.id,
                    error=LinkedCommandFailed(
                        f"not applied: command {failed_at} ({failed.id!r}) of this linked batch "
                        f"failed with {failed.error.code if failed.error else 'an error'}"
                    ),
                )
            )
    return results


def _dbapi_connection(connection: Connection) -> Any:
    """The driver's own connection under a SQLAlchemy connection (sqlite3 or psycopg)."""
    return connection.connection.dbapi_connection


@contextmanager
def _driver_errors(connection: Connection, statement: str) -> Iterator[None]:
    """Raise the driver's errors as SQLAlchemy raises them for its own statements.

    Callers (the sequencer) tell an unavailable database from a refused command
    by SQLAlchemy's exception types, and a lost connection must be invalidated
    so that the pool does not hand it out again.
    """
    dialect = connection.dialect
    try:
        yield
    except dialect.loaded_dbapi.Error as error:
        invalidated = dialect.is_disconnect(error, _dbapi_connection(connection), None)
        if invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(
            statement,
            None,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=invalidated,
            dialect=dialect,
        ) from error


def _marker(connection: Connection) -> str:
    """The driver's positional parameter marker (sqlite3: qmark; psycopg: format)."""
    return "%s" if connection.dialect.name == "postgresql" else "?"


_INSERT_SQL: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _insert_many(
    connection: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Any]
) -> None:
    """Insert rows, tuples in the order of ``columns``, through the driver.

    Profiling showed SQLAlchemy's per-row parameter processing as the largest
    cost of a 1,000-transaction batch and its per-statement overhead as a large
    part of a single transaction, so the statement is built once and run on
    the driver's cursor. Values here are plain ints, strs, bytes and None,
    which every driver binds as they are.
    """
    if not rows:
        return
    key = (table.name, connection.dialect.name, columns)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        quote = connection.dialect.identifier_preparer.quote
        sql = _INSERT_SQL[key] = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)})"
            f" VALUES ({', '.join([_marker(connection)] * len(columns))})"
        )
    _execute_many(connection, sql, rows)


def _execute_many(connection: Connection, sql: str, rows: Sequence[Any]) -> None:
    """Run a statement without results once per row on the driver's cursor."""
    if not rows:
        return
    with _driver_errors(connection, sql):
        # No close: in a pipeline the results are still to come.
        cursor = _dbapi_connection(connection).cursor()
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)


@contextmanager
def _pipeline(connection: Connection, *, enabled: bool = True) -> Iterator[None]:
    """On PostgreSQL, send the driver statements run inside in one round trip.

    libpq's pipeline mode: the server still runs the statements one after the
    other, and the first failure aborts the rest and the transaction. Results
    can be read once the block is left. On SQLite (no round trips) it does
    nothing.
    """
    if not enabled or connection.dialect.name != "postgresql":
        yield
        return
    with _driver_errors(connection, "pipeline"), _dbapi_connection(connection).pipeline():
        yield


def _run_queries(
    connection: Connection, queries: Sequence[tuple[str, Sequence[Any]]]
) -> list[list[Any]]:
    """Run queries on the driver's cursors and return each one's rows, in order.

    On PostgreSQL they share one round trip (:func:`_pipeline`).
    """
    cursors = []
    with _pipeline(connection):
        for sql, parameters in queries:
            with _driver_errors(connection, sql):
                cursor = _dbapi_connection(connection).cursor()
                cursor.execute(sql, parameters)
            cursors.append(cursor)
    results = []
    for cursor, (sql, _) in zip(cursors, queries, strict=True):
        with _driver_errors(connection, sql):
            results.append(cursor.fetchall() if cursor.description is not None else [])
            cursor.close()
    return results


def _end_transaction(connection: Connection, statement: str) -> None:
    """COMMIT or ROLLBACK the write transaction, if it is still open."""
    raw = _dbapi_connection(connection)
    if raw is None:
        return
    if connection.dialect.name == "postgresql":
        if raw.closed or raw.info.transaction_status == TransactionStatus.IDLE:
            return
    elif not raw.in_transaction:
        return
    with _driver_errors(connection, statement):
        raw.execute(statement)


def _select_in_queries(
    connection: Connection, sql: str, column: str, values: list[Any]
) -> list[tuple[str, Sequence[Any]]]:
    """``sql`` restricted to rows whose ``column`` is among ``values``.

    PostgreSQL takes the values as one array; SQLite as ``IN`` lists of at
    most ``_IN_CHUNK`` values, one query each.
    """
    if not values:
        return []
    if connection.dialect.name == "postgresql":
        return [(f"{sql} WHERE {column} = ANY(%s)", (values,))]
    queries: list[tuple[str, Sequence[Any]]] = []
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        queries.append((f"{sql} WHERE {column} IN ({', '.join('?' * len(chunk))})", chunk))
    return queries


_COPY_THRESHOLD = 16
"""From this many rows on, PostgreSQL inserts go through COPY (one round trip)."""


def _copy_rows(
    connection: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Any]
) -> None:
    """Bulk insert with PostgreSQL's COPY, inside the caller's transaction.

    Binary format: the text format escaped every value and spelled every
    leaf and hash in hexadecimal, on both ends of the connection.
    """
    quote = connection.dialect.identifier_preparer.quote
    statement = (
        f"COPY {quote(table.name)} ({', '.join(quote(name) for name in columns)})"
        " FROM STDIN (FORMAT BINARY)"
    )
    types = [_COPY_TYPES[type(table.c[name].type)] for name in columns]
    with _driver_errors(connection, statement):
        cursor = _dbapi_connection(connection).cursor()
        try:
            with cursor.copy(statement) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()


_COPY_TYPES: Final[dict[type[Any], str]] = {
    BigInteger: "int8",
    Integer: "int4",
    String: "text",  # varchar's binary form is text's
    Text: "text",
    LargeBinary: "bytea",
}
"""The binary form COPY sends for each column type of the schema."""


_UPDATED_ACCOUNT_COLUMNS: Final = (
    "status",
    "debit_limit_minor",
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
)
"""What a batch may change in an account row; update rows end with the account id."""


class _Insert(NamedTuple):
    """Rows for one table, tuples in the order of ``columns``."""

    table: Table
    columns: tuple[str, ...]
    rows: Sequence[Any]


class _Update(NamedTuple):
    """Changes to rows of one table: each row holds the new ``columns``, then its ``keys``."""

    table: Table
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    rows: Sequence[Any]


def _update_sql(connection: Connection, change: _Update) -> str:
    """The row-at-a-time UPDATE of a change, for ``executemany``."""
    marker = _marker(connection)
    assignments = ", ".join(f"{name} = {marker}" for name in change.columns)
    match = " AND ".join(f"{name} = {marker}" for name in change.keys)
    return f"UPDATE {change.table.name} SET {assignments} WHERE {match}"


def _updates_statement(
    connection: Connection, updates: Sequence[_Update]
) -> tuple[str, list[tuple[Any, ...]]]:
    """One PostgreSQL statement for many updates of rows, and its parameters.

    Each table's changes travel as one array per column, unnested in a
    data-modifying CTE: one statement instead of one per row. The parts see
    one snapshot, which is enough: each updates rows of its own table that
    existed before the batch.
    """
    quote = connection.dialect.identifier_preparer.quote
    parts: list[str] = []
    arrays: list[list[Any]] = []

    def unnest(table: Table, names: tuple[str, ...], rows: Sequence[Any]) -> str:
        arrays.extend(list(column) for column in zip(*rows, strict=True))
        casts = ", ".join(f"%s::{_COPY_TYPES[type(table.c[name].type)]}[]" for name in names)
        return f"unnest({casts})"

    for change in updates:
        if change.rows:
            names = (*change.columns, *change.keys)
            assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in change.columns)
            match = " AND ".join(f"t.{quote(name)} = v.{quote(name)}" for name in change.keys)
            parts.append(
                f"UPDATE {quote(change.table.name)} AS t SET {assignments}"
                f" FROM {unnest(change.table, names, change.rows)}"
                f" AS v({', '.join(quote(name) for name in names)}) WHERE {match}"
            )
    ctes = ", ".join(f"write_{position} AS ({part})" for position, part in enumerate(parts))
    return f"WITH {ctes} SELECT 1", [tuple(arrays)]


def _select_in(
    connection: Connection,
    statement: Any,
    values: Iterable[Any],
    *,
    scalars: bool = False,
) -> Iterator[Any]:
    """Run a prebuilt statement whose ``IN`` list is the expanding parameter ``values``."""
    ordered = list(dict.fromkeys(values))
    for start in range(0, len(ordered), _IN_CHUNK):
        result = connection.execute(statement, {"values": ordered[start : start + _IN_CHUNK]})
        if scalars:
            yield from result.scalars()
        else:
            yield from result


_LOW_BITS = 32
_LOW_MASK = (1 << _LOW_BITS) - 1


def _exact_sum(expression: Any) -> tuple[Any, Any]:
    """SUM of a BIGINT expression as (sum of high halves, sum of low halves).

    A plain SUM can pass 2**63 - 1 even when the total fits (all the pending
    amounts an account ever reserved, most of them released since), and
    SQLite's sum() then fails with "integer overflow". Each half sums safely
    for up to 2**31 rows; :func:`_combined` puts them together exactly.
    """
    # A high precedence makes SQLAlchemy parenthesize a compound left operand;
    # PostgreSQL has bigint >> integer only, hence the integer literal.
    return (
        func.sum(expression.op(">>", precedence=100)(literal_column(str(_LOW_BITS)))),
        func.sum(expression.op("&", precedence=100)(literal_column(str(_LOW_MASK)))),
    )


def _combined(high: Any, low: Any) -> int:
    return (int(high or 0) << _LOW_BITS) + int(low or 0)


def _sum_postings(
    connection: Connection, account_id: str, as_of_index: int
) -> tuple[int, int, int, int]:
    totals = {
        ("debit", "posted"): 0,
        ("credit", "posted"): 0,
        ("debit", "pending"): 0,
        ("credit", "pending"): 0,
        ("debit", "released"): 0,
        ("credit", "released"): 0,
    }
    for side, effect, high, low in connection.execute(
        select(postings.c.side, postings.c.effect, *_exact_sum(postings.c.amount_minor))
        .where(postings.c.account_id == account_id)
        .where(postings.c.journal_index <= as_of_index)
        .group_by(postings.c.side, postings.c.effect)
    ):
        totals[(side, effect)] = _combined(high, low)
    return (
        totals[("debit", "posted")],
        totals[("credit", "posted")],
        totals[("debit", "pending")] - totals[("debit", "released")],
        totals[("credit", "pending")] - totals[("credit", "released")],
    )


def _sum_all_postings(connection: Connection) -> dict[str, tuple[int, int, int, int]]:
    raw: dict[str, dict[tuple[str, str], int]] = {}
    for account_id, side, effect, high, low in connection.execute(
        select(
            postings.c.account_id,
            postings.c.side,
            postings.c.effect,
            *_exact_sum(postings.c.amount_minor),
        ).group_by(postings.c.account_id, postings.c.side, postings.c.effect)
    ):
        raw.setdefault(account_id, {})[(side, effect)] = _combined(high, low)
    result = {}
    for account_id, totals in raw.items():

        def get(side: str, effect: str, totals: dict[tuple[str, str], int] = totals) -> int:
            return totals.get((side, effect), 0)

        result[account_id] = (
            get("debit", "posted"),
            get("credit", "posted"),
            get("debit", "pending") - get("debit", "released"),
            get("credit", "pending") - get("credit", "released"),
        )
    return result


@functools.lru_cache(maxsize=len(AccountFlag) ** 2 + 1)
def _flags(text: str) -> frozenset[AccountFlag]:
    return frozenset(AccountFlag(flag) for flag in text.split(",") if flag)


def _account_state(row: Sequence[Any]) -> AccountState:
    """A batch's view of an account row read in the order of ``_ACCOUNT_COLUMNS``."""
    (
        account_id,
        owner,
        currency,
        normal_side,
        flags,
        debit_limit_minor,
        metadata,
        status,
        journal_index,
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
    ) = row
    return AccountState(
        account_id,
        owner,
        currency,
        Side(normal_side),
        _flags(flags),
        debit_limit_minor,
        metadata.encode("utf-8"),
        AccountStatus(status),
        journal_index,
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
    )


_SIGNING_KEY_COLUMNS: Final = ("signer", "first_index", "last_index", "public_key")


def _account_row(state: AccountState) -> tuple[Any, ...]:
    """A new account's row, in the order of ``_ACCOUNT_COLUMNS``."""
    return (
        state.id,
        state.owner,
        state.currency,
        state.normal_side.value,
        ",".join(sorted(flag.value for flag in state.flags)),
        state.debit_limit_minor,
        state.metadata.decode("utf-8"),
        state.status.value,
        state.journal_index,
        state.debits_posted,
        state.credits_posted,
        state.debits_pending,
        state.credits_pending,
    )


def _account_update_row(state: AccountState) -> tuple[Any, ...]:
    """A changed account's ``_UPDATED_ACCOUNT_COLUMNS``, then its id."""
    return (
        state.status.value,
        state.debit_limit_minor,
        state.debits_posted,
        state.credits_posted,
        state.debits_pending,
        state.credits_pending,
        state.id,
    )


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        owner=row.owner,
        currency=row.currency,
        normal_side=Side(row.normal_side),
        flags=_flags(row.flags),
        debit_limit_minor=row.debit_limit_minor,
        metadata=decode(row.metadata.encode("utf-8")),
        status=AccountStatus(row.status),
        journal_index=row.journal_index,
    )


def _leaf_instruction(leaf: bytes) -> SignedInstruction | None:
    document = decode(leaf)
    instruction = document.get("instruction")
    if not instruction:
        return None
    return SignedInstruction(
        signer=instruction["signer"],
        payload=base64.b64decode(instruction["payload"]),
        signature=base64.b64decode(instruction["signature"]),
    )


__all__ = ["MAX_BATCH", "Ledger", "database_url"]
