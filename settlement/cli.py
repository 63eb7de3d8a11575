"""The ``settlement`` command: one entry point for operators and auditors.

Every option can also come from a ``SETTLEMENT_*`` environment variable, named
in its help text, so a container or a systemd unit configures it without
flags.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import ledger
from ledger.errors import LedgerError
from ledger.keys import generate_signing_key, load_private_key, public_key_bytes
from ledger.note import NoteSigner

if TYPE_CHECKING:  # the database layer loads only for commands that use it
    from ledger.journal import LogSettings

DEFAULT_DATABASE = "settlement.db"
DEFAULT_ORIGIN = "settlement.example/ledger"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"SETTLEMENT_{name}", default)


def _add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=_env("DATABASE", DEFAULT_DATABASE),
        help="SQLite file path or postgresql+psycopg:// URL "
        f"(env SETTLEMENT_DATABASE; default {DEFAULT_DATABASE})",
    )


def _add_log_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-key",
        default=_env("LOG_KEY"),
        required=_env("LOG_KEY") is None,
        help="the log's Ed25519 private key file, mode 0600 (env SETTLEMENT_LOG_KEY)",
    )
    parser.add_argument(
        "--origin",
        default=_env("ORIGIN", DEFAULT_ORIGIN),
        help="the log origin named in checkpoints "
        f"(env SETTLEMENT_ORIGIN; default {DEFAULT_ORIGIN})",
    )


def log_settings(key_file: str, origin: str) -> LogSettings:
    from ledger.journal import LogSettings  # noqa: PLC0415 - database layer on demand

    return LogSettings(origin=origin, signer=NoteSigner(origin, load_private_key(key_file)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="settlement",
        description="Cross-border USD/PKR settlement hub on a signed double-entry ledger.",
    )
    parser.add_argument("--version", action="version", version=f"settlement {ledger.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", metavar="ACTION", required=True
    )
    generate = keys.add_parser(
        "generate", help="make a throwaway development Ed25519 key pair (private file mode 0600)"
    )
    generate.add_argument("--out", required=True, help="directory for the key files")
    generate.add_argument("--name", required=True, help="key name, used for the file names")

    audit = commands.add_parser("audit", help="export and verify audit bundles").add_subparsers(
        dest="audit_command", metavar="ACTION", required=True
    )
    export = audit.add_parser("export", help="write an audit bundle from the database")
    _add_database(export)
    _add_log_key(export)
    export.add_argument("--out", required=True, help="directory to write the bundle into")
    verify = audit.add_parser(
        "verify",
        help="verify a bundle offline (exit 0 verified, 1 findings, 2 usage)",
        add_help=False,
    )
    verify.add_argument("arguments", nargs=argparse.REMAINDER)

    serve = commands.add_parser(
        "serve",
        help="run the hub's gRPC server (mutual TLS) until SIGTERM or SIGINT",
        description="Run the hub's gRPC server: mutual TLS, health checking, reflection, "
        'JSON logs on stderr (the line with event "listening" gives the bound port), '
        "Prometheus metrics. On SIGTERM or SIGINT it stops accepting calls, lets in-flight "
        "calls finish within the grace period, closes the hub and exits 0. Every flag "
        "can also be set by the environment variable named in its help.",
    )
    from settlement.config import add_server_arguments  # noqa: PLC0415 - flags only

    add_server_arguments(serve)

    dev_pki = commands.add_parser(
        "dev-pki",
        help="write a DEVELOPMENT ONLY CA, server and participant certificates and keys",
        description="Write a throwaway development PKI: a CA marked DEVELOPMENT ONLY, a "
        "server certificate for localhost, 127.0.0.1 and ::1, and for each demo participant "
        "a client certificate (CN = participant id), its key and an Ed25519 signing key pair; "
        "also the log's signing key and participants.json. Never use it for real.",
    )
    dev_pki.add_argument("--out", required=True, help="directory to write (created mode 0700)")
    dev_pki.add_argument(
        "--force",
        action="store_true",
        help="replace the development PKI files in a directory that already has files",
    )
    demo = commands.add_parser(
        "demo",
        help="run the whole story on a fresh hub in a temporary directory (development only)",
        add_help=False,
    )
    demo.add_argument("arguments", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:2] == ["audit", "verify"]:
        # Imported here so that verifying never loads the database layer.
        from ledger.verify import main as verify_main  # noqa: PLC0415

        return int(verify_main(arguments[1:]))
    if arguments[:1] == ["demo"]:
        from settlement.demo import main as demo_main  # noqa: PLC0415 - clients on demand

        return demo_main(arguments[1:])
    parser = build_parser()
    options = parser.parse_args(arguments)
    try:
        return _run(parser, options)
    except LedgerError as error:
        print(f"settlement: {error}", file=sys.stderr)
        return 1


def _run(parser: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    if options.command == "keys":
        private_path, public_path = generate_signing_key(Path(options.out), options.name)
        public = public_key_bytes(load_private_key(private_path)).hex()
        print(f"private key: {private_path} (development only; keep it secret)")
        print(f"public key:  {public_path} ({public})")
        return 0
    if options.command == "audit" and options.audit_command == "export":
        from ledger.export import export_bundle  # noqa: PLC0415 - database layer on demand
        from ledger.store import Ledger  # noqa: PLC0415

        settings = log_settings(options.log_key, options.origin)
        with Ledger(options.database, log=settings) as store:
            size = export_bundle(store, Path(options.out))
        print(f"exported {size} entries to {options.out}")
        return 0
    if options.command == "serve":
        from settlement.config import settings_from_arguments  # noqa: PLC0415
        from settlement.server import run  # noqa: PLC0415 - gRPC on demand

        return run(settings_from_arguments(options))
    if options.command == "dev-pki":
        from settlement.pki import create_dev_pki  # noqa: PLC0415

        pki = create_dev_pki(Path(options.out), force=options.force)
        print(f"development PKI written to {pki.directory} (DEVELOPMENT ONLY; see README.txt)")
        for participant in pki.participants.values():
            print(f"  {participant.participant_id:<12} {participant.role.value}")
        print(f"serve with: settlement serve --dev-pki {pki.directory}")
        return 0
    parser.print_help()
    return 0 if options.command is None else 2


if __name__ == "__main__":
    sys.exit(main())
