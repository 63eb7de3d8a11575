"""Structured JSON logs (structlog) on stderr, one object per line.

Every line has ``timestamp`` (RFC 3339, UTC), ``level`` and ``event``; during
a gRPC call the interceptor binds ``request_id``, ``participant`` and
``method`` as context variables, so every line logged while serving the call
carries them, whoever logs it. Records of the standard ``logging`` module
(gRPC's own, SQLAlchemy's) are rendered the same way.

What is never logged: private keys, seeds, and signature bytes. Values under
keys that name such material are replaced by ``"[redacted]"`` and raw bytes by
their length, as a last line of defence; code should not pass them at all.
Tracebacks are plain text without local variables, which could hold keys.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

LEVELS = ("debug", "info", "warning", "error", "critical")

REDACTED = "[redacted]"

SECRET_KEY_PARTS = ("private", "secret", "password", "passphrase", "seed", "signature")
"""An event key containing one of these (e.g. ``signing_private_key``,
``signature``) has its value replaced by :data:`REDACTED`."""

QUIET_LOGGERS = {"alembic.runtime.plugins": logging.WARNING}
"""Libraries whose INFO lines say nothing an operator needs (Alembic lists its
plugins at every start); their warnings still show."""

_configured = False


def configure_logging(level: str = "info", *, force: bool = False) -> None:
    """Route structlog and standard logging to JSON lines on stderr, once.

    Later calls do nothing unless ``force`` (a test changing the level).
    """
    global _configured  # noqa: PLW0603 - logging is process-wide by nature
    if _configured and not force:
        return
    if level not in LEVELS:
        raise ValueError(f"expected a log level in {', '.join(LEVELS)}, got {level!r}")
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_settlement_json", False):
            root.removeHandler(existing)
    handler._settlement_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, numeric_level))
    _configured = True


def redact_secrets(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Replace key material by a marker and raw bytes by their length (see module doc)."""
    for key, value in list(event.items()):
        lowered = key.lower()
        if any(part in lowered for part in SECRET_KEY_PARTS):
            event[key] = REDACTED
        elif isinstance(value, bytes | bytearray | memoryview):
            event[key] = f"<{len(value)} bytes>"
    return event


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` becomes the ``logger`` field when given."""
    if name is None:
        return structlog.get_logger()
    return structlog.get_logger().bind(logger=name)


class _CurrentStderr:
    """A stream that is whatever ``sys.stderr`` is at the time of writing.

    Binding the stream at configure time would keep writing to a stream that
    was replaced since (a test runner's capture, a daemon's redirection).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrLogger:
    """The final logger of structlog's chain: one line per event, to stderr."""

    def __init__(self, stream: TextIO | _CurrentStderr) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        self._stream.write(message + "\n")
        self._stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _StderrLoggerFactory:
    def __call__(self, *args: Any) -> _StderrLogger:
        return _StderrLogger(_CurrentStderr())
