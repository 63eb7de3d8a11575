"""What every reference client shares: identity files, the mutual-TLS channel,
retries with one idempotency key, error reports and output.

A client is a bank's (or an auditor's) own program: it talks to the hub over
gRPC only (DESIGN.md section 1), so nothing here imports the service.

Identity. ``--pki DIR`` reads ``DIR/participants.json`` as ``settlement
dev-pki --out DIR`` writes it (format ``settlement-dev-pki/v1``: the CA
certificate, the log's public key, and for each participant its client
certificate, TLS key and Ed25519 signing key, paths relative to DIR). A real
bank has no such directory and names its files instead: ``--ca-certificate``,
``--certificate``, ``--private-key``, ``--signing-key`` (each also overrides
the directory's).

Retries (common.proto, "Errors"): on UNAVAILABLE or DEADLINE_EXCEEDED the
outcome of a write is unknown, and the answer is to send the IDENTICAL signed
instruction again: :class:`Retrying` sends one request object, built and
signed once with one idempotency key, up to :data:`RETRY_ATTEMPTS_MAX` times
within :data:`RETRY_TOTAL_SECONDS_MAX`, sleeping a bounded exponential backoff
with full jitter between attempts. Every other status is final.

Exit status of every client: 0 done, 1 refused by the hub (or, for the
auditor, findings), 2 usage error or no connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

import grpc
from google.protobuf.message import DecodeError

from settlement.v1 import common_pb2

RequestType = TypeVar("RequestType")
ResponseType = TypeVar("ResponseType")
ResultType = TypeVar("ResultType")

# --- Exit status ---------------------------------------------------------------------------

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
"""The hub answered with an error status (for the auditor: the audit has findings)."""
EXIT_USAGE: Final = 2
"""Bad flags, unreadable files, or no answer from the hub within the retry budget."""

# --- Retry policy --------------------------------------------------------------------------

RETRY_ATTEMPTS_MAX: Final = 5
"""Attempts of one call, the first included. The four pauses between five
attempts are drawn below ceilings of 0.5, 1, 2 and 4 s (7.5 s at most, 3.75 s
expected), on top of the attempts themselves: enough to ride out a brief
writer-lease failover (UNAVAILABLE until another instance takes the lease),
short enough that a person at a terminal is told soon."""

RETRY_BACKOFF_INITIAL_SECONDS: Final = 0.5
"""Upper bound of the first pause; pause n is drawn from [0, min(max, initial * 2**n)]."""

RETRY_BACKOFF_MULTIPLIER: Final = 2.0

RETRY_BACKOFF_MAX_SECONDS: Final = 8.0
"""No single pause is longer: the cap of the exponential."""

RETRY_TOTAL_SECONDS_MAX: Final = 60.0
"""Wall-clock budget of one logical call, attempts and pauses together; an
attempt's deadline is cut to what is left of it."""

CALL_TIMEOUT_SECONDS: Final = 15.0
"""Deadline of one attempt of a unary call. The hub answers a write only once it
is durable (group commit), normally in milliseconds."""

RETRYABLE_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""The outcome is unknown: send the identical request again (common.proto)."""

ERROR_METADATA_KEY: Final = "settlement-error-bin"
"""Trailing metadata holding a serialized ``settlement.v1.Error`` (common.proto, "Errors")."""

ERROR_DETAIL_MAX_BYTES: Final = 64 * 1024
"""An Error is a code, a sentence and a few field names; more is not one."""

MESSAGE_SIZE_MAX_BYTES: Final = 16 * 1024 * 1024
"""The hub's message limit; a statement or a bundle chunk fits well under it."""

DEFAULT_SERVER: Final = "127.0.0.1:50051"
"""Where ``settlement serve`` listens by default."""

PKI_FORMAT: Final = "settlement-dev-pki/v1"
PKI_PARTICIPANTS_FILE: Final = "participants.json"
PKI_FILE_SIZE_MAX_BYTES: Final = 1024 * 1024
"""Largest certificate, key or participants.json read: each is a few KiB."""


class ClientError(Exception):
    """A usage or local problem (flags, files); the message says what to fix. Exit 2."""


# --- Identity files ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PkiParticipant:
    """One participant of a dev-pki directory, with absolute paths."""

    participant_id: str
    role: str
    country: str
    legal_name: str
    bic: str
    lei: str
    aba_routing_number: str
    iban_bank_code: str
    certificate_path: Path
    private_key_path: Path
    signing_private_key_path: Path
    signing_public_key_path: Path


@dataclass(frozen=True, slots=True)
class Pki:
    """A directory written by ``settlement dev-pki --out DIR``."""

    directory: Path
    ca_certificate_path: Path
    log_public_key_path: Path
    participants: Mapping[str, PkiParticipant]

    def participant(self, participant_id: str) -> PkiParticipant:
        try:
            return self.participants[participant_id]
        except KeyError:
            known = ", ".join(sorted(self.participants))
            raise ClientError(
                f"expected a participant of {self.directory} ({known}), got {participant_id!r}"
            ) from None


def read_file(path: Path, what: str, size_max: int = PKI_FILE_SIZE_MAX_BYTES) -> bytes:
    """A small file, whole, or a :class:`ClientError` naming it."""
    try:
        with path.open("rb") as file:
            content = file.read(size_max + 1)
    except OSError as error:
        raise ClientError(f"expected a readable {what} at {path}, got {error.strerror}") from None
    if len(content) > size_max:
        raise ClientError(f"expected a {what} of at most {size_max} bytes at {path}, got more")
    return content


def _inside(directory: Path, relative: object, what: str) -> Path:
    if not isinstance(relative, str) or not relative:
        raise ClientError(f"expected a relative path for {what} in participants.json")
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts:
        raise ClientError(f"expected {what} inside {directory}, got {relative!r}")
    return directory / path


def load_pki(directory: str | os.PathLike[str]) -> Pki:
    """Read ``participants.json`` of a dev-pki directory (format ``settlement-dev-pki/v1``)."""
    root = Path(directory)
    path = root / PKI_PARTICIPANTS_FILE
    try:
        document = json.loads(read_file(path, "participants file"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClientError(f"expected JSON in {path}, got something else") from None
    if not isinstance(document, dict) or document.get("format") != PKI_FORMAT:
        raise ClientError(f"expected {PKI_FORMAT!r} in {path}, got another format")
    participants: dict[str, PkiParticipant] = {}
    records = document.get("participants")
    if not isinstance(records, list):
        raise ClientError(f"expected a list of participants in {path}")
    try:
        for record in records:
            identifier = str(record["participant_id"])
            participants[identifier] = PkiParticipant(
                participant_id=identifier,
                role=str(record["role"]),
                country=str(record["country"]),
                legal_name=str(record["legal_name"]),
                bic=str(record["bic"]),
                lei=str(record["lei"]),
                aba_routing_number=str(record["aba_routing_number"]),
                iban_bank_code=str(record["iban_bank_code"]),
                certificate_path=_inside(root, record["certificate"], "certificate"),
                private_key_path=_inside(root, record["private_key"], "private_key"),
                signing_private_key_path=_inside(
                    root, record["signing_private_key"], "signing_private_key"
                ),
                signing_public_key_path=_inside(
                    root, record["signing_public_key"], "signing_public_key"
                ),
            )
        return Pki(
            directory=root,
            ca_certificate_path=_inside(root, document["ca_certificate"], "ca_certificate"),
            log_public_key_path=_inside(root, document["log_public_key"], "log_public_key"),
            participants=participants,
        )
    except (KeyError, TypeError) as error:
        raise ClientError(
            f"expected every field of {PKI_FORMAT} in {path}, missing {error}"
        ) from None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the client is to the hub: its TLS files, its signing key, and the CA it trusts."""

    participant_id: str
    ca_certificate_path: Path
    certificate_path: Path
    private_key_path: Path
    signing_key_path: Path | None
    log_public_key_path: Path | None = None
    pki: Pki | None = None


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Where and how to connect (``--server``, ``--tls-server-name``)."""

    server: str
    tls_server_name: str | None = None


def add_connection_arguments(parser: argparse.ArgumentParser, participant_id: str) -> None:
    """The flags of every client command that talks to the hub."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=os.environ.get("SETTLEMENT_SERVER", DEFAULT_SERVER),
        metavar="HOST:PORT",
        help=f"the hub's address (env SETTLEMENT_SERVER; default {DEFAULT_SERVER})",
    )
    group.add_argument(
        "--pki",
        default=os.environ.get("SETTLEMENT_PKI"),
        metavar="DIR",
        help="a directory written by `settlement dev-pki` (participants.json): the CA, "
        "certificate, TLS key and signing key of --participant (env SETTLEMENT_PKI)",
    )
    group.add_argument(
        "--participant",
        default=participant_id,
        metavar="ID",
        help=f"the participant to act as (default {participant_id})",
    )
    group.add_argument("--ca-certificate", metavar="FILE", help="PEM CA certificate to trust")
    group.add_argument(
        "--certificate", metavar="FILE", help="PEM client certificate (its CN names you)"
    )
    group.add_argument("--private-key", metavar="FILE", help="PEM private key of the certificate")
    group.add_argument(
        "--signing-key", metavar="FILE", help="Ed25519 instruction-signing key (PKCS#8 PEM)"
    )
    group.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name to expect in the hub's certificate when it differs from the host "
        "of --server (e.g. localhost for the development certificate)",
    )


def identity_from_arguments(options: argparse.Namespace, *, signing: bool) -> Identity:
    """The identity the flags name; explicit files win over the --pki directory's."""
    pki = load_pki(options.pki) if options.pki else None
    participant = pki.participant(options.participant) if pki is not None else None

    def pick(explicit: str | None, from_pki: Path | None, flag: str) -> Path:
        if explicit:
            return Path(explicit)
        if from_pki is not None:
            return from_pki
        raise ClientError(f"expected --pki DIR or {flag} FILE")

    return Identity(
        participant_id=options.participant,
        ca_certificate_path=pick(
            options.ca_certificate,
            pki.ca_certificate_path if pki else None,
            "--ca-certificate",
        ),
        certificate_path=pick(
            options.certificate,
            participant.certificate_path if participant else None,
            "--certificate",
        ),
        private_key_path=pick(
            options.private_key,
            participant.private_key_path if participant else None,
            "--private-key",
        ),
        signing_key_path=(
            pick(
                options.signing_key,
                participant.signing_private_key_path if participant else None,
                "--signing-key",
            )
            if signing
            else None
        ),
        log_public_key_path=pki.log_public_key_path if pki else None,
        pki=pki,
    )


def channel_credentials(identity: Identity) -> grpc.ChannelCredentials:
    """Mutual TLS: trust the hub's CA, present the participant's certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(identity.ca_certificate_path, "CA certificate"),
        private_key=read_file(identity.private_key_path, "TLS private key"),
        certificate_chain=read_file(identity.certificate_path, "client certificate"),
    )


def channel_options(tls_server_name: str | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MESSAGE_SIZE_MAX_BYTES),
        ("grpc.max_send_message_length", MESSAGE_SIZE_MAX_BYTES),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return options


def open_channel(identity: Identity, connection: ConnectionOptions) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to the hub over mutual TLS (open it inside the event loop)."""
    return grpc.aio.secure_channel(
        connection.server,
        channel_credentials(identity),
        options=channel_options(connection.tls_server_name),
    )


# --- Retries -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter (the module docstring has the numbers)."""

    attempts_max: int = RETRY_ATTEMPTS_MAX
    backoff_initial_seconds: float = RETRY_BACKOFF_INITIAL_SECONDS
    backoff_multiplier: float = RETRY_BACKOFF_MULTIPLIER
    backoff_max_seconds: float = RETRY_BACKOFF_MAX_SECONDS
    total_seconds_max: float = RETRY_TOTAL_SECONDS_MAX
    call_timeout_seconds: float = CALL_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.attempts_max < 1:
            raise ValueError(f"attempts_max: expected at least 1, got {self.attempts_max}")
        if self.total_seconds_max <= 0 or self.call_timeout_seconds <= 0:
            raise ValueError("total_seconds_max and call_timeout_seconds must be positive")

    def backoff_ceiling_seconds(self, retry: int) -> float:
        """Upper bound of the pause before retry number ``retry`` (0 for the first)."""
        exponential = self.backoff_initial_seconds * self.backoff_multiplier**retry
        return min(self.backoff_max_seconds, exponential)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A failed attempt that will be retried: what failed and how long we wait."""

    attempt: int
    attempts_max: int
    code: grpc.StatusCode
    pause_seconds: float
    label: str


class RetriesExhausted(Exception):
    """Every attempt failed with a retryable status, or the time budget ran out.

    For a write (``instruction_id`` set) the outcome is UNKNOWN: it may have
    committed. Sending the same instruction (same id) again later tells which.
    """

    def __init__(
        self, error: grpc.RpcError, attempts: int, label: str, instruction_id: str | None = None
    ) -> None:
        super().__init__(f"{label}: no answer after {attempts} attempt(s)")
        self.error = error
        self.attempts = attempts
        self.label = label
        self.instruction_id = instruction_id


def _status_of(error: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(error, "code", None)
    status = code() if callable(code) else None
    return status if isinstance(status, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


@dataclass
class Retrying:
    """Runs one logical call, retrying it on UNAVAILABLE and DEADLINE_EXCEEDED.

    ``sleep``, ``clock`` and ``random`` are injectable so tests run without
    waiting; ``on_retry`` is told of every retry (the CLIs print it on stderr).
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    random: random.Random = field(default_factory=random.Random)
    on_retry: Callable[[RetryEvent], None] | None = None

    async def run(
        self,
        attempt: Callable[[float], Awaitable[ResultType]],
        *,
        label: str,
        policy: RetryPolicy | None = None,
        instruction_id: str | None = None,
    ) -> ResultType:
        """``await attempt(timeout_seconds)`` until it succeeds or the policy gives up.

        ``attempt`` must send the same request every time: build and sign it
        before calling this, never inside ``attempt``.
        """
        chosen = policy or self.policy
        started = self.clock()
        number = 0
        while True:
            number += 1
            remaining = chosen.total_seconds_max - (self.clock() - started)
            timeout = min(chosen.call_timeout_seconds, max(remaining, 0.001))
            try:
                return await attempt(timeout)
            except grpc.RpcError as error:
                code = _status_of(error)
                if code not in RETRYABLE_CODES:
                    raise
                if number >= chosen.attempts_max:
                    raise RetriesExhausted(error, number, label, instruction_id) from error
                pause = self.random.uniform(0.0, chosen.backoff_ceiling_seconds(number - 1))
                if self.clock() - started + pause >= chosen.total_seconds_max:
                    raise RetriesExhausted(error, number, label, instruction_id) from error
                if self.on_retry is not None:
                    self.on_retry(RetryEvent(number, chosen.attempts_max, code, pause, label))
                await self.sleep(pause)

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[RequestType, ResponseType],
        request: RequestType,
        *,
        label: str,
        policy: RetryPolicy | None = None,
        instruction_id: str | None = None,
    ) -> ResponseType:
        """A unary call with retries; ``request`` is sent unchanged on every attempt.

        Give ``instruction_id`` for a write: an exhausted retry then says the
        outcome is unknown and which id to send again."""

        async def attempt(timeout: float) -> ResponseType:
            return await method(request, timeout=timeout)

        return await self.run(attempt, label=label, policy=policy, instruction_id=instruction_id)

    async def write(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[RequestType, ResponseType],
        build: Callable[[str], RequestType],
        *,
        instruction_id: str,
        label: str,
    ) -> ResponseType:
        """One logical write: ``build(instruction_id)`` is called ONCE (it signs the
        instruction), and that one request is what every attempt sends."""
        request = build(instruction_id)
        return await self.call(method, request, label=label, instruction_id=instruction_id)


def print_retry(event: RetryEvent, out: TextIO | None = None) -> None:
    """The CLIs' ``on_retry``: one line on stderr per retry."""
    stream = out or sys.stderr
    stream.write(
        f"{event.label}: {event.code.name} on attempt {event.attempt} of "
        f"{event.attempts_max}; sending the same request again in "
        f"{event.pause_seconds:.2f} s\n"
    )


# --- Errors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """A refused call, as a person and a program read it."""

    status: str
    code: str
    message: str
    fields: tuple[str, ...] = ()

    def line(self) -> str:
        where = f" (fields: {', '.join(self.fields)})" if self.fields else ""
        code = f" {self.code}" if self.code else ""
        return f"{self.status}{code}: {self.message}{where}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "fields": list(self.fields),
        }


def _trailing_metadata(error: grpc.RpcError) -> Iterable[Any]:
    trailing = getattr(error, "trailing_metadata", None)
    metadata = trailing() if callable(trailing) else None
    return metadata or ()


def error_report(error: grpc.RpcError) -> ErrorReport:
    """Read ``settlement-error-bin`` (a serialized ``settlement.v1.Error``) when present,
    else the status and its details."""
    status = _status_of(error).name
    details_method = getattr(error, "details", None)
    details = details_method() if callable(details_method) else None
    text = str(details or "")
    for item in _trailing_metadata(error):
        key, value = item[0], item[1]
        if key != ERROR_METADATA_KEY or not isinstance(value, bytes):
            continue
        if len(value) > ERROR_DETAIL_MAX_BYTES:
            break
        try:
            detail = common_pb2.Error.FromString(value)
        except DecodeError:
            break
        return ErrorReport(status, detail.code, detail.message, tuple(detail.fields))
    code, separator, message = text.partition(": ")
    if separator and code and code.replace("_", "").isalnum() and code.islower():
        return ErrorReport(status, code, message)
    return ErrorReport(status, "", text or "no details")


def report_failure(error: BaseException, output: Output, program: str) -> int:
    """Print what went wrong (stderr; also JSON on stdout with ``--json``); the exit status."""
    if isinstance(error, RetriesExhausted):
        report = error_report(error.error)
        if error.instruction_id is not None:
            outcome = (
                "the outcome is unknown: run the same command again with --instruction-id "
                f"{error.instruction_id} to learn it without doing it twice"
            )
        else:
            outcome = "is the hub running, and is --server right?"
        sys.stderr.write(
            f"{program}: {error.label}: no answer after {error.attempts} attempt(s) "
            f"(last: {report.line()}); {outcome}\n"
        )
        output.error(
            {
                "unknown_outcome": error.instruction_id is not None,
                "instruction_id": error.instruction_id,
                "attempts": error.attempts,
                **report.to_json(),
            }
        )
        return EXIT_USAGE
    if isinstance(error, grpc.RpcError):
        report = error_report(error)
        sys.stderr.write(f"{program}: {report.line()}\n")
        output.error(report.to_json())
        return EXIT_REFUSED
    sys.stderr.write(f"{program}: {error}\n")
    output.error({"status": "CLIENT_ERROR", "code": "", "message": str(error), "fields": []})
    return EXIT_USAGE


# --- Money ---------------------------------------------------------------------------------

MINOR_UNIT_DIGITS: Final[Mapping[str, int]] = {
    "USD": 2,
    "PKR": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CNY": 2,
    "AED": 2,
    "JPY": 0,
    "KWD": 3,
    "BHD": 3,
}
"""ISO 4217 minor units of the currencies a client is likely to show; the hub
decides which it supports. Others are shown as minor units."""

AMOUNT_DIGITS_MAX: Final = 19
"""A signed 64-bit amount has at most 19 digits."""


def format_minor(amount_minor: int, currency: str) -> str:
    """``125000, "USD"`` -> ``"1,250.00"``: exact, from integer minor units."""
    digits = MINOR_UNIT_DIGITS.get(currency)
    if digits is None:
        return f"{amount_minor:,} (minor units)"
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    return f"{sign}{whole:,}.{fraction:0{digits}d}" if digits else f"{sign}{whole:,}"


def parse_amount(text: str, currency: str) -> int:
    """``"1,250.00", "USD"`` -> ``125000``: exact, refusing more decimals than the
    currency's minor unit (never rounds someone's money)."""
    digits = MINOR_UNIT_DIGITS.get(currency)
    if digits is None:
        raise ClientError(
            f"expected a currency with known minor units ({', '.join(sorted(MINOR_UNIT_DIGITS))})"
            f", got {currency!r}; give the amount in minor units instead"
        )
    cleaned = text.replace(",", "").replace("_", "").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ClientError(f"expected an amount like 1250.00, got {text!r}") from None
    if not value.is_finite():
        raise ClientError(f"expected a finite amount, got {text!r}")
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise ClientError(f"expected at most {digits} decimals for {currency}, got {text!r}")
    amount = int(minor)
    if len(str(abs(amount))) > AMOUNT_DIGITS_MAX or abs(amount) > 2**63 - 1:
        raise ClientError(f"expected an amount within the int64 range, got {text!r}")
    return amount


# --- Output --------------------------------------------------------------------------------


@dataclass
class Output:
    """Tables for people, one JSON document for programs (``--json``)."""

    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def document(self, value: Any) -> None:
        """Print ``value`` as JSON (``--json``) or as ``key: value`` lines."""
        if self.json:
            self.out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
            return
        if isinstance(value, Mapping):
            width = max((len(str(key)) for key in value), default=0)
            for key, item in value.items():
                self.out.write(f"{str(key) + ':':<{width + 1}} {_plain(item)}\n")
        else:
            self.out.write(f"{_plain(value)}\n")

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        right_aligned: Iterable[int] = (),
        documents: Any = None,
    ) -> None:
        """Print aligned columns, or ``documents`` as JSON when ``--json``."""
        if self.json:
            self.document(
                documents
                if documents is not None
                else [dict(zip(headers, row, strict=True)) for row in rows]
            )
            return
        self.out.write(format_table(headers, rows, right_aligned=right_aligned))

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, document: Mapping[str, Any]) -> None:
        if self.json:
            self.out.write(json.dumps({"error": dict(document)}, indent=2, sort_keys=True) + "\n")


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value) or "-"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if value is None or value == "":
        return "-"
    return str(value)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right_aligned: Iterable[int] = ()
) -> str:
    """Columns padded to their widest cell, numbers right-aligned, a rule under the header."""
    right = set(right_aligned)
    cells = [[str(header) for header in headers]] + [[_plain(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]

    def render(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[column]) if column in right else cell.ljust(widths[column])
            for column, cell in enumerate(row)
        ]
        return "  ".join(parts).rstrip() + "\n"

    rule = "  ".join("-" * width for width in widths) + "\n"
    return render(cells[0]) + rule + "".join(render(row) for row in cells[1:])


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )
