"""Reference client of an FX liquidity provider: publishes the rates quotes are priced from.

A rate is a decimal string (units of the target currency per one unit of the
source currency), signed by the provider and valid for a stated time; the hub
never takes a rate from anywhere else. gRPC only, like every client here.

Exit status: 0 done, 1 refused by the hub, 2 usage error or no answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Final

from clients.bank import BankDefaults, Command, Session, commit_status, run
from clients.common import add_connection_arguments, add_output_arguments, parse_amount
from clients.signing import instruction_type
from settlement.v1 import payment_pb2, payment_pb2_grpc

DEFAULTS: Final = BankDefaults(
    program="fx_provider",
    participant_id="fx-provider",
    home_currency="USD",
    foreign_currency="PKR",
)


def _rate_arguments(parser: argparse.ArgumentParser, _defaults: BankDefaults) -> None:
    parser.add_argument("--source", default="USD", help="currency sent (default USD)")
    parser.add_argument("--target", default="PKR", help="currency received (default PKR)")
    parser.add_argument("--rate", required=True, help="target units per source unit, e.g. 278.45")
    parser.add_argument(
        "--valid-seconds", type=int, default=3600, help="how long it may be quoted (default 3600)"
    )
    parser.add_argument(
        "--fee", default="0", help="flat fee per quote, in the source currency (default 0)"
    )
    parser.add_argument("--instruction-id", help="the idempotency key; default a new one")


async def _publish(session: Session, options: argparse.Namespace) -> int:
    stub = payment_pb2_grpc.PaymentServiceStub(session.channel)
    instruction_id = session.instruction_id(options)
    instruction = payment_pb2.PublishRateInstruction(
        instruction_id=instruction_id,
        participant_id=session.participant_id,
        instruction_type=instruction_type(payment_pb2.PublishRateInstruction),
        source_currency=options.source,
        target_currency=options.target,
        rate=options.rate,
        valid_seconds=options.valid_seconds,
        fee_minor=parse_amount(options.fee, options.source),
    )
    response = await session.retrying.call(
        stub.PublishRate,
        payment_pb2.PublishRateRequest(instruction=session.sign(instruction)),
        label="publish rate",
        instruction_id=instruction_id,
    )
    session.output.table(
        ["pair", "rate", "valid until", "status"],
        [
            [
                f"{options.source}/{options.target}",
                options.rate,
                response.valid_until.ToJsonString(),
                commit_status(response.result),
            ]
        ],
    )
    return 0


COMMANDS: Final = {
    "publish-rate": Command(
        "publish-rate",
        "publish a signed FX rate for one currency pair",
        _rate_arguments,
        _publish,
        signs=True,
    )
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fx_provider",
        description="Reference client of an FX provider at the settlement hub. "
        "Exit status: 0 done, 1 refused by the hub, 2 usage error or no answer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub, DEFAULTS)
        add_output_arguments(sub)
        add_connection_arguments(sub, DEFAULTS.participant_id)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = build_parser().parse_args(argv)
    except SystemExit as exit_request:
        return 0 if exit_request.code in (0, None) else 2
    return asyncio.run(run(COMMANDS[options.command], options, DEFAULTS))


if __name__ == "__main__":
    sys.exit(main())
