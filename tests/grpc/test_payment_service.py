"""PaymentService over mutual TLS, on SQLite and on PostgreSQL (payment.proto).

One hub per backend for the whole module (``payment_hub``): the demo
participants are registered and funded once (bank-us in USD, bank-pk in PKR
and USD, the FX provider's USD and PKR liquidity); each test publishes its
own rates and requests its own quotes, and checks balances as differences, so
the tests do not depend on each other's order.

The hub's clock is the test's (:class:`TestClock`): it runs with the wall
clock, and a test may freeze it at an exact microsecond (quote expiry at the
exact instant) or move it forward (a held payment's reservation expiring
after 24 h). It never runs backwards, as the ledger requires.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from google.protobuf.message import Message

from ledger.export import export_bundle
from ledger.records import AccountStatus
from ledger.store import system_clock_us
from ledger.verify import verify_bundle
from settlement.iso20022.schemas import MessageName, validate
from settlement.pki import DevPki, aba_with_check_digit, lei_with_check_digits
from settlement.v1 import audit_pb2, common_pb2, payment_pb2, payment_pb2_grpc
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    DENIED,
    EXISTS,
    INVALID,
    NOT_FOUND,
    OPERATOR,
    PRECONDITION,
    UNAUTHENTICATED,
    HubClient,
    refusal,
    running_hub,
    transaction,
    transfer_postings,
    type_name,
)

US = "bank-us"
PK = "bank-pk"
FX = "fx-provider"
RATE = "278.4500"
FEE_MINOR = 2500
"""USD 25.00 per quote."""

US_FUNDS_MINOR = 100_000_000
"""USD 1,000,000.00 in bank-us's settlement account."""
FX_USD_MINOR = 10_000_000
FX_PKR_MINOR = 10_000_000_000
"""PKR 100,000,000.00 of liquidity: about USD 359,000 at the test rate."""
PK_USD_MINOR = 1_000_000

DEBTOR_US: dict[str, Any] = {
    "name": "Acme Mining Supplies Inc",
    "account_number": "000123456789",
    "aba_routing_number": aba_with_check_digit("02100002"),
    "country": "US",
    "lei": "",
    "address_lines": ["1 Liberty Street", "New York NY 10005"],
}
CREDITOR_PK: dict[str, Any] = {
    "name": "Karachi Textile Mills Limited",
    "iban": "PK36SCBL0000001123456702",
    "country": "PK",
}

SDN_NAME = "BANCO NACIONAL DE CUBA"
"""A primary name on OFAC's SDN list (CUBA program)."""
SDN_VARIANT = "Muhammad Turki Habib"
"""A transliteration of the listed "HABIB, Mohammed Turki" (scores 0.93)."""
NEAR_MISSES = ("HABIB BANK LIMITED", "Karachi Electric Supply Company")
"""Ordinary Pakistani names close to listed ones ("HUALI BANK", "KALA ELECTRIC
COMPANY") that must NOT hit: false positives the threshold keeps out."""


# -- the hub's clock ------------------------------------------------------------------------


class TestClock:
    """The hub's clock: the wall clock plus an offset, or frozen; never backwards."""

    __test__ = False

    def __init__(self) -> None:
        self.offset_us = 0
        self.frozen_us: int | None = None
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            if self.frozen_us is not None:
                return self.frozen_us
            return system_clock_us() + self.offset_us

    def freeze(self, at_us: int) -> None:
        with self.lock:
            current = (
                self.frozen_us
                if self.frozen_us is not None
                else (system_clock_us() + self.offset_us)
            )
            assert at_us >= current, "the clock never runs backwards"
            self.frozen_us = at_us

    def run(self) -> None:
        """Run on from where it stands."""
        with self.lock:
            if self.frozen_us is not None:
                self.offset_us = self.frozen_us - system_clock_us()
                self.frozen_us = None

    def advance(self, seconds: float) -> None:
        with self.lock:
            if self.frozen_us is not None:
                self.frozen_us += int(seconds * 1_000_000)
            else:
                self.offset_us += int(seconds * 1_000_000)


@dataclasses.dataclass
class PaymentHub:
    """The module's hub with payment shortcuts."""

    client: HubClient
    clock: TestClock

    def payments(self, who: str) -> payment_pb2_grpc.PaymentServiceStub:
        return payment_pb2_grpc.PaymentServiceStub(self.client.channel(who))

    def sign(self, message: Message) -> common_pb2.SignedInstruction:
        return self.client.sign(message)

    def balance(self, account_id: str) -> tuple[int, int, int, int]:
        return self.client.balance(account_id)

    def publish_rate(self, rate: str = RATE, **fields: Any) -> payment_pb2.PublishRateResponse:
        instruction = rate_instruction(rate=rate, **fields)
        return self.payments(FX).PublishRate(
            payment_pb2.PublishRateRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def quote(self, who: str = US, **fields: Any) -> payment_pb2.Quote:
        instruction = quote_instruction(who, **fields)
        response = self.payments(who).RequestQuote(
            payment_pb2.RequestQuoteRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return response.quote

    def submit(
        self, instruction: payment_pb2.PaymentInstruction
    ) -> payment_pb2.SubmitPaymentResponse:
        return self.payments(instruction.participant_id).SubmitPayment(
            payment_pb2.SubmitPaymentRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def pay(self, who: str = US, **fields: Any) -> payment_pb2.Payment:
        """Publish a rate, quote, submit: the payment as answered."""
        self.publish_rate()
        quote_fields = {
            key: fields.pop(key) for key in ("amount_minor", "fixed_side") if key in fields
        }
        quote = self.quote(who, **quote_fields)
        return self.submit(payment_instruction(who, quote_id=quote.quote_id, **fields)).payment

    def review(
        self, uetr: str, decision: Any, reason: str = "", **fields: Any
    ) -> payment_pb2.ReviewPaymentResponse:
        instruction = review_instruction(uetr, decision, reason, **fields)
        return self.payments(OPERATOR).ReviewPayment(
            payment_pb2.ReviewPaymentRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def get(self, uetr: str, who: str = OPERATOR) -> payment_pb2.Payment:
        return (
            self.payments(who)
            .GetPayment(payment_pb2.GetPaymentRequest(uetr=uetr), timeout=CALL_TIMEOUT_SECONDS)
            .payment
        )

    def message(self, uetr: str, message_type: Any, who: str = US) -> bytes:
        return bytes(
            self.payments(who)
            .GetPaymentMessage(
                payment_pb2.GetPaymentMessageRequest(uetr=uetr, message_type=message_type),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .xml
        )

    def statement(
        self, account_id: str, day: str, statement_format: Any, who: str = OPERATOR
    ) -> bytes:
        return bytes(
            self.payments(who)
            .GetAccountStatement(
                payment_pb2.GetAccountStatementRequest(
                    account_id=account_id, from_date=day, to_date=day, format=statement_format
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .xml
        )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def payment_hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[PaymentHub]:
    """One hub per backend for the module: accounts opened and funded, a test clock."""
    with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
        clock = TestClock()
        client.server.hub.ledger.clock = clock
        for owner, currency, amount in (
            (US, "USD", US_FUNDS_MINOR),
            (PK, "PKR", 0),
            (PK, "USD", PK_USD_MINOR),
            (FX, "USD", FX_USD_MINOR),
            (FX, "PKR", FX_PKR_MINOR),
        ):
            account_id = client.open_account(owner, currency)
            if amount:
                client.fund(account_id, amount, currency)
        yield PaymentHub(client, clock)


# -- instructions ---------------------------------------------------------------------------------


def new_id(who: str) -> str:
    return f"{who}:{uuid.uuid4()}"


def new_uetr() -> str:
    return str(uuid.uuid4())


def rate_instruction(**fields: Any) -> payment_pb2.PublishRateInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(FX),
        "participant_id": FX,
        "instruction_type": type_name(payment_pb2.PublishRateInstruction),
        "source_currency": "USD",
        "target_currency": "PKR",
        "rate": RATE,
        "valid_seconds": 3600,
        "fee_minor": FEE_MINOR,
    }
    values.update(fields)
    return payment_pb2.PublishRateInstruction(**values)


def quote_instruction(who: str = US, **fields: Any) -> payment_pb2.RequestQuoteInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(payment_pb2.RequestQuoteInstruction),
        "fx_provider_id": FX,
        "source_currency": "USD",
        "target_currency": "PKR",
        "fixed_side": payment_pb2.FIXED_SIDE_SEND,
        "amount_minor": 500_000,
    }
    values.update(fields)
    return payment_pb2.RequestQuoteInstruction(**values)


def payment_instruction(who: str = US, **fields: Any) -> payment_pb2.PaymentInstruction:
    """A valid payment from a US company to a Pakistani one; ``fields`` override any field."""
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(payment_pb2.PaymentInstruction),
        "uetr": new_uetr(),
        "end_to_end_id": "INV-2026-0042",
        "debtor": payment_pb2.Party(**DEBTOR_US),
        "creditor": payment_pb2.Party(**CREDITOR_PK),
        "creditor_agent_id": PK,
        "remittance_information": "Invoice 2026-0042, copper concentrate lot 7",
        "charge_bearer": payment_pb2.CHARGE_BEARER_DEBT,
    }
    values.update(fields)
    return payment_pb2.PaymentInstruction(**values)


def review_instruction(
    uetr: str, decision: Any, reason: str = "", **fields: Any
) -> payment_pb2.ReviewPaymentInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(OPERATOR),
        "participant_id": OPERATOR,
        "instruction_type": type_name(payment_pb2.ReviewPaymentInstruction),
        "uetr": uetr,
        "decision": decision,
        "reason": reason,
    }
    values.update(fields)
    return payment_pb2.ReviewPaymentInstruction(**values)


def settlement_account(owner: str, currency: str) -> str:
    return f"settlement:{owner}:{currency}"


ACCOUNTS = (
    settlement_account(US, "USD"),
    settlement_account(FX, "USD"),
    settlement_account(FX, "PKR"),
    settlement_account(PK, "PKR"),
    "fees:USD",
)


def balances(hub: PaymentHub) -> dict[str, tuple[int, int, int, int]]:
    """(debits posted, credits posted, debits pending, credits pending) of the PvP accounts."""
    found = {}
    for account_id in ACCOUNTS:
        try:
            found[account_id] = hub.balance(account_id)
        except grpc.RpcError:
            found[account_id] = (0, 0, 0, 0)
    return found


def moved(
    before: dict[str, tuple[int, int, int, int]], after: dict[str, tuple[int, int, int, int]]
) -> dict[str, tuple[int, int, int, int]]:
    """Per account, how each of the four totals changed (accounts that did not move omitted)."""
    changes = {}
    for account_id, totals in after.items():
        delta = tuple(now - then for now, then in zip(totals, before[account_id], strict=True))
        if any(delta):
            changes[account_id] = (delta[0], delta[1], delta[2], delta[3])
    return changes


def statuses(payment: payment_pb2.Payment) -> list[tuple[str, str]]:
    return [
        (
            payment_pb2.PaymentStatus.Name(change.status).removeprefix("PAYMENT_STATUS_"),
            change.reason_code,
        )
        for change in payment.history
    ]


def status_name(payment: payment_pb2.Payment) -> str:
    return payment_pb2.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_")


def day_of(timestamp: Any) -> str:
    return datetime.fromtimestamp(timestamp.seconds, UTC).date().isoformat()


def require_valid(name: MessageName, xml: bytes) -> ET.Element:
    """Parse and validate a document against its official XSD, independently of the builder."""
    root: ET.Element = parse_xml(xml, forbid_dtd=True)
    assert validate(name, root) == ()
    return root


# -- the whole lifecycle --------------------------------------------------------------------


def test_usd_to_pkr_from_quote_to_acsc(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    published = hub.publish_rate()
    assert published.result.status == common_pb2.COMMIT_STATUS_CREATED
    quote = hub.quote(amount_minor=500_000)
    assert (quote.send.amount_minor, quote.send.currency) == (500_000, "USD")
    assert (quote.receive.amount_minor, quote.receive.currency) == (139_225_000, "PKR")
    assert (quote.fee.amount_minor, quote.rate) == (FEE_MINOR, RATE)
    assert quote.expires_at.seconds - quote.issued_at.seconds == 600
    before = balances(hub)

    instruction = payment_instruction(quote_id=quote.quote_id)
    response = hub.submit(instruction)

    payment = response.payment
    assert response.result.status == common_pb2.COMMIT_STATUS_CREATED
    assert status_name(payment) == "ACSC"
    assert statuses(payment) == [("ACTC", ""), ("ACSP", ""), ("ACSC", "")]
    assert payment.transaction_id == f"payment:{instruction.uetr}"
    assert list(payment.reporting_flags) == ["us_travel_rule"]
    assert (payment.screening_score, payment.screening_match) == ("", "")
    assert moved(before, balances(hub)) == {
        settlement_account(US, "USD"): (502_500, 0, 0, 0),
        settlement_account(FX, "USD"): (0, 500_000, 0, 0),
        settlement_account(FX, "PKR"): (139_225_000, 0, 0, 0),
        settlement_account(PK, "PKR"): (0, 139_225_000, 0, 0),
        "fees:USD": (0, FEE_MINOR, 0, 0),
    }
    # The quote is used by this payment, and only by it.
    assert hub.get(instruction.uetr, PK).quote_id == quote.quote_id


def test_lifecycle_is_visible_to_both_agents_and_streamed(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    instruction = payment_instruction(quote_id=quote.quote_id)
    with (
        Watcher(hub.payments(PK)) as creditor_side,
        Watcher(hub.payments(US), instruction.uetr) as debtor_side,
        Watcher(hub.payments("lender")) as stranger,
        Watcher(hub.payments("auditor")) as auditor,
    ):
        payment = hub.submit(instruction).payment
        for watcher in (creditor_side, debtor_side, auditor):
            assert watcher.statuses_of(instruction.uetr, 3) == ["ACTC", "ACSP", "ACSC"]
        assert stranger.statuses_of(instruction.uetr, 0) == []
    for who in (US, PK, FX, OPERATOR, "auditor"):
        assert hub.get(instruction.uetr, who) == payment
    code, detail = refusal(lambda: hub.get(instruction.uetr, "lender"))
    assert (code, detail.code) == (NOT_FOUND, "payment_must_exist")
    code, detail = refusal(lambda: hub.get(new_uetr(), US))
    assert (code, detail.code) == (NOT_FOUND, "payment_must_exist")
    code, detail = refusal(lambda: hub.get("not-a-uetr", US))
    assert (code, detail.code) == (INVALID, "uetr_must_be_uuid4")


def test_every_status_change_is_a_signed_journal_event(payment_hub: PaymentHub) -> None:
    """The auditor rebuilds the history from the leaves alone; the bank's signature is in it."""
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    instruction = payment_instruction(quote_id=quote.quote_id)
    signed = hub.sign(instruction)
    payment = (
        hub.payments(US)
        .SubmitPayment(payment_pb2.SubmitPaymentRequest(instruction=signed), timeout=30)
        .payment
    )
    audit = hub.client.audit("auditor")
    rebuilt = []
    for change in payment.history:
        leaf = audit.GetLeaf(
            audit_pb2.GetLeafRequest(leaf_index=change.receipt.journal_index), timeout=30
        ).leaf
        document = json.loads(leaf)
        assert document["kind"] == "event"
        assert document["body"]["uetr"] == instruction.uetr
        rebuilt.append((document["id"], document["body"]["status"], document.get("instruction")))
    # The event that records the bank's instruction carries its id; the hub's own are numbered.
    assert [(entry_id, status) for entry_id, status, _ in rebuilt] == [
        (instruction.instruction_id, "ACTC"),
        (f"payment:{instruction.uetr}:status:1", "ACSP"),
        (f"payment:{instruction.uetr}:status:2", "ACSC"),
    ]
    signed_by_bank = rebuilt[0][2]
    assert signed_by_bank["signer"] == US
    assert base64.b64decode(signed_by_bank["payload"]) == signed.instruction
    assert base64.b64decode(signed_by_bank["signature"]) == signed.signature


def test_same_currency_payment_settles_in_one_leg(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    accounts = (settlement_account(US, "USD"), settlement_account(PK, "USD"))
    before = [hub.balance(account_id) for account_id in accounts]
    instruction = payment_instruction(
        amount=common_pb2.Money(amount_minor=1_200_001, currency="USD"),
        creditor=payment_pb2.Party(**{**CREDITOR_PK, "name": "Lahore Copper Works"}),
    )
    payment = hub.submit(instruction).payment
    assert status_name(payment) == "ACSC"
    assert (payment.send.amount_minor, payment.receive.amount_minor) == (1_200_001, 1_200_001)
    assert (payment.fx_provider_id, payment.quote_id, payment.rate) == ("", "", "")
    assert payment.fee.amount_minor == 0
    assert list(payment.reporting_flags) == ["us_travel_rule", "us_ctr"]
    after = [hub.balance(account_id) for account_id in accounts]
    assert after[0][0] - before[0][0] == 1_200_001
    assert after[1][1] - before[1][1] == 1_200_001
    assert [after[0][1:], after[1][0:1]] == [before[0][1:], before[1][0:1]]


def test_receive_fixed_quote_settles_the_quoted_amounts(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote(fixed_side=payment_pb2.FIXED_SIDE_RECEIVE, amount_minor=278_450_001)
    # send = round_half_even(2,784,500.01 PKR / 278.45) = 10,000.00003... USD -> 1,000,000 cents
    assert (quote.send.amount_minor, quote.receive.amount_minor) == (1_000_000, 278_450_001)
    payment = hub.submit(payment_instruction(quote_id=quote.quote_id)).payment
    assert (payment.send.amount_minor, payment.receive.amount_minor) == (1_000_000, 278_450_001)
    assert list(payment.reporting_flags) == ["us_travel_rule", "pk_ctr"]


# -- funds, liquidity and accounts ------------------------------------------------------------


def test_insufficient_funds_is_rejected_am04_with_nothing_moved(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate(rate="2.5")  # keeps the FX provider's PKR liquidity out of the question
    quote = hub.quote(amount_minor=US_FUNDS_MINOR * 2)
    before = balances(hub)
    instruction = payment_instruction(quote_id=quote.quote_id)
    response = hub.submit(instruction)
    payment = response.payment
    assert response.result.status == common_pb2.COMMIT_STATUS_CREATED
    assert statuses(payment) == [("ACTC", ""), ("RJCT", "AM04")]
    assert settlement_account(US, "USD") in payment.history[-1].reason
    assert payment.transaction_id == ""
    assert moved(before, balances(hub)) == {}
    # The quote went with the rejected payment.
    code, detail = refusal(lambda: hub.submit(payment_instruction(quote_id=quote.quote_id)))
    assert (code, detail.code) == (PRECONDITION, "quote_used")


def test_pvp_fx_provider_without_liquidity_leaves_both_legs_untouched(
    payment_hub: PaymentHub,
) -> None:
    hub = payment_hub
    hub.publish_rate()
    # USD 500,000.00 -> PKR 139,225,000.00, more than the provider's PKR 100,000,000.00;
    # the bank has the dollars.
    quote = hub.quote(amount_minor=50_000_000)
    before = balances(hub)
    payment = hub.submit(payment_instruction(quote_id=quote.quote_id)).payment
    assert statuses(payment) == [("ACTC", ""), ("RJCT", "AM04")]
    assert settlement_account(FX, "PKR") in payment.history[-1].reason
    assert moved(before, balances(hub)) == {}


def test_creditor_agent_without_an_account_in_the_currency_is_rejected_ac01(
    payment_hub: PaymentHub,
) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    before = balances(hub)
    payment = hub.submit(payment_instruction(quote_id=quote.quote_id, creditor_agent_id=US)).payment
    assert statuses(payment) == [("ACTC", ""), ("RJCT", "AC01")]
    assert "settlement:bank-us:PKR" in payment.history[-1].reason
    assert moved(before, balances(hub)) == {}


def test_frozen_creditor_account_is_rejected_ac01(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    account_id = settlement_account(PK, "USD")
    hub.client.freeze(account_id)
    try:
        payment = hub.submit(
            payment_instruction(amount=common_pb2.Money(amount_minor=10_000, currency="USD"))
        ).payment
    finally:
        hub.client.set_status(account_id, AccountStatus.OPEN)
    assert statuses(payment) == [("ACTC", ""), ("RJCT", "AC01")]


# -- screening and review -------------------------------------------------------------------------


def test_sdn_creditor_is_held_then_released_by_the_operator(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    before = balances(hub)
    instruction = payment_instruction(
        quote_id=quote.quote_id,
        creditor=payment_pb2.Party(**{**CREDITOR_PK, "name": SDN_NAME}),
    )
    held = hub.submit(instruction).payment
    assert statuses(held) == [("ACTC", ""), ("PDNG", "RR04")]
    assert (held.screening_score, held.screening_match) == ("1.0000", SDN_NAME)
    assert SDN_NAME in held.history[-1].reason
    # Reserved, not moved: the debtor agent's funds and the provider's liquidity.
    assert moved(before, balances(hub)) == {
        settlement_account(US, "USD"): (0, 0, 502_500, 0),
        settlement_account(FX, "USD"): (0, 0, 0, 500_000),
        settlement_account(FX, "PKR"): (0, 0, 139_225_000, 0),
        settlement_account(PK, "PKR"): (0, 0, 0, 139_225_000),
        "fees:USD": (0, 0, 0, FEE_MINOR),
    }
    review = review_instruction(
        instruction.uetr, payment_pb2.REVIEW_DECISION_RELEASE, "name match cleared: a bank"
    )
    signed = hub.sign(review)
    released = hub.payments(OPERATOR).ReviewPayment(
        payment_pb2.ReviewPaymentRequest(instruction=signed), timeout=30
    )
    assert released.result.status == common_pb2.COMMIT_STATUS_CREATED
    assert statuses(released.payment) == [("ACTC", ""), ("PDNG", "RR04"), ("ACSC", "")]
    assert "name match cleared" in released.payment.history[-1].reason
    assert moved(before, balances(hub)) == {
        settlement_account(US, "USD"): (502_500, 0, 0, 0),
        settlement_account(FX, "USD"): (0, 500_000, 0, 0),
        settlement_account(FX, "PKR"): (139_225_000, 0, 0, 0),
        settlement_account(PK, "PKR"): (0, 139_225_000, 0, 0),
        "fees:USD": (0, FEE_MINOR, 0, 0),
    }
    # The same review again: its original answer; another review: not held any more.
    again = hub.payments(OPERATOR).ReviewPayment(
        payment_pb2.ReviewPaymentRequest(instruction=signed), timeout=30
    )
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert again.result.receipt == released.result.receipt
    code, detail = refusal(lambda: hub.review(instruction.uetr, payment_pb2.REVIEW_DECISION_REJECT))
    assert (code, detail.code) == (PRECONDITION, "payment_must_be_held")


@pytest.mark.parametrize(
    "parties",
    [
        {"debtor": payment_pb2.Party(**{**DEBTOR_US, "name": SDN_VARIANT})},
        {"ultimate_creditor": payment_pb2.Party(name=SDN_NAME, country="CU")},
    ],
    ids=["debtor-transliterated", "ultimate-creditor"],
)
def test_sdn_party_is_held_then_rejected_rr04_releasing_the_reservation(
    payment_hub: PaymentHub, parties: dict[str, Any]
) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    before = balances(hub)
    instruction = payment_instruction(quote_id=quote.quote_id, **parties)
    held = hub.submit(instruction).payment
    assert statuses(held) == [("ACTC", ""), ("PDNG", "RR04")]
    assert float(held.screening_score) >= 0.9
    rejected = hub.review(
        instruction.uetr, payment_pb2.REVIEW_DECISION_REJECT, "confirmed match"
    ).payment
    assert statuses(rejected) == [("ACTC", ""), ("PDNG", "RR04"), ("RJCT", "RR04")]
    after = balances(hub)
    assert moved(before, after) == {}
    pacs002 = require_valid(MessageName.PACS_002, hub.message(instruction.uetr, PACS_002))
    assert pacs002.findtext(".//p:TxSts", namespaces=PACS002) == "RJCT"
    assert pacs002.findtext(".//p:StsRsnInf/p:Rsn/p:Cd", namespaces=PACS002) == "RR04"


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_names_close_to_listed_ones_are_not_held(payment_hub: PaymentHub, name: str) -> None:
    payment = payment_hub.pay(creditor=payment_pb2.Party(**{**CREDITOR_PK, "name": name}))
    assert status_name(payment) == "ACSC"
    assert payment.screening_score == ""


def test_expired_hold_is_rejected_ab05_and_releases_the_reservation(
    payment_hub: PaymentHub,
) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    before = balances(hub)
    instruction = payment_instruction(
        quote_id=quote.quote_id, creditor=payment_pb2.Party(**{**CREDITOR_PK, "name": SDN_NAME})
    )
    assert status_name(hub.submit(instruction).payment) == "PDNG"
    hub.clock.advance(24 * 3600 - 5)
    assert status_name(hub.get(instruction.uetr)) == "PDNG"
    hub.clock.advance(6)
    expired = hub.get(instruction.uetr, US)
    assert statuses(expired) == [("ACTC", ""), ("PDNG", "RR04"), ("RJCT", "AB05")]
    assert moved(before, balances(hub)) == {}
    code, detail = refusal(
        lambda: hub.review(instruction.uetr, payment_pb2.REVIEW_DECISION_RELEASE)
    )
    assert (code, detail.code) == (PRECONDITION, "payment_must_be_held")


def test_review_rules(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    held = hub.pay(creditor=payment_pb2.Party(**{**CREDITOR_PK, "name": SDN_NAME}))
    settled = hub.pay()
    cases = [
        ("not-a-uetr", payment_pb2.REVIEW_DECISION_RELEASE, "", INVALID, "uetr_must_be_uuid4"),
        (held.uetr, payment_pb2.REVIEW_DECISION_RELEASE, "x" * 141, INVALID, "text_must_be_valid"),
        (new_uetr(), payment_pb2.REVIEW_DECISION_RELEASE, "", NOT_FOUND, "payment_must_exist"),
        (settled.uetr, payment_pb2.REVIEW_DECISION_RELEASE, "", PRECONDITION,
         "payment_must_be_held"),
        (held.uetr, payment_pb2.REVIEW_DECISION_UNSPECIFIED, "", PRECONDITION,
         "decision_must_be_specified"),
    ]  # fmt: skip
    for uetr, decision, reason, status, error_code in cases:
        code, detail = refusal(lambda: hub.review(uetr, decision, reason))  # noqa: B023
        assert (code, detail.code) == (status, error_code), (uetr, decision)
    assert status_name(hub.get(held.uetr)) == "PDNG"
    for who in (US, "auditor"):
        instruction = review_instruction(held.uetr, payment_pb2.REVIEW_DECISION_RELEASE,
                                         participant_id=who)  # fmt: skip
        code, detail = refusal(
            lambda: hub.payments(who).ReviewPayment(  # noqa: B023
                payment_pb2.ReviewPaymentRequest(instruction=hub.sign(instruction)),  # noqa: B023
                timeout=30,
            )
        )
        assert (code, detail.code) == (DENIED, "role_must_permit")


# -- quotes ---------------------------------------------------------------------------------------


def test_quote_is_usable_until_the_instant_before_it_expires(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote(expiry_seconds=1)
    expires_us = micros(quote.expires_at)
    assert expires_us - micros(quote.issued_at) == 1_000_000
    try:
        hub.clock.freeze(expires_us - 1)
        payment = hub.submit(payment_instruction(quote_id=quote.quote_id)).payment
        assert status_name(payment) == "ACSC"
        late = hub.quote(expiry_seconds=1)
        hub.clock.freeze(micros(late.expires_at))
        code, detail = refusal(lambda: hub.submit(payment_instruction(quote_id=late.quote_id)))
        assert (code, detail.code, list(detail.fields)) == (
            PRECONDITION,
            "quote_expired",
            ["quote_id"],
        )
    finally:
        hub.clock.run()


def test_a_quote_executes_once_under_concurrent_submissions(payment_hub: PaymentHub) -> None:
    """Every submission passes the early check; the commit lets exactly one use the quote."""
    hub = payment_hub
    hub.publish_rate()
    quote = hub.quote()
    instructions = [payment_instruction(quote_id=quote.quote_id) for _ in range(8)]
    outcomes: list[Any] = [None] * len(instructions)

    def submit(position: int) -> None:
        try:
            outcomes[position] = status_name(hub.submit(instructions[position]).payment)
        except grpc.RpcError as error:
            outcomes[position] = error.code(), (error.details() or "").split(":")[0]

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(len(instructions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ACSC") == 1
    assert outcomes.count((PRECONDITION, "quote_used")) == len(instructions) - 1


def test_concurrent_payments_settle_hold_or_fail_each_on_its_own(
    payment_hub: PaymentHub,
) -> None:
    """Payments committed in one group: a failing one never takes the others with it."""
    hub = payment_hub
    hub.publish_rate()
    held_party = creditor(name=SDN_NAME)
    kinds: list[tuple[str, payment_pb2.PaymentInstruction]] = []
    for _ in range(6):
        kinds.append(("ACSC", payment_instruction(quote_id=hub.quote().quote_id)))
    for _ in range(2):
        kinds.append(("PDNG", payment_instruction(quote_id=hub.quote().quote_id,
                                                  creditor=held_party)))  # fmt: skip
    for _ in range(2):
        kinds.append(("AC01", payment_instruction(quote_id=hub.quote().quote_id,
                                                  creditor_agent_id=US)))  # fmt: skip
    for _ in range(2):
        kinds.append(
            (
                "AM04",
                payment_instruction(
                    PK,
                    amount=common_pb2.Money(amount_minor=10**15, currency="USD"),
                    debtor=creditor(),
                    creditor=debtor(),
                    creditor_agent_id=US,
                ),
            )
        )
    accounts = (*ACCOUNTS, settlement_account(PK, "USD"))
    before = {account_id: hub.balance(account_id) for account_id in accounts}
    outcomes: list[str] = [""] * len(kinds)
    start = threading.Barrier(len(kinds))

    def submit(position: int) -> None:
        start.wait()
        payment = hub.submit(kinds[position][1]).payment
        outcomes[position] = status_name(payment) + payment.reason_code.replace("RR04", "")

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(len(kinds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [
        {"AC01": "RJCTAC01", "AM04": "RJCTAM04"}.get(kind, kind) for kind, _ in kinds
    ]
    after = {account_id: hub.balance(account_id) for account_id in accounts}
    assert moved(before, after) == {
        settlement_account(US, "USD"): (6 * 502_500, 0, 2 * 502_500, 0),
        settlement_account(FX, "USD"): (0, 6 * 500_000, 0, 2 * 500_000),
        settlement_account(FX, "PKR"): (6 * 139_225_000, 0, 2 * 139_225_000, 0),
        settlement_account(PK, "PKR"): (0, 6 * 139_225_000, 0, 2 * 139_225_000),
        "fees:USD": (0, 6 * FEE_MINOR, 0, 2 * FEE_MINOR),
    }
    for kind, instruction in kinds:
        if kind == "PDNG":
            hub.review(instruction.uetr, payment_pb2.REVIEW_DECISION_REJECT)
    hub.client.server.hub.ledger.check_invariants()


def test_quote_rules(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate()
    rows: list[tuple[dict[str, Any], grpc.StatusCode, str, str]] = [
        ({"source_currency": "XYZ"}, INVALID, "currency_must_be_known", "source_currency"),
        ({"target_currency": "pkr"}, INVALID, "currency_must_be_known", "target_currency"),
        ({"target_currency": "XYZ", "amount_minor": 0}, INVALID, "currency_must_be_known",
         "target_currency"),
        ({"target_currency": "USD"}, INVALID, "currencies_must_differ", "target_currency"),
        ({"amount_minor": 0}, INVALID, "amount_must_be_positive", "amount_minor"),
        ({"amount_minor": -1, "fixed_side": 0}, INVALID, "amount_must_be_positive",
         "amount_minor"),
        ({"fixed_side": 0}, INVALID, "fixed_side_must_be_specified", "fixed_side"),
        ({"expiry_seconds": 3601}, INVALID, "expiry_seconds_must_be_in_range", "expiry_seconds"),
        ({"fx_provider_id": "nobody"}, NOT_FOUND, "participant_must_exist", "fx_provider_id"),
        ({"fx_provider_id": PK}, NOT_FOUND, "participant_must_exist", "fx_provider_id"),
        ({"fx_provider_id": "\x00"}, NOT_FOUND, "participant_must_exist", "fx_provider_id"),
        ({"instruction_id": "bank-us:\x00"}, INVALID, "id_must_be_valid", "instruction_id"),
        ({"target_currency": "EUR"}, PRECONDITION, "rate_must_be_published", ""),
        ({"fixed_side": payment_pb2.FIXED_SIDE_RECEIVE, "amount_minor": 1}, PRECONDITION,
         "amount_must_convert", ""),
    ]  # fmt: skip
    for fields, status, error_code, field_name in rows:
        code, detail = refusal(lambda: hub.quote(**fields))  # noqa: B023
        assert (code, detail.code) == (status, error_code), fields
        assert list(detail.fields) == ([field_name] if field_name else []), fields
    for who in (FX, OPERATOR, "auditor", "lender"):
        code, detail = refusal(lambda: hub.quote(who))  # noqa: B023
        assert (code, detail.code) == (DENIED, "role_must_permit")
    for seconds, expected in ((0, 600), (1, 1), (3600, 3600)):
        quote = hub.quote(expiry_seconds=seconds)
        assert micros(quote.expires_at) - micros(quote.issued_at) == expected * 1_000_000


def test_a_rate_is_quotable_until_it_expires(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate(rate="300", source_currency="USD", target_currency="AED", valid_seconds=5)
    assert hub.quote(target_currency="AED").rate == "300"
    hub.clock.advance(5)
    code, detail = refusal(lambda: hub.quote(target_currency="AED"))
    assert (code, detail.code) == (PRECONDITION, "rate_must_be_published")


@pytest.mark.parametrize(
    ("rate", "fixed_side", "amount_minor", "send_minor", "receive_minor"),
    [
        # 3 cents at 0.5 = 1.5 paisa -> 2; 5 cents = 2.5 paisa -> 2: half to even, both ways.
        ("0.5", payment_pb2.FIXED_SIDE_SEND, 3, 3, 2),
        ("0.5", payment_pb2.FIXED_SIDE_SEND, 5, 5, 2),
        ("0.5", payment_pb2.FIXED_SIDE_SEND, 7, 7, 4),
        # 1 paisa received at 0.5 costs exactly 2 cents; 3 paisa at 2 cost 1.5 cents -> 2.
        ("0.5", payment_pb2.FIXED_SIDE_RECEIVE, 1, 2, 1),
        ("2", payment_pb2.FIXED_SIDE_RECEIVE, 3, 2, 3),
        ("2", payment_pb2.FIXED_SIDE_RECEIVE, 5, 2, 5),
    ],
)
def test_quote_rounds_half_to_even(
    payment_hub: PaymentHub,
    rate: str,
    fixed_side: Any,
    amount_minor: int,
    send_minor: int,
    receive_minor: int,
) -> None:
    payment_hub.publish_rate(rate=rate, source_currency="USD", target_currency="SAR")
    quote = payment_hub.quote(
        target_currency="SAR", fixed_side=fixed_side, amount_minor=amount_minor
    )
    assert (quote.send.amount_minor, quote.receive.amount_minor, quote.rate) == (
        send_minor,
        receive_minor,
        rate,
    )


def test_quote_in_a_zero_decimal_currency(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate(rate="149.5", source_currency="USD", target_currency="JPY")
    # USD 1.01 * 149.5 = JPY 150.995 -> 151 (no minor unit).
    quote = hub.quote(target_currency="JPY", amount_minor=101)
    assert (quote.send.amount_minor, quote.receive.amount_minor) == (101, 151)


def test_quote_retry_answers_the_original_quote(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    hub.publish_rate()
    instruction = quote_instruction()
    request = payment_pb2.RequestQuoteRequest(instruction=hub.sign(instruction))
    first = hub.payments(US).RequestQuote(request, timeout=30)
    hub.publish_rate(rate="280")
    again = hub.payments(US).RequestQuote(request, timeout=30)
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert (again.quote, again.result.receipt) == (first.quote, first.result.receipt)
    code, detail = refusal(
        lambda: hub.quote(instruction_id=instruction.instruction_id, amount_minor=1234)
    )
    assert (code, detail.code, list(detail.fields)) == (
        EXISTS,
        "exists_with_different_body",
        ["amount_minor"],
    )
    code, detail = refusal(lambda: hub.quote(PK, instruction_id=instruction.instruction_id))
    assert (code, detail.code) == (EXISTS, "id_taken")


def test_publish_rate_rules(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    rows: list[tuple[dict[str, Any], str, str]] = [
        ({"source_currency": "XYZ", "rate": "abc"}, "currency_must_be_known", "source_currency"),
        ({"target_currency": ""}, "currency_must_be_known", "target_currency"),
        ({"rate": "abc", "target_currency": "USD"}, "rate_must_be_positive_decimal", ""),
        ({"rate": ""}, "rate_must_be_positive_decimal", ""),
        ({"rate": "0"}, "rate_must_be_positive_decimal", ""),
        ({"rate": "-278.45"}, "rate_must_be_positive_decimal", ""),
        ({"rate": "2.7845e2"}, "rate_must_be_positive_decimal", ""),
        ({"rate": "0278.45"}, "rate_must_be_positive_decimal", ""),
        ({"rate": "1234567890.123456789"}, "rate_must_be_positive_decimal", ""),
        ({"target_currency": "USD", "valid_seconds": 0}, "currencies_must_differ",
         "target_currency"),
        ({"valid_seconds": 0, "fee_minor": -1}, "valid_seconds_must_be_in_range",
         "valid_seconds"),
        ({"valid_seconds": 86_401}, "valid_seconds_must_be_in_range", "valid_seconds"),
        ({"fee_minor": -1}, "fee_must_not_be_negative", "fee_minor"),
    ]  # fmt: skip
    for fields, error_code, field_name in rows:
        code, detail = refusal(lambda: hub.publish_rate(**fields))  # noqa: B023
        assert (code, detail.code) == (INVALID, error_code), fields
        if field_name:
            assert list(detail.fields) == [field_name], fields
    for who in (US, OPERATOR, "auditor"):
        instruction = rate_instruction(participant_id=who, instruction_id=new_id(who))
        code, detail = refusal(
            lambda: hub.payments(who).PublishRate(  # noqa: B023
                payment_pb2.PublishRateRequest(instruction=hub.sign(instruction)),  # noqa: B023
                timeout=30,
            )
        )
        assert (code, detail.code) == (DENIED, "role_must_permit")
    published = hub.publish_rate(valid_seconds=86_400, fee_minor=0)
    assert micros(published.valid_until) - micros(published.result.committed_at) == (
        86_400 * 1_000_000
    )


# -- validation of payments ---------------------------------------------------------------------


def debtor(**changes: Any) -> payment_pb2.Party:
    return payment_pb2.Party(**{**DEBTOR_US, **changes})


def creditor(**changes: Any) -> payment_pb2.Party:
    return payment_pb2.Party(**{**CREDITOR_PK, **changes})


VALID_ABA = aba_with_check_digit("02100002")
BAD_ABA = VALID_ABA[:-1] + str((int(VALID_ABA[-1]) + 1) % 10)
VALID_LEI = lei_with_check_digits("5493000DEMOBANKUS0")
BAD_LEI = VALID_LEI[:-2] + ("00" if VALID_LEI[-2:] != "00" else "01")
BAD_IBAN = "PK37SCBL0000001123456702"
SAME_CURRENCY: dict[str, Any] = {"amount": common_pb2.Money(amount_minor=10_000, currency="USD")}

VALIDATION_ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    ("uetr not a UUID", {"uetr": "not-a-uuid"}, "uetr_must_be_uuid4", "uetr"),
    ("uetr upper case", {"uetr": str(uuid.uuid4()).upper()}, "uetr_must_be_uuid4", "uetr"),
    ("uetr version 1", {"uetr": str(uuid.uuid1())}, "uetr_must_be_uuid4", "uetr"),
    ("creditor IBAN check digits", {"creditor": creditor(iban=BAD_IBAN)}, "iban_must_be_valid",
     "creditor.iban"),
    ("creditor IBAN 23 characters", {"creditor": creditor(iban="PK36SCBL000000112345670")},
     "iban_must_be_valid", "creditor.iban"),
    ("creditor IBAN with spaces", {"creditor": creditor(iban="PK36 SCBL 0000 0011 2345 6702")},
     "iban_must_be_valid", "creditor.iban"),
    ("debtor routing number check digit", {"debtor": debtor(aba_routing_number=BAD_ABA)},
     "routing_number_must_be_valid", "debtor.aba_routing_number"),
    ("debtor routing number unassigned", {"debtor": debtor(aba_routing_number="500000005")},
     "routing_number_must_be_valid", "debtor.aba_routing_number"),
    ("debtor routing number missing", {"debtor": debtor(aba_routing_number="")},
     "routing_number_must_be_valid", "debtor.aba_routing_number"),
    ("debtor account number letters", {"debtor": debtor(account_number="12AB")},
     "account_number_must_be_valid", "debtor.account_number"),
    ("debtor account number 18 digits", {"debtor": debtor(account_number="1" * 18)},
     "account_number_must_be_valid", "debtor.account_number"),
    ("debtor IBAN and US account", {"debtor": debtor(iban=CREDITOR_PK["iban"])},
     "account_must_be_iban_or_us", "debtor.iban"),
    ("creditor without an account", {"creditor": creditor(iban="")},
     "account_must_be_iban_or_us", "creditor.iban"),
    ("debtor LEI check digits", {"debtor": debtor(lei=BAD_LEI)}, "lei_must_be_valid",
     "debtor.lei"),
    ("debtor country lower case", {"debtor": debtor(country="us")}, "country_must_be_iso3166",
     "debtor.country"),
    ("creditor country unknown", {"creditor": creditor(country="XX")},
     "country_must_be_iso3166", "creditor.country"),
    ("creditor country missing", {"creditor": creditor(country="")},
     "country_must_be_iso3166", "creditor.country"),
    ("amount zero", {"amount": common_pb2.Money(amount_minor=0, currency="USD")},
     "amount_must_be_positive", "amount.amount_minor"),
    ("amount negative", {"amount": common_pb2.Money(amount_minor=-5, currency="USD")},
     "amount_must_be_positive", "amount.amount_minor"),
    ("no amount and no quote", {"amount": None}, "amount_must_be_positive",
     "amount.amount_minor"),
    ("currency unknown", {"amount": common_pb2.Money(amount_minor=5, currency="XYZ")},
     "currency_must_be_known", "amount.currency"),
    ("currency lower case", {"amount": common_pb2.Money(amount_minor=5, currency="usd")},
     "currency_must_be_known", "amount.currency"),
    ("end-to-end id empty", {"end_to_end_id": ""}, "text_must_be_valid", "end_to_end_id"),
    ("end-to-end id 36 characters", {"end_to_end_id": "E" * 36}, "text_must_be_valid",
     "end_to_end_id"),
    ("end-to-end id control character", {"end_to_end_id": "INV\n42"}, "text_must_be_valid",
     "end_to_end_id"),
    ("debtor name empty", {"debtor": debtor(name="")}, "text_must_be_valid", "debtor.name"),
    ("creditor name 141 characters", {"creditor": creditor(name="N" * 141)},
     "text_must_be_valid", "creditor.name"),
    ("creditor name bidi override", {"creditor": creditor(name="Acme\u202eCorp")},
     "text_must_be_valid", "creditor.name"),
    ("debtor address line 71 characters", {"debtor": debtor(address_lines=["x" * 71])},
     "text_must_be_valid", "debtor.address_lines[0]"),
    ("debtor 8 address lines", {"debtor": debtor(address_lines=["line"] * 8)},
     "text_must_be_valid", "debtor.address_lines"),
    ("remittance 141 characters", {"remittance_information": "r" * 141},
     "text_must_be_valid", "remittance_information"),
    ("ultimate debtor without a name", {"ultimate_debtor": payment_pb2.Party(country="US")},
     "text_must_be_valid", "ultimate_debtor.name"),
    ("ultimate creditor LEI", {"ultimate_creditor": payment_pb2.Party(name="X", lei=BAD_LEI)},
     "lei_must_be_valid", "ultimate_creditor.lei"),
    # One rule before another whatever the fields' order.
    ("uetr before IBAN", {"uetr": "x", "creditor": creditor(iban=BAD_IBAN)},
     "uetr_must_be_uuid4", "uetr"),
    ("IBAN before an earlier field's name", {"debtor": debtor(name=""),
     "creditor": creditor(iban=BAD_IBAN)}, "iban_must_be_valid", "creditor.iban"),
    ("LEI before country", {"debtor": debtor(country="XX"), "creditor": creditor(lei=BAD_LEI)},
     "lei_must_be_valid", "creditor.lei"),
    ("amount before text", {"end_to_end_id": "",
     "amount": common_pb2.Money(amount_minor=0, currency="USD")},
     "amount_must_be_positive", "amount.amount_minor"),
    ("first field of a rule first", {"debtor": debtor(name=""), "creditor": creditor(name="")},
     "text_must_be_valid", "debtor.name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "error_code", "field_name"),
    [pytest.param(fields, code, name, id=label) for label, fields, code, name in VALIDATION_ROWS],
)
def test_payment_validation(
    payment_hub: PaymentHub, fields: dict[str, Any], error_code: str, field_name: str
) -> None:
    values = {**SAME_CURRENCY, **fields}
    if values["amount"] is None:
        del values["amount"]
    before = payment_hub.client.journal_size()
    code, detail = refusal(lambda: payment_hub.submit(payment_instruction(**values)))
    assert (code, detail.code, list(detail.fields)) == (INVALID, error_code, [field_name])
    assert payment_hub.client.journal_size() == before


def test_payment_state_rules(payment_hub: PaymentHub) -> None:
    """NOT_FOUND, ALREADY_EXISTS and FAILED_PRECONDITION of SubmitPayment, in order."""
    hub = payment_hub
    hub.publish_rate()
    settled = hub.pay()
    used = hub.get(settled.uetr).quote_id
    theirs = hub.quote(PK)
    mine = hub.quote()
    expired = hub.quote(expiry_seconds=1)
    expired_and_used = hub.quote(expiry_seconds=1)
    hub.submit(payment_instruction(quote_id=expired_and_used.quote_id))
    hub.clock.advance(1)
    rows: list[tuple[dict[str, Any], grpc.StatusCode, str, str]] = [
        ({"creditor_agent_id": "no-such-bank", "quote_id": "nope"}, NOT_FOUND,
         "participant_must_exist", "creditor_agent_id"),
        ({"creditor_agent_id": FX, "quote_id": mine.quote_id}, NOT_FOUND,
         "participant_must_exist", "creditor_agent_id"),
        ({"creditor_agent_id": "lender", "quote_id": mine.quote_id}, NOT_FOUND,
         "participant_must_exist", "creditor_agent_id"),
        ({"creditor_agent_id": "\x00", "quote_id": mine.quote_id}, NOT_FOUND,
         "participant_must_exist", "creditor_agent_id"),
        ({"quote_id": "nope", "uetr": settled.uetr}, NOT_FOUND, "quote_must_exist", "quote_id"),
        ({"quote_id": "no\x00pe"}, NOT_FOUND, "quote_must_exist", "quote_id"),
        ({"quote_id": mine.quote_id, "instruction_id": "bank-us: spaced"}, INVALID,
         "id_must_be_valid", "instruction_id"),
        ({"quote_id": mine.quote_id, "uetr": settled.uetr}, EXISTS, "uetr_taken", "uetr"),
        ({"quote_id": expired_and_used.quote_id}, PRECONDITION, "quote_expired", "quote_id"),
        ({"quote_id": expired.quote_id}, PRECONDITION, "quote_expired", "quote_id"),
        ({"quote_id": used}, PRECONDITION, "quote_used", "quote_id"),
        ({"quote_id": theirs.quote_id}, PRECONDITION, "quote_must_match", "quote_id"),
    ]  # fmt: skip
    for fields, status, error_code, field_name in rows:
        code, detail = refusal(lambda: hub.submit(payment_instruction(**fields)))  # noqa: B023
        assert (code, detail.code, list(detail.fields)) == (status, error_code, [field_name]), (
            fields
        )
    assert status_name(hub.submit(payment_instruction(quote_id=mine.quote_id)).payment) == "ACSC"


def test_payment_common_checks_and_idempotency(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    instruction = payment_instruction(**SAME_CURRENCY)
    signed = hub.sign(instruction)
    request = payment_pb2.SubmitPaymentRequest(instruction=signed)
    for who in (FX, OPERATOR, "auditor", "lender"):
        code, detail = refusal(lambda: hub.payments(who).SubmitPayment(request, timeout=30))  # noqa: B023
        assert (code, detail.code) == (DENIED, "role_must_permit")
    code, detail = refusal(lambda: hub.payments(PK).SubmitPayment(request, timeout=30))
    assert (code, detail.code) == (DENIED, "signer_must_be_caller")
    wrong_type = payment_instruction(
        **SAME_CURRENCY, instruction_type=type_name(payment_pb2.RequestQuoteInstruction)
    )
    code, detail = refusal(lambda: hub.submit(wrong_type))
    assert (code, detail.code) == (INVALID, "instruction_type_must_match")
    forged = common_pb2.SignedInstruction(instruction=signed.instruction, signature=bytes(64))
    code, detail = refusal(
        lambda: hub.payments(US).SubmitPayment(
            payment_pb2.SubmitPaymentRequest(instruction=forged), timeout=30
        )
    )
    assert (code, detail.code) == (UNAUTHENTICATED, "signature_invalid")
    # Nothing was left behind by the refusals: the instruction commits now.
    first = hub.payments(US).SubmitPayment(request, timeout=30)
    assert first.result.status == common_pb2.COMMIT_STATUS_CREATED
    again = hub.payments(US).SubmitPayment(request, timeout=30)
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert (again.result.receipt, again.payment) == (first.result.receipt, first.payment)
    changed = payment_instruction(
        **SAME_CURRENCY,
        instruction_id=instruction.instruction_id,
        uetr=instruction.uetr,
        end_to_end_id="OTHER",
    )
    code, detail = refusal(lambda: hub.submit(changed))
    assert (code, detail.code, list(detail.fields)) == (
        EXISTS,
        "exists_with_different_body",
        ["end_to_end_id"],
    )
    theirs = payment_instruction(
        PK, **SAME_CURRENCY, instruction_id=instruction.instruction_id, creditor_agent_id=US
    )
    code, detail = refusal(lambda: hub.submit(theirs))
    assert (code, detail.code) == (EXISTS, "id_taken")
    # The id is used up across the hub, not only among payments.
    elsewhere = transaction(
        PK,
        transfer_postings(settlement_account(PK, "USD"), settlement_account(US, "USD"), 1),
        instruction_id=instruction.instruction_id,
    )
    code, detail = refusal(lambda: hub.client.write(elsewhere))
    assert (code, detail.code) == (EXISTS, "id_taken")
    # An id the bank used for a quote is not a payment's.
    hub.publish_rate()
    quote = hub.quote()
    code, detail = refusal(
        lambda: hub.submit(payment_instruction(**SAME_CURRENCY, instruction_id=quote.quote_id))
    )
    assert (code, detail.code) == (EXISTS, "exists_with_different_body")


# -- ISO 20022 ----------------------------------------------------------------------------------

PACS008 = {"p": MessageName.PACS_008.namespace}
PACS002 = {"p": MessageName.PACS_002.namespace}
CAMT053 = {"c": MessageName.CAMT_053.namespace}
CAMT054 = {"c": MessageName.CAMT_054.namespace}
PACS_008 = payment_pb2.PAYMENT_MESSAGE_TYPE_PACS_008
PACS_002 = payment_pb2.PAYMENT_MESSAGE_TYPE_PACS_002


def test_messages_of_a_settled_payment_validate_against_the_xsds(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    payment = hub.pay()
    uetr = payment.uetr

    pacs008 = require_valid(MessageName.PACS_008, hub.message(uetr, PACS_008, PK))
    transaction = pacs008.find("p:FIToFICstmrCdtTrf/p:CdtTrfTxInf", PACS008)
    assert transaction is not None
    text = functools.partial(transaction.findtext, namespaces=PACS008)
    assert (text("p:PmtId/p:UETR"), text("p:PmtId/p:EndToEndId")) == (uetr, "INV-2026-0042")
    settlement_amount = transaction.find("p:IntrBkSttlmAmt", PACS008)
    instructed_amount = transaction.find("p:InstdAmt", PACS008)
    assert settlement_amount is not None
    assert instructed_amount is not None
    assert (settlement_amount.text, settlement_amount.get("Ccy")) == ("1392250.00", "PKR")
    assert (instructed_amount.text, instructed_amount.get("Ccy")) == ("5000.00", "USD")
    assert text("p:XchgRate") == "278.45"
    assert text("p:DbtrAgt/p:FinInstnId/p:BICFI") == "CHASUS33XXX"
    assert text("p:DbtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId") == VALID_ABA
    assert text("p:CdtrAgt/p:FinInstnId/p:BICFI") == "HABBPKKAXXX"
    assert text("p:Dbtr/p:Nm") == DEBTOR_US["name"]
    assert text("p:DbtrAcct/p:Id/p:Othr/p:Id") == DEBTOR_US["account_number"]
    assert text("p:CdtrAcct/p:Id/p:IBAN") == CREDITOR_PK["iban"]
    assert text("p:RmtInf/p:Ustrd") == "Invoice 2026-0042, copper concentrate lot 7"

    pacs002 = require_valid(MessageName.PACS_002, hub.message(uetr, PACS_002, US))
    assert pacs002.findtext(".//p:TxSts", namespaces=PACS002) == "ACSC"
    assert pacs002.findtext(".//p:OrgnlUETR", namespaces=PACS002) == uetr
    day = day_of(payment.history[-1].at)
    assert pacs002.findtext(".//p:FctvIntrBkSttlmDt/p:Dt", namespaces=PACS002) == day

    for account_id, who, entries in (
        (settlement_account(US, "USD"), US, [("DBIT", "5000.00", "PAYMENT"),
                                             ("DBIT", "25.00", "PAYMENT_FEE")]),
        (settlement_account(PK, "PKR"), PK, [("CRDT", "1392250.00", "PAYMENT")]),
    ):  # fmt: skip
        camt053 = require_valid(
            MessageName.CAMT_053, hub.statement(account_id, day, STATEMENT_053, who)
        )
        assert statement_entries(camt053, uetr, CAMT053) == entries
        balances_found = {
            code: signed_amount(balance, CAMT053)
            for balance in camt053.iterfind(".//c:Stmt/c:Bal", CAMT053)
            if (code := balance.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=CAMT053))
        }
        assert set(balances_found) == {"OPBD", "CLBD"}
        movements = sum(
            signed_amount(entry, CAMT053) for entry in camt053.iterfind(".//c:Ntry", CAMT053)
        )
        assert balances_found["OPBD"] + movements == balances_found["CLBD"]
        camt054 = require_valid(
            MessageName.CAMT_054, hub.statement(account_id, day, STATEMENT_054, who)
        )
        assert statement_entries(camt054, uetr, CAMT054) == entries


def test_messages_of_held_and_rejected_payments(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    held = hub.pay(creditor=creditor(name=SDN_NAME))
    pacs002 = require_valid(MessageName.PACS_002, hub.message(held.uetr, PACS_002))
    assert pacs002.findtext(".//p:TxSts", namespaces=PACS002) == "PDNG"
    assert pacs002.findtext(".//p:StsRsnInf/p:Rsn/p:Cd", namespaces=PACS002) == "RR04"
    require_valid(MessageName.PACS_008, hub.message(held.uetr, PACS_008))
    hub.publish_rate(rate="2.5")
    quote = hub.quote(amount_minor=US_FUNDS_MINOR * 2)
    rejected = hub.submit(payment_instruction(quote_id=quote.quote_id)).payment
    pacs002 = require_valid(MessageName.PACS_002, hub.message(rejected.uetr, PACS_002))
    assert pacs002.findtext(".//p:TxSts", namespaces=PACS002) == "RJCT"
    assert pacs002.findtext(".//p:StsRsnInf/p:Rsn/p:Cd", namespaces=PACS002) == "AM04"


def test_message_and_statement_rules(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    payment = hub.pay()
    day = day_of(payment.history[-1].at)
    calls: list[tuple[Callable[[], Any], grpc.StatusCode, str]] = [
        (lambda: hub.message(payment.uetr, 0), INVALID, "message_type_must_be_specified"),
        (lambda: hub.message(payment.uetr, PACS_008, "lender"), NOT_FOUND, "payment_must_exist"),
        (lambda: hub.statement(settlement_account(US, "USD"), "2026-13-01", STATEMENT_053),
         INVALID, "date_range_must_be_valid"),
        (lambda: hub.statement(settlement_account(US, "USD"), "20260101", STATEMENT_053),
         INVALID, "date_range_must_be_valid"),
        (lambda: statement_between(hub, settlement_account(US, "USD"), "2026-02-02",
                                   "2026-02-01"), INVALID, "date_range_must_be_valid"),
        (lambda: statement_between(hub, settlement_account(US, "USD"), "2025-01-01",
                                   "2026-01-02"), INVALID, "date_range_must_be_valid"),
        (lambda: hub.statement(settlement_account(US, "USD"), day, 0), INVALID,
         "statement_format_must_be_specified"),
        (lambda: hub.statement("settlement:nobody:USD", day, STATEMENT_053), NOT_FOUND,
         "account_must_exist"),
        (lambda: hub.statement("settlement:\x00:USD", day, STATEMENT_053), NOT_FOUND,
         "account_must_exist"),
        (lambda: hub.statement(settlement_account(US, "USD"), day, STATEMENT_053, PK),
         NOT_FOUND, "account_must_exist"),
        (lambda: hub.statement(settlement_account(US, "USD"), day, STATEMENT_053, "lender"),
         NOT_FOUND, "account_must_exist"),
    ]  # fmt: skip
    for call, status, error_code in calls:
        code, detail = refusal(call)
        assert (code, detail.code) == (status, error_code)
    # A day without movements: a valid statement with equal opening and closing balances.
    quiet = require_valid(
        MessageName.CAMT_053,
        statement_between(hub, settlement_account(US, "USD"), "2020-01-01", "2020-01-31"),
    )
    assert quiet.find(".//c:Ntry", CAMT053) is None


STATEMENT_053 = payment_pb2.STATEMENT_FORMAT_CAMT_053
STATEMENT_054 = payment_pb2.STATEMENT_FORMAT_CAMT_054


def statement_between(hub: PaymentHub, account_id: str, first: str, last: str) -> bytes:
    return bytes(
        hub.payments(OPERATOR)
        .GetAccountStatement(
            payment_pb2.GetAccountStatementRequest(
                account_id=account_id, from_date=first, to_date=last, format=STATEMENT_053
            ),
            timeout=30,
        )
        .xml
    )


def statement_entries(
    root: ET.Element, uetr: str, namespaces: dict[str, str]
) -> list[tuple[str, str, str]]:
    found = []
    for entry in root.iterfind(".//c:Ntry", namespaces):
        if entry.findtext(".//c:Refs/c:UETR", namespaces=namespaces) != uetr:
            continue
        assert entry.findtext(".//c:Refs/c:EndToEndId", namespaces=namespaces) == "INV-2026-0042"
        found.append(
            (
                entry.findtext("c:CdtDbtInd", namespaces=namespaces) or "",
                entry.findtext("c:Amt", namespaces=namespaces) or "",
                entry.findtext("c:BkTxCd/c:Prtry/c:Cd", namespaces=namespaces) or "",
            )
        )
    return found


def signed_amount(element: ET.Element, namespaces: dict[str, str]) -> Decimal:
    amount = Decimal(element.findtext("c:Amt", namespaces=namespaces) or "0")
    return -amount if element.findtext("c:CdtDbtInd", namespaces=namespaces) == "DBIT" else amount


# -- pacs.008 import ------------------------------------------------------------------------------


def import_request(
    hub: PaymentHub, xml: bytes, quote_id: str = "", **fields: Any
) -> payment_pb2.ImportPacs008Request:
    values: dict[str, Any] = {
        "instruction_id": new_id(US),
        "participant_id": US,
        "instruction_type": type_name(payment_pb2.ImportPacs008Instruction),
        "pacs008_xml": xml,
        "creditor_agent_id": PK,
        "quote_id": quote_id,
    }
    values.update(fields)
    instruction = payment_pb2.ImportPacs008Instruction(**values)
    return payment_pb2.ImportPacs008Request(instruction=hub.sign(instruction))


def as_new_payment(xml: bytes, old_uetr: str) -> tuple[bytes, str]:
    """The same document for a new payment: another UETR (and message id)."""
    uetr = new_uetr()
    renamed = xml.replace(old_uetr.encode(), uetr.encode()).replace(
        old_uetr.replace("-", "").encode(), uetr.replace("-", "").encode()
    )
    return renamed, uetr


def test_import_pacs008_round_trip(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    original = hub.pay()
    xml, uetr = as_new_payment(hub.message(original.uetr, PACS_008), original.uetr)
    quote = hub.quote()
    response = hub.payments(US).ImportPacs008(import_request(hub, xml, quote.quote_id), timeout=30)
    imported = response.payment
    assert (imported.uetr, status_name(imported)) == (uetr, "ACSC")
    for name in ("end_to_end_id", "send", "receive", "fee", "rate", "debtor", "creditor",
                 "remittance_information", "charge_bearer", "reporting_flags",
                 "creditor_agent_id", "debtor_agent_id", "fx_provider_id"):  # fmt: skip
        assert getattr(imported, name) == getattr(original, name), name
    # What the hub writes for the imported payment is the document it was given.
    assert hub.message(uetr, PACS_008) == xml.replace(
        creation_time(xml), creation_time(hub.message(uetr, PACS_008))
    )


def test_import_pacs008_same_currency(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    original = hub.submit(payment_instruction(**SAME_CURRENCY)).payment
    xml, uetr = as_new_payment(hub.message(original.uetr, PACS_008), original.uetr)
    imported = hub.payments(US).ImportPacs008(import_request(hub, xml), timeout=30).payment
    assert (imported.uetr, status_name(imported)) == (uetr, "ACSC")
    assert (imported.send, imported.receive) == (original.send, original.receive)


def test_import_pacs008_rules(payment_hub: PaymentHub) -> None:
    hub = payment_hub
    original = hub.pay()
    template = hub.message(original.uetr, PACS_008)
    hub.publish_rate()
    other_quote = hub.quote(amount_minor=600_000)

    def fresh(xml: bytes) -> bytes:
        return as_new_payment(xml, original.uetr)[0]

    # (document, which quote: none, a fresh matching one, one of other amounts, status, code)
    rows: list[tuple[bytes, str, grpc.StatusCode, str]] = [
        (b"<Document", "none", INVALID, "xml_must_be_well_formed"),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><Document/>', "none", INVALID,
         "xml_must_not_declare_entities"),
        (fresh(template).replace(b"pacs.008.001.08", b"pacs.009.001.08"), "none", INVALID,
         "xml_namespace_must_be_pacs008"),
        (fresh(template).replace(b"<ChrgBr>DEBT</ChrgBr>", b""), "none", INVALID,
         "xml_must_match_schema"),
        (fresh(template).replace(b">5000.00<", b">5000.001<"), "none", INVALID,
         "xml_amount_must_fit_currency"),
        (fresh(template), "other", PRECONDITION, "quote_must_match"),
        (fresh(template).replace(b"HABBPKKAXXX", b"UNCRITMMXXX"), "fresh", INVALID,
         "bic_country_must_match"),
        (fresh(template).replace(b"CHASUS33XXX", b"CITIUS33XXX"), "fresh", INVALID,
         "bic_must_match_participant"),
    ]  # fmt: skip
    for xml, which, status, error_code in rows:
        quote_id = ""
        if which == "other":
            quote_id = other_quote.quote_id
        elif which == "fresh":
            quote_id = hub.quote().quote_id
        request = import_request(hub, xml, quote_id)
        code, detail = refusal(lambda: hub.payments(US).ImportPacs008(request, timeout=30))  # noqa: B023
        assert (code, detail.code) == (status, error_code), error_code
    for who in (FX, OPERATOR, "auditor"):
        request = import_request(hub, template, instruction_id=new_id(who), participant_id=who)
        code, detail = refusal(lambda: hub.payments(who).ImportPacs008(request, timeout=30))  # noqa: B023
        assert (code, detail.code) == (DENIED, "role_must_permit")


def creation_time(xml: bytes) -> bytes:
    start = xml.index(b"<CreDtTm>") + len(b"<CreDtTm>")
    return xml[start : xml.index(b"</CreDtTm>")]


# -- the auditor's view ---------------------------------------------------------------------------


def test_export_bundle_with_payments_verifies(payment_hub: PaymentHub, tmp_path: Path) -> None:
    """Every payment entry (events, reservations, posts, voids, expiries) passes the verifier."""
    hub = payment_hub
    hub.pay()
    held = hub.pay(creditor=creditor(name=SDN_NAME))
    hub.review(held.uetr, payment_pb2.REVIEW_DECISION_RELEASE)
    rejected = hub.pay(creditor=creditor(name=SDN_NAME))
    hub.review(rejected.uetr, payment_pb2.REVIEW_DECISION_REJECT)
    ledger = hub.client.server.hub.ledger
    export_bundle(ledger, tmp_path / "bundle")
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.first_failure()
    ledger.check_invariants()


# -- helpers ---------------------------------------------------------------------------------


def micros(timestamp: Any) -> int:
    return int(timestamp.seconds) * 1_000_000 + int(timestamp.nanos) // 1000


class Watcher:
    """A WatchPayments stream read in a thread; its start is fixed before ``__enter__`` returns."""

    def __init__(self, stub: payment_pb2_grpc.PaymentServiceStub, uetr: str = "") -> None:
        self.call: Any = stub.WatchPayments(
            payment_pb2.WatchPaymentsRequest(uetr=uetr), timeout=120
        )
        self.received: list[payment_pb2.WatchPaymentsResponse] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Watcher:
        self.call.initial_metadata()
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.call.cancel()
        self.thread.join(10)

    def _read(self) -> None:
        try:
            for response in self.call:
                with self.changed:
                    self.received.append(response)
                    self.changed.notify_all()
        except grpc.RpcError:
            pass

    def statuses_of(self, uetr: str, count: int, timeout_seconds: float = 10) -> list[str]:
        """The statuses streamed for ``uetr`` once ``count`` arrived (or after a short wait)."""

        def found() -> list[str]:
            return [
                payment_pb2.PaymentStatus.Name(response.change.status).removeprefix(
                    "PAYMENT_STATUS_"
                )
                for response in self.received
                if response.uetr == uetr
            ]

        with self.changed:
            if count == 0:
                self.changed.wait(1.0)
            else:
                self.changed.wait_for(lambda: len(found()) >= count, timeout_seconds)
            return found()
