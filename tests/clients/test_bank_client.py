"""The bank clients (clients/bank.py, us_bank.py, pk_bank.py).

- Retries: a fake PaymentService on loopback answers UNAVAILABLE (or lets the
  deadline pass) before OK; it must see the SAME signed request, hence the
  same idempotency key, on every attempt. Bounds of the backoff, the time
  budget, and no retry on a final status.
- Every command has its --help.
- End to end against the real hub (SQLite and PostgreSQL): participants
  registered and funded by the operator over gRPC, then ``balances --json``
  gives the exact figures, ``watch --movements`` streams them, refusals print
  the hub's error code and exit 1.
- The payment commands (quote, pay, status, watch, statement) against the
  real PaymentService; they skip while the server has none.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients import bank, common, pk_bank, us_bank
from ledger import canonical
from settlement.v1 import common_pb2, ledger_pb2, payment_pb2
from tests.clients.conftest import CALL_TIMEOUT_SECONDS, Operator, on_hub_loop

ROOT = Path(__file__).resolve().parents[2]

PAY_FLAGS = [
    "pay",
    "--creditor-agent",
    "bank-pk",
    "--amount",
    "100.00",
    "--debtor-name",
    "Acme Metals Inc",
    "--debtor-account-number",
    "123456789",
    "--debtor-routing-number",
    "021000021",
    "--debtor-country",
    "US",
    "--creditor-name",
    "Karachi Copper Ltd",
    "--creditor-iban",
    "PK36SCBL0000001123456702",
    "--creditor-country",
    "PK",
]


# --- A fake PaymentService ------------------------------------------------------------------


@dataclass
class FakePayments:
    """SubmitPayment fails as scripted, then answers OK; records what it received."""

    failures: list[grpc.StatusCode]
    stall_seconds: float = 0.0
    received: list[bytes] = field(default_factory=list)

    async def SubmitPayment(
        self, request: payment_pb2.SubmitPaymentRequest, context: Any
    ) -> payment_pb2.SubmitPaymentResponse:
        self.received.append(request.SerializeToString(deterministic=True))
        attempt = len(self.received)
        if attempt <= len(self.failures):
            code = self.failures[attempt - 1]
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                await asyncio.sleep(self.stall_seconds)  # the client's deadline passes first
            else:
                detail = common_pb2.Error(code="hub_busy", message="try again", fields=["x"])
                await context.abort(
                    code,
                    "hub_busy: try again",
                    trailing_metadata=(("settlement-error-bin", detail.SerializeToString()),),
                )
        document = canonical.decode(request.instruction.instruction)
        return payment_pb2.SubmitPaymentResponse(
            result=common_pb2.CommitResult(
                instruction_id=document["instruction_id"],
                status=common_pb2.COMMIT_STATUS_CREATED,
            ),
            payment=payment_pb2.Payment(
                uetr=document["uetr"],
                instruction_id=document["instruction_id"],
                status=payment_pb2.PAYMENT_STATUS_ACSC,
                send=common_pb2.Money(amount_minor=10000, currency="USD"),
            ),
        )


def instruction_ids(received: list[bytes]) -> list[str]:
    ids = []
    for raw in received:
        request = payment_pb2.SubmitPaymentRequest.FromString(raw)
        ids.append(canonical.decode(request.instruction.instruction)["instruction_id"])
    return ids


@dataclass
class Pauses:
    """An injected ``sleep``: records the pauses, waits for none of them."""

    seconds: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


TEST_POLICY = common.RetryPolicy(call_timeout_seconds=0.5, total_seconds_max=30.0)


async def run_against_fake(
    fake: FakePayments, argv: list[str], policy: common.RetryPolicy = TEST_POLICY
) -> tuple[int, str, Pauses]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "settlement.v1.PaymentService",
                {
                    "SubmitPayment": grpc.unary_unary_rpc_method_handler(
                        fake.SubmitPayment,
                        request_deserializer=payment_pb2.SubmitPaymentRequest.FromString,
                        response_serializer=payment_pb2.SubmitPaymentResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pauses = Pauses()
    out = io.StringIO()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            options = bank.build_parser(us_bank.DEFAULTS).parse_args(argv)
            session = bank.Session(
                defaults=us_bank.DEFAULTS,
                participant_id="bank-us",
                channel=channel,
                output=common.Output(json=True, out=out),
                retrying=common.Retrying(policy=policy, sleep=pauses),
                signing_key=Ed25519PrivateKey.generate(),
            )
            try:
                status = await bank.COMMANDS[options.command].run(session, options)
            except (grpc.RpcError, common.RetriesExhausted) as error:
                status = common.report_failure(error, session.output, "us_bank")
    finally:
        await server.stop(None)
    return status, out.getvalue(), pauses


def test_unavailable_twice_then_ok_sends_the_same_idempotency_key_three_times() -> None:
    fake = FakePayments([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE])
    status, out, pauses = asyncio.run(run_against_fake(fake, [*PAY_FLAGS, "--json"]))
    assert status == common.EXIT_OK
    assert len(fake.received) == 3
    ids = instruction_ids(fake.received)
    assert len(set(ids)) == 1
    assert ids[0].startswith("bank-us:")
    # Not only the key: the very same signed bytes, never re-signed.
    assert fake.received[0] == fake.received[1] == fake.received[2]
    document = json.loads(out)
    assert document["result"] == "CREATED"
    assert document["instruction_id"] == ids[0]
    assert len(pauses.seconds) == 2
    for retry, pause in enumerate(pauses.seconds):
        assert 0.0 <= pause <= TEST_POLICY.backoff_ceiling_seconds(retry)


def test_deadline_exceeded_is_retried_with_the_same_key() -> None:
    policy = common.RetryPolicy(call_timeout_seconds=0.2, total_seconds_max=30.0)
    fake = FakePayments([grpc.StatusCode.DEADLINE_EXCEEDED], stall_seconds=1.0)
    status, _, _ = asyncio.run(run_against_fake(fake, [*PAY_FLAGS, "--json"], policy))
    assert status == common.EXIT_OK
    assert len(fake.received) == 2
    assert fake.received[0] == fake.received[1]


def test_given_instruction_id_is_the_one_sent() -> None:
    fake = FakePayments([])
    key = "bank-us:resumed-after-an-unknown-outcome"
    uetr = str(uuid.uuid4())
    status, out, _ = asyncio.run(
        run_against_fake(fake, [*PAY_FLAGS, "--instruction-id", key, "--uetr", uetr, "--json"])
    )
    assert status == common.EXIT_OK
    assert instruction_ids(fake.received) == [key]
    assert json.loads(out)["uetr"] == uetr


def test_attempts_are_bounded_and_the_outcome_is_reported_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakePayments([grpc.StatusCode.UNAVAILABLE] * 10)
    status, out, pauses = asyncio.run(run_against_fake(fake, [*PAY_FLAGS, "--json"]))
    assert status == common.EXIT_USAGE
    assert len(fake.received) == common.RETRY_ATTEMPTS_MAX
    assert len(set(fake.received)) == 1
    assert len(pauses.seconds) == common.RETRY_ATTEMPTS_MAX - 1
    error = json.loads(out)["error"]
    assert error["unknown_outcome"] is True
    assert error["instruction_id"] == instruction_ids(fake.received)[0]
    assert error["code"] == "hub_busy"
    stderr = capsys.readouterr().err
    assert "the outcome is unknown" in stderr
    assert f"--instruction-id {error['instruction_id']}" in stderr
    assert "--uetr" in stderr


def test_a_final_status_is_not_retried_and_its_error_detail_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakePayments([grpc.StatusCode.FAILED_PRECONDITION])
    status, out, pauses = asyncio.run(run_against_fake(fake, [*PAY_FLAGS, "--json"]))
    assert status == common.EXIT_REFUSED
    assert len(fake.received) == 1
    assert pauses.seconds == []
    assert json.loads(out)["error"] == {
        "status": "FAILED_PRECONDITION",
        "code": "hub_busy",
        "message": "try again",
        "fields": ["x"],
    }
    assert "FAILED_PRECONDITION hub_busy: try again (fields: x)" in capsys.readouterr().err


def test_backoff_is_exponential_capped_and_within_the_time_budget() -> None:
    policy = common.RetryPolicy()
    ceilings = [policy.backoff_ceiling_seconds(retry) for retry in range(8)]
    assert ceilings[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(ceilings) == common.RETRY_BACKOFF_MAX_SECONDS

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    attempts: list[float] = []

    async def attempt(timeout: float) -> None:
        attempts.append(timeout)
        clock.now += timeout  # every attempt runs into its deadline
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata()
        )

    retrying = common.Retrying(policy=common.RetryPolicy(), sleep=sleep, clock=clock)
    with pytest.raises(common.RetriesExhausted) as raised:
        asyncio.run(retrying.run(attempt, label="test"))
    assert 1 <= raised.value.attempts <= common.RETRY_ATTEMPTS_MAX
    assert clock.now <= common.RETRY_TOTAL_SECONDS_MAX + common.CALL_TIMEOUT_SECONDS
    assert all(timeout <= common.CALL_TIMEOUT_SECONDS for timeout in attempts)


def test_amounts_parse_and_print_exactly() -> None:
    assert common.parse_amount("1,250.00", "USD") == 125000
    assert common.parse_amount("0.01", "PKR") == 1
    assert common.format_minor(125000, "USD") == "1,250.00"
    assert common.format_minor(-5, "PKR") == "-0.05"
    with pytest.raises(common.ClientError, match="at most 2 decimals"):
        common.parse_amount("1.005", "USD")
    with pytest.raises(common.ClientError, match=r"like 1250\.00"):
        common.parse_amount("ten", "USD")


# --- --help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("client", [us_bank, pk_bank])
@pytest.mark.parametrize("command", sorted(bank.COMMANDS))
def test_every_command_has_help(
    client: Any, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"{client.DEFAULTS.program} {command}" in text
    assert "--server" in text
    assert "--json" in text


def test_defaults_differ_only_in_participant_and_currency() -> None:
    assert (us_bank.DEFAULTS.participant_id, us_bank.DEFAULTS.home_currency) == ("bank-us", "USD")
    assert (pk_bank.DEFAULTS.participant_id, pk_bank.DEFAULTS.home_currency) == ("bank-pk", "PKR")


def test_commands_register_through_the_extension_point() -> None:
    async def run(session: bank.Session, options: Any) -> int:
        return 0

    command = bank.Command("offtake-example", "an example", lambda parser, defaults: None, run)
    bank.register_command(command)
    try:
        parser = bank.build_parser(us_bank.DEFAULTS)
        assert parser.parse_args(["offtake-example"]).command == "offtake-example"
        with pytest.raises(ValueError, match="twice"):
            bank.register_command(command)
    finally:
        del bank.COMMANDS["offtake-example"]


# --- End to end against the real hub ----------------------------------------------------------


def cli(
    client: Any, operator: Operator, *arguments: str
) -> Callable[[pytest.CaptureFixture[str]], tuple[int, str, str]]:
    """The client's command line, on the hub's event loop (see ``on_hub_loop``)."""

    def run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        argv = [
            *arguments,
            "--pki",
            str(operator.pki.directory),
            "--server",
            operator.server.address,
        ]
        status = on_hub_loop(operator.server, bank.main_async(client.DEFAULTS, argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def test_balances_json_shows_exact_figures(
    fresh_operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    operator = fresh_operator
    operator.fund("settlement:bank-us:USD", 125_000_000, "USD")
    operator.fund("settlement:bank-us:USD", 1, "USD")
    operator.defund("settlement:bank-us:USD", 25_000, "USD")
    operator.fund("settlement:bank-us:PKR", 9_007_199_254_740_993, "PKR")
    status, out, err = cli(us_bank, operator, "balances", "--json")(capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["participant_id"] == "bank-us"
    accounts = {account["account_id"]: account for account in document["accounts"]}
    assert set(accounts) == {"settlement:bank-us:PKR", "settlement:bank-us:USD"}
    usd = accounts["settlement:bank-us:USD"]
    assert usd == {
        "account_id": "settlement:bank-us:USD",
        "currency": "USD",
        "status": "OPEN",
        "normal_side": "CREDIT",
        "credits_posted_minor": 125_000_001,
        "debits_posted_minor": 25_000,
        "credits_pending_minor": 0,
        "debits_pending_minor": 0,
        "net_minor": 124_975_001,
        "debit_limit_minor": 0,
        "available_minor": 124_975_001,
        "as_of_index": usd["as_of_index"],
    }
    assert accounts["settlement:bank-us:PKR"]["net_minor"] == 9_007_199_254_740_993
    # The other bank sees its own accounts only.
    status, out, _ = cli(pk_bank, operator, "balances", "--json", "--currency", "PKR")(capsys)
    assert status == 0
    (pkr,) = json.loads(out)["accounts"]
    assert (pkr["account_id"], pkr["net_minor"]) == ("settlement:bank-pk:PKR", 0)


def test_balances_table_in_a_fresh_process(operator: Operator) -> None:
    """What a person runs: ``python -m clients.us_bank balances``."""
    operator.fund("settlement:bank-us:USD", 1_234_567_89, "USD")
    balance = (
        operator.ledger()
        .GetBalance(
            ledger_pb2.GetBalanceRequest(account_id="settlement:bank-us:USD"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        .balance
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.us_bank",
            "balances",
            "--pki",
            str(operator.pki.directory),
            "--server",
            operator.server.address,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    header, rule, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["account", "currency", "status"]
    assert set(rule.replace(" ", "")) == {"-"}
    usd = next(row for row in rows if row.startswith("settlement:bank-us:USD"))
    net = balance.credits_posted_minor - balance.debits_posted_minor
    assert usd.split()[-2:] == [common.format_minor(net, "USD")] * 2  # net, available


def test_watch_movements_streams_own_postings(
    fresh_operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    operator = fresh_operator
    operator.fund("settlement:bank-us:USD", 500, "USD")
    operator.fund("settlement:bank-pk:PKR", 700, "PKR")
    operator.fund("settlement:bank-us:PKR", 900, "PKR")
    status, out, err = cli(
        us_bank, operator, "watch", "--movements", "--from-index", "0", "--stop-at-end", "--json"
    )(capsys)
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(event["account_id"], event["side"], event["amount_minor"]) for event in events] == [
        ("settlement:bank-us:USD", "CREDIT", 500),
        ("settlement:bank-us:PKR", "CREDIT", 900),
    ]
    assert all(event["code"] == "FUND" for event in events)


def test_refusal_prints_the_hubs_code_and_exits_1(
    operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(us_bank, operator, "balances", "--as-of-index", "999999", "--json")(
        capsys
    )
    assert status == common.EXIT_REFUSED
    assert json.loads(out)["error"]["code"] == "index_must_be_committed"
    assert "FAILED_PRECONDITION index_must_be_committed" in err


def test_missing_identity_is_a_usage_error(
    operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    status = on_hub_loop(
        operator.server,
        bank.main_async(us_bank.DEFAULTS, ["balances", "--server", operator.server.address]),
    )
    assert status == common.EXIT_USAGE
    assert "expected --pki DIR or --ca-certificate FILE" in capsys.readouterr().err


# --- Payments (PaymentService) ----------------------------------------------------------------


def iban_pk(bank_code: str, account: str) -> str:
    """A Pakistani IBAN (24 characters) with ISO 7064 MOD 97-10 check digits."""
    bban = f"{bank_code}{account:0>16}"
    digits = "".join(str(int(character, 36)) for character in f"{bban}PK00")
    return f"PK{98 - int(digits) % 97:02d}{bban}"


@pytest.fixture
def payments(operator: Operator) -> Operator:
    if not operator.payment_service_available():
        pytest.skip("PaymentService is not served yet (settlement.services has no servicer)")
    operator.fund("settlement:bank-us:USD", 10_000_000, "USD")
    operator.fund("settlement:fx-provider:PKR", 10_000_000_000, "PKR")
    operator.fund("settlement:fx-provider:USD", 10_000_000, "USD")
    operator.publish_rate("USD", "PKR", "278.4500")
    return operator


def pay_arguments(operator: Operator, *extra: str) -> list[str]:
    bank_us = operator.pki.participant("bank-us")
    return [
        "pay",
        "--creditor-agent",
        "bank-pk",
        "--debtor-name",
        "Acme Metals Inc",
        "--debtor-account-number",
        "123456789",
        "--debtor-routing-number",
        bank_us.aba_routing_number,
        "--debtor-country",
        "US",
        "--creditor-name",
        "Karachi Copper Ltd",
        "--creditor-iban",
        iban_pk("HABB", "1123456702"),
        "--creditor-country",
        "PK",
        "--remittance-information",
        "INV-2024-001",
        *extra,
    ]


def test_quote_pay_status_and_balances(
    payments: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(pk_bank, payments, "balances", "--json", "--currency", "PKR")(capsys)
    assert status == 0, err
    (before,) = json.loads(out)["accounts"]
    status, out, err = cli(us_bank, payments, "quote", "--send", "1000.00", "--json")(capsys)
    assert status == 0, err
    quote = json.loads(out)
    assert quote["result"] == "CREATED"
    assert quote["rate"] == "278.4500"
    assert quote["send"] == {"amount_minor": 100_000, "currency": "USD"}
    assert quote["receive"] == {"amount_minor": 27_845_000, "currency": "PKR"}

    uetr = str(uuid.uuid4())
    arguments = pay_arguments(payments, "--quote-id", quote["quote_id"], "--uetr", uetr, "--json")
    status, out, err = cli(us_bank, payments, *arguments)(capsys)
    assert status == 0, err
    paid = json.loads(out)
    assert (paid["result"], paid["uetr"], paid["status"]) == ("CREATED", uetr, "ACSC")
    # The same run again, with its instruction id: answered, not applied twice.
    again = [*arguments, "--instruction-id", paid["instruction_id"]]
    status, out, err = cli(us_bank, payments, *again)(capsys)
    assert status == 0, err
    assert json.loads(out)["result"] == "ALREADY_EXISTED"

    status, out, err = cli(pk_bank, payments, "status", "--uetr", uetr, "--json")(capsys)
    assert status == 0, err
    seen = json.loads(out)
    assert seen["status"] == "ACSC"
    assert seen["history"][-1]["status"] == "ACSC"

    status, out, err = cli(pk_bank, payments, "balances", "--json", "--currency", "PKR")(capsys)
    assert status == 0, err
    (after,) = json.loads(out)["accounts"]
    assert after["net_minor"] - before["net_minor"] == 27_845_000
    assert after["credits_posted_minor"] - before["credits_posted_minor"] == 27_845_000


def test_statement_writes_camt053(
    payments: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(us_bank, payments, *pay_arguments(payments, "--amount", "12.34"))(capsys)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    target = tmp_path / "statement.xml"
    status, out, err = cli(
        us_bank,
        payments,
        "statement",
        "--from",
        today,
        "--to",
        today,
        "--out",
        str(target),
        "--json",
    )(capsys)
    assert status == 0, err
    written = json.loads(out)
    assert written["account_id"] == "settlement:bank-us:USD"
    content = target.read_bytes()
    assert written["bytes"] == len(content)
    assert b"urn:iso:std:iso:20022:tech:xsd:camt.053.001.08" in content
    status, _, err = cli(
        us_bank, payments, "statement", "--from", today, "--to", today, "--out", str(target)
    )(capsys)
    assert status == common.EXIT_USAGE
    assert "--force" in err


def test_watch_sees_a_payment_settle(payments: Operator) -> None:
    """The creditor's bank watches; the debtor's bank pays; every status change arrives."""
    uetr = str(uuid.uuid4())

    async def scenario() -> tuple[int, str]:
        credentials = payments.pki.channel_credentials("bank-pk")
        out = io.StringIO()
        async with grpc.aio.secure_channel(payments.server.address, credentials) as channel:
            session = bank.Session(
                defaults=pk_bank.DEFAULTS,
                participant_id="bank-pk",
                channel=channel,
                output=common.Output(json=True, out=out),
            )
            options = bank.build_parser(pk_bank.DEFAULTS).parse_args(
                ["watch", "--uetr", uetr, "--count", "3", "--json"]
            )
            watching = asyncio.create_task(bank.run_watch(session, options))
            await asyncio.sleep(0.5)  # the stream is "from now on": subscribe first
            pay = [
                *pay_arguments(payments, "--amount", "5.00", "--currency", "USD"),
                "--uetr",
                uetr,
                "--pki",
                str(payments.pki.directory),
                "--server",
                payments.server.address,
            ]
            assert await bank.main_async(us_bank.DEFAULTS, pay) == 0
            return await asyncio.wait_for(watching, 30), out.getvalue()

    status, out = on_hub_loop(payments.server, scenario())
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["uetr"] for event in events] == [uetr] * 3
    assert [event["status"] for event in events] == ["ACTC", "ACSP", "ACSC"]
