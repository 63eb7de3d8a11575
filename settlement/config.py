"""Settings of ``settlement serve``: flags, ``SETTLEMENT_*`` variables, limits.

Each setting is a flag whose default comes from an environment variable named
in its help text (``--max-receive-message-bytes`` / ``SETTLEMENT_MAX_RECEIVE_
MESSAGE_BYTES``); the flag wins over the variable, the variable over the
default. Limits are named, with the reason for their default beside them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import stat
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import LedgerError
from ledger.journal import CHECKPOINT_EVERY_ENTRIES_DEFAULT, CHECKPOINT_EVERY_SECONDS_DEFAULT
from ledger.keys import GROUP_OTHER_PERMISSION_BITS

if TYPE_CHECKING:
    from settlement.hub import HubSettings

ENVIRONMENT_PREFIX = "SETTLEMENT_"

LISTEN_ADDRESS_DEFAULT = "127.0.0.1:50051"
"""Loopback: a hub is exposed on purpose (``--listen 0.0.0.0:50051``), never by accident."""

MEBIBYTE = 1024 * 1024

MAX_RECEIVE_MESSAGE_BYTES_DEFAULT = 16 * MEBIBYTE
"""common.proto: a whole request may be up to 16 MiB (a batch of signed
instructions); a longer one is RESOURCE_EXHAUSTED. Never set it lower."""

MAX_RECEIVE_MESSAGE_BYTES_MIN = 16 * MEBIBYTE

MAX_SEND_MESSAGE_BYTES_DEFAULT = 16 * MEBIBYTE
"""Listings are paged and exports streamed in chunks, so no answer needs more."""

MAX_CONCURRENT_STREAMS_DEFAULT = 1000
"""HTTP/2 streams per client connection: enough for a bank's connection pool
to keep the sequencer's groups full, low enough that one client cannot hold
all the server's memory."""

MAX_CONCURRENT_RPCS_DEFAULT = 10_000
"""Calls in progress on the whole server; past it new calls are refused with
RESOURCE_EXHAUSTED (load shedding, common.proto) instead of queuing forever."""

GRACE_PERIOD_SECONDS_DEFAULT = 10.0
"""On SIGTERM, in-flight calls get this long to finish; then they are cancelled."""

HEALTH_INTERVAL_SECONDS_DEFAULT = 1.0
"""How often the health status is refreshed from ``hub.ready()``."""

METRICS_ADDRESS_DEFAULT = "127.0.0.1"
DATABASE_DEFAULT = "settlement.db"
ORIGIN_DEFAULT = "settlement.example/ledger"
OPERATOR_ID_DEFAULT = "operator"
LOG_LEVEL_DEFAULT = "info"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

GROUP_COMMIT_MAX_DEFAULT = 2000
"""As settlement.sequencer's (not imported: reading flags must not load the database layer)."""

TLS_CA_FILE = "ca.pem"
TLS_CERTIFICATE_FILE = "server.pem"
TLS_KEY_FILE = "server.key"
"""Names in ``--tls-dir``; ``settlement dev-pki`` writes exactly these."""

TLS_FILE_SIZE_MAX_BYTES = 1024 * 1024


class ConfigurationError(LedgerError):
    """A setting is missing or out of range; the message names the flag and variable."""

    code = "configuration_must_be_valid"
    kind = "invalid"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM bytes for ``grpc.ssl_server_credentials``."""

    ca_certificate: bytes
    server_certificate: bytes
    server_private_key: bytes


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``settlement serve`` needs; the transport's part and the hub's.

    Tests build one directly: ``ServerSettings(listen_address="127.0.0.1:0",
    tls_directory=pki.directory)``; the hub fields matter only to
    :meth:`hub_settings`.
    """

    # Transport.
    listen_address: str = LISTEN_ADDRESS_DEFAULT
    tls_directory: Path | None = None
    insecure: bool = False
    max_receive_message_bytes: int = MAX_RECEIVE_MESSAGE_BYTES_DEFAULT
    max_send_message_bytes: int = MAX_SEND_MESSAGE_BYTES_DEFAULT
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS_DEFAULT
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS_DEFAULT
    grace_period_seconds: float = GRACE_PERIOD_SECONDS_DEFAULT
    health_interval_seconds: float = HEALTH_INTERVAL_SECONDS_DEFAULT
    metrics_port: int = 0
    metrics_address: str = METRICS_ADDRESS_DEFAULT
    log_level: str = LOG_LEVEL_DEFAULT
    # The hub (settlement.hub.HubSettings).
    database: str = DATABASE_DEFAULT
    origin: str = ORIGIN_DEFAULT
    log_key_path: Path | None = None
    operator_id: str = OPERATOR_ID_DEFAULT
    operator_common_name: str = OPERATOR_ID_DEFAULT
    operator_public_key_path: Path | None = None
    checkpoint_every_entries: int = CHECKPOINT_EVERY_ENTRIES_DEFAULT
    checkpoint_every_seconds: int = CHECKPOINT_EVERY_SECONDS_DEFAULT
    group_commit_max: int = GROUP_COMMIT_MAX_DEFAULT
    writer_lease: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot work, naming the flag that sets each."""
        if self.max_receive_message_bytes < MAX_RECEIVE_MESSAGE_BYTES_MIN:
            raise ConfigurationError(
                f"expected --max-receive-message-bytes of at least "
                f"{MAX_RECEIVE_MESSAGE_BYTES_MIN} (the contract's 16 MiB request), "
                f"got {self.max_receive_message_bytes}"
            )
        positive = {
            "max-send-message-bytes": self.max_send_message_bytes,
            "max-concurrent-streams": self.max_concurrent_streams,
            "max-concurrent-rpcs": self.max_concurrent_rpcs,
            "health-interval-seconds": self.health_interval_seconds,
            "checkpoint-every-entries": self.checkpoint_every_entries,
            "checkpoint-every-seconds": self.checkpoint_every_seconds,
            "group-commit-max": self.group_commit_max,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise ConfigurationError(f"expected --{flag} above 0, got {value}")
        if self.grace_period_seconds < 0:
            raise ConfigurationError(
                f"expected --grace-period-seconds of 0 or more, got {self.grace_period_seconds}"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(
                f"expected --metrics-port in 0..65535, got {self.metrics_port}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigurationError(
                f"expected --log-level in {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if not self.insecure and self.tls_directory is None:
            raise ConfigurationError(
                "expected --tls-dir (env SETTLEMENT_TLS_DIR) holding ca.pem, server.pem and "
                "server.key; or --insecure for local debugging without TLS"
            )

    def tls_files(self) -> TlsFiles:
        """Read ``ca.pem``, ``server.pem`` and ``server.key`` from ``tls_directory``."""
        if self.tls_directory is None:
            raise ConfigurationError("expected --tls-dir, got none (insecure mode has no TLS)")
        directory = Path(self.tls_directory)
        return TlsFiles(
            ca_certificate=_read_pem(directory / TLS_CA_FILE),
            server_certificate=_read_pem(directory / TLS_CERTIFICATE_FILE),
            server_private_key=_read_pem(directory / TLS_KEY_FILE, private=True),
        )

    def hub_settings(self) -> HubSettings:
        """The hub's part, as :class:`settlement.hub.HubSettings`."""
        from settlement.hub import HubSettings  # noqa: PLC0415 - the database layer on demand

        if self.log_key_path is None:
            raise ConfigurationError(
                "expected --log-key (env SETTLEMENT_LOG_KEY): the log's Ed25519 private key"
            )
        if self.operator_public_key_path is None:
            raise ConfigurationError(
                "expected --operator-public-key (env SETTLEMENT_OPERATOR_PUBLIC_KEY): "
                "the operator's Ed25519 instruction-signing public key"
            )
        return HubSettings(
            database=self.database,
            origin=self.origin,
            log_key_path=Path(self.log_key_path),
            operator_id=self.operator_id,
            operator_common_name=self.operator_common_name,
            operator_public_key_path=Path(self.operator_public_key_path),
            checkpoint_every_entries=self.checkpoint_every_entries,
            checkpoint_every_seconds=self.checkpoint_every_seconds,
            group_commit_max=self.group_commit_max,
            writer_lease=self.writer_lease,
        )


def _read_pem(path: Path, *, private: bool = False) -> bytes:
    """Read a PEM file; a private key file is refused when group or other may access it
    (as ``ledger.keys`` refuses the log key: checked on the opened file, with ``fstat``)."""
    try:
        with path.open("rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            if private and mode & GROUP_OTHER_PERMISSION_BITS:
                raise ConfigurationError(
                    f"expected private key file {path} to deny group and other access "
                    f"(mode 0600), got mode {mode:04o}; fix: chmod 600 {shlex.quote(str(path))}"
                )
            content = file.read(TLS_FILE_SIZE_MAX_BYTES + 1)
    except OSError as error:
        raise ConfigurationError(
            f"expected a readable PEM file at {path}, got {error.strerror}"
        ) from None
    if len(content) > TLS_FILE_SIZE_MAX_BYTES or b"-----BEGIN " not in content:
        raise ConfigurationError(f"expected a PEM file of at most 1 MiB at {path}, got another")
    return content


# --- Command line -----------------------------------------------------------


def _environment(name: str) -> str | None:
    return os.environ.get(ENVIRONMENT_PREFIX + name)


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    variable: str,
    text: str,
    *,
    default: Any = None,
    kind: Any = str,
    metavar: str | None = None,
) -> None:
    """Add ``--flag`` whose default is ``$SETTLEMENT_<variable>``, else ``default``."""
    from_environment = _environment(variable)
    shown = "" if default is None else f"; default {default}"
    parser.add_argument(
        flag,
        type=kind,
        default=from_environment if from_environment is not None else default,
        metavar=metavar,
        help=f"{text} (env {ENVIRONMENT_PREFIX}{variable}{shown})",
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``settlement serve``, each naming its environment variable."""
    transport = parser.add_argument_group("transport")
    _flag(
        transport,
        "--listen",
        "LISTEN_ADDRESS",
        "address to listen on, host:port; port 0 picks a free port",
        default=LISTEN_ADDRESS_DEFAULT,
        metavar="HOST:PORT",
    )
    _flag(
        transport,
        "--tls-dir",
        "TLS_DIR",
        "directory with ca.pem (the CA of client certificates), server.pem and server.key",
        kind=Path,
        metavar="DIR",
    )
    transport.add_argument(
        "--insecure",
        action="store_true",
        default=_boolean(_environment("INSECURE") or ""),
        help="plaintext, no TLS: the caller is named by the x-settlement-participant "
        "metadata, so anyone can act as anyone. Local debugging only "
        f"(env {ENVIRONMENT_PREFIX}INSECURE=true)",
    )
    _flag(
        transport,
        "--dev-pki",
        "DEV_PKI",
        "a directory written by `settlement dev-pki`: sets --tls-dir, --log-key and "
        "--operator-public-key from it unless they are given (development only)",
        kind=Path,
        metavar="DIR",
    )
    limits = parser.add_argument_group("limits")
    _flag(
        limits,
        "--max-receive-message-bytes",
        "MAX_RECEIVE_MESSAGE_BYTES",
        "largest request message accepted, at least 16 MiB",
        default=MAX_RECEIVE_MESSAGE_BYTES_DEFAULT,
        kind=int,
        metavar="BYTES",
    )
    _flag(
        limits,
        "--max-send-message-bytes",
        "MAX_SEND_MESSAGE_BYTES",
        "largest response message sent",
        default=MAX_SEND_MESSAGE_BYTES_DEFAULT,
        kind=int,
        metavar="BYTES",
    )
    _flag(
        limits,
        "--max-concurrent-streams",
        "MAX_CONCURRENT_STREAMS",
        "HTTP/2 streams per client connection",
        default=MAX_CONCURRENT_STREAMS_DEFAULT,
        kind=int,
        metavar="COUNT",
    )
    _flag(
        limits,
        "--max-concurrent-rpcs",
        "MAX_CONCURRENT_RPCS",
        "calls in progress on the server; more are refused with RESOURCE_EXHAUSTED",
        default=MAX_CONCURRENT_RPCS_DEFAULT,
        kind=int,
        metavar="COUNT",
    )
    _flag(
        limits,
        "--grace-period-seconds",
        "GRACE_PERIOD_SECONDS",
        "on SIGTERM or SIGINT, how long in-flight calls may take to finish",
        default=GRACE_PERIOD_SECONDS_DEFAULT,
        kind=float,
        metavar="SECONDS",
    )
    operations = parser.add_argument_group("operations")
    _flag(
        operations,
        "--health-interval-seconds",
        "HEALTH_INTERVAL_SECONDS",
        "how often the gRPC health status is refreshed from the database",
        default=HEALTH_INTERVAL_SECONDS_DEFAULT,
        kind=float,
        metavar="SECONDS",
    )
    _flag(
        operations,
        "--metrics-port",
        "METRICS_PORT",
        "port of the Prometheus /metrics endpoint; 0 turns it off",
        default=0,
        kind=int,
        metavar="PORT",
    )
    _flag(
        operations,
        "--metrics-address",
        "METRICS_ADDRESS",
        "address of the Prometheus endpoint",
        default=METRICS_ADDRESS_DEFAULT,
        metavar="HOST",
    )
    operations.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=_environment("LOG_LEVEL") or LOG_LEVEL_DEFAULT,
        help=f"least severe level logged (env {ENVIRONMENT_PREFIX}LOG_LEVEL; "
        f"default {LOG_LEVEL_DEFAULT})",
    )
    hub = parser.add_argument_group("ledger and log")
    _flag(
        hub,
        "--database",
        "DATABASE",
        "SQLite file path or postgresql+psycopg:// URL",
        default=DATABASE_DEFAULT,
        metavar="URL",
    )
    _flag(hub, "--origin", "ORIGIN", "the log origin named in checkpoints", default=ORIGIN_DEFAULT)
    _flag(
        hub,
        "--log-key",
        "LOG_KEY",
        "the log's Ed25519 private key file, mode 0600",
        kind=Path,
        metavar="FILE",
    )
    _flag(
        hub,
        "--operator-id",
        "OPERATOR_ID",
        "participant id of the operator, registered on first start",
        default=OPERATOR_ID_DEFAULT,
    )
    _flag(
        hub,
        "--operator-common-name",
        "OPERATOR_COMMON_NAME",
        "subject common name of the operator's client certificate (default: the operator id)",
        metavar="CN",
    )
    _flag(
        hub,
        "--operator-public-key",
        "OPERATOR_PUBLIC_KEY",
        "the operator's Ed25519 instruction-signing public key file",
        kind=Path,
        metavar="FILE",
    )
    _flag(
        hub,
        "--checkpoint-every-entries",
        "CHECKPOINT_EVERY_ENTRIES",
        "sign a checkpoint at least every this many entries",
        default=CHECKPOINT_EVERY_ENTRIES_DEFAULT,
        kind=int,
        metavar="COUNT",
    )
    _flag(
        hub,
        "--checkpoint-every-seconds",
        "CHECKPOINT_EVERY_SECONDS",
        "sign a checkpoint of new entries at least this often",
        default=CHECKPOINT_EVERY_SECONDS_DEFAULT,
        kind=int,
        metavar="SECONDS",
    )
    _flag(
        hub,
        "--group-commit-max",
        "GROUP_COMMIT_MAX",
        "most commands committed in one database transaction",
        default=GROUP_COMMIT_MAX_DEFAULT,
        kind=int,
        metavar="COUNT",
    )
    hub.add_argument(
        "--writer-lease",
        action=argparse.BooleanOptionalAction,
        default=_boolean(_environment("WRITER_LEASE") or "true"),
        help="PostgreSQL: write only while holding the advisory-lock writer lease, so "
        f"instances can share one database (env {ENVIRONMENT_PREFIX}WRITER_LEASE; "
        "default true)",
    )


def settings_from_arguments(options: argparse.Namespace) -> ServerSettings:
    """Build :class:`ServerSettings` from parsed ``settlement serve`` arguments."""
    tls_directory = options.tls_dir
    log_key = options.log_key
    operator_public_key = options.operator_public_key
    if options.dev_pki is not None:
        # Paths of the layout settlement.pki writes; explicit flags still win.
        pki = Path(options.dev_pki)
        tls_directory = tls_directory or pki
        log_key = log_key or pki / "log.private.pem"
        operator_public_key = operator_public_key or (
            pki / "participants" / options.operator_id / "signing.public.pem"
        )
    values: dict[str, Any] = {
        "listen_address": options.listen,
        "tls_directory": None if options.insecure else tls_directory,
        "insecure": options.insecure,
        "max_receive_message_bytes": options.max_receive_message_bytes,
        "max_send_message_bytes": options.max_send_message_bytes,
        "max_concurrent_streams": options.max_concurrent_streams,
        "max_concurrent_rpcs": options.max_concurrent_rpcs,
        "grace_period_seconds": options.grace_period_seconds,
        "health_interval_seconds": options.health_interval_seconds,
        "metrics_port": options.metrics_port,
        "metrics_address": options.metrics_address,
        "log_level": options.log_level,
        "database": options.database,
        "origin": options.origin,
        "log_key_path": log_key,
        "operator_id": options.operator_id,
        "operator_common_name": options.operator_common_name or options.operator_id,
        "operator_public_key_path": operator_public_key,
        "checkpoint_every_entries": options.checkpoint_every_entries,
        "checkpoint_every_seconds": options.checkpoint_every_seconds,
        "group_commit_max": options.group_commit_max,
        "writer_lease": options.writer_lease,
    }
    known = {field.name for field in fields(ServerSettings)}
    if set(values) != known:
        raise ConfigurationError(f"settings and flags disagree: {sorted(set(values) ^ known)}")
    return ServerSettings(**values)
