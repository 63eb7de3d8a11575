"""A busy ledger, deterministically: every kind of entry, signed the way participants sign.

Drives a real :class:`ledger.store.Ledger` through rounds of hub traffic. Each
round commits, in separate ``execute`` calls (separate commit times):

- a USD payment BANKUS -> BANKPK, signed by BANKUS with its own instruction;
- five PKR payments BANKPK -> BANKUS in one linked batch, all five covered by
  ONE signature over a ``TransactionBatchInstruction`` (the ledger verifies it
  once; the verifier accepts one instruction on several leaves of one commit);
- a payment versus payment: USD from BANKUS to the FX provider and PKR from
  the FX provider to BANKPK, four postings in one signed transaction;
- two-phase payments: a reservation posted in full in the next round, one
  posted in part, one voided, and one left to expire (the clock jumps past its
  timeout at the end of the round; the next write's sweep logs the expiry);
- a reversal of the round's USD payment (every other round, by the operator);
- a payment-status event, signed by the creditor bank;
- every fourth round, operator changes: a debit limit, a freeze and an unfreeze.

Before the first round: the operator's unsigned bootstrap key, three
participants registered by the operator (each a ``signing_key`` leaf and a
``participant_registered`` event under one shared signature), eight accounts
in USD and PKR, and their funding. BANKUS's key is rotated once, by the
operator, in round :data:`ROTATION_ROUND`; BANKUS signs with its new key from
then on.

Instruction payloads follow common.proto: RFC 8785 JSON of the proto3 JSON
mapping with the original field names, defaults omitted, int64 as strings,
enums by name. Amounts come from SHA-256 of a label, not from ``random``, so
the bytes never depend on the Python version. Used by
``tests/vectors/make_bundles.py`` (the golden bundle) and
``tests/integration/test_audit_export_cli.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.canonical import encode
from ledger.records import (
    AccountFlag,
    AccountStatus,
    Command,
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    PostPending,
    RegisterSigningKey,
    Reverse,
    SetAccountStatus,
    SetDebitLimit,
    Side,
    SignedInstruction,
    VoidPending,
)
from ledger.signing import sign_instruction
from ledger.store import Ledger

START_US = 1_793_577_600_000_000
"""2026-11-02T00:00:00Z: the first commit time of a scenario ledger."""

SECOND_US = 1_000_000
TICK_US = 1_000
"""What the stepping clock advances on every call: one millisecond."""

OPERATOR = "HUBOPS"
BANK_US = "BANKUS"
BANK_PK = "BANKPK"
FX_PROVIDER = "FXLPUS"
PARTICIPANTS = (OPERATOR, BANK_US, BANK_PK, FX_PROVIDER)
REGISTERED = (BANK_US, BANK_PK, FX_PROVIDER)
"""Registered by the operator; the operator's own key is the unsigned bootstrap."""

ROTATION_ROUND = 8
"""The round whose first entry rotates BANKUS's key (about index 170)."""

ROUND_ENTRIES_MAX = 25
"""Most entries one round commits (20 in the busiest rounds, checked as it runs)."""

BATCH_ITEMS = 5
HOLD_TIMEOUT_SECONDS = 3600
SHORT_TIMEOUT_SECONDS = 30
"""Reservations that expire: the clock jumps past this at the end of each round."""

PKR_PER_USD = 280

TEST_KEY_LABEL_PREFIX = b"settlement test vector key: "


def derived_test_key(label: str) -> Ed25519PrivateKey:
    """A THROWAWAY TEST KEY: the Ed25519 seed is SHA-256 of a public label.

    Anyone can recompute it from this file, which is the point (the golden
    bundles regenerate byte for byte). Never use such a key outside tests.
    """
    seed = hashlib.sha256(TEST_KEY_LABEL_PREFIX + label.encode("ascii")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class SteppingClock:
    """A ``Ledger`` clock: a fixed start, +1 ms on every call, and jumps on demand."""

    def __init__(self, start_us: int = START_US) -> None:
        self.now_us = start_us

    def __call__(self) -> int:
        now = self.now_us
        self.now_us += TICK_US
        return now

    def advance(self, seconds: int) -> None:
        self.now_us += seconds * SECOND_US


def settlement_account(participant: str, currency: str) -> str:
    """``settlement:<participant>:<currency>``, as the participant service names them."""
    return f"settlement:{participant}:{currency}"


def funding_account(currency: str) -> str:
    return f"funding:{currency}"


ACCOUNT_OWNERS = tuple(
    (settlement_account(participant, currency), participant, currency)
    for participant in REGISTERED
    for currency in ("USD", "PKR")
)
FUNDING_MINOR = {"USD": 10_000_000_000, "PKR": 3_000_000_000_000}
"""Prefunding of every settlement account: enough that no payment is ever refused."""


def amount(label: str, maximum: int) -> int:
    """A deterministic amount in 1..maximum derived from ``label``."""
    digest = hashlib.sha256(label.encode("ascii")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % maximum


def side_name(side: Side) -> str:
    return "SIDE_DEBIT" if side is Side.DEBIT else "SIDE_CREDIT"


def proto_postings(postings: Sequence[Posting]) -> list[dict[str, str]]:
    return [
        {
            "account_id": posting.account_id,
            "amount_minor": str(posting.amount_minor),
            "currency": posting.currency,
            "side": side_name(posting.side),
        }
        for posting in postings
    ]


def pair(debit: str, credit: str, amount_minor: int, currency: str) -> tuple[Posting, ...]:
    return (
        Posting(debit, Side.DEBIT, amount_minor, currency),
        Posting(credit, Side.CREDIT, amount_minor, currency),
    )


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """The proto ``metadata`` string: the JSON object as RFC 8785 text."""
    return encode(metadata).decode("utf-8")


@dataclass
class BusyLedger:
    """Commits rounds of traffic to ``ledger`` until it holds the entries asked for.

    ``keys`` holds every participant's first private key; ``rotated_key`` is
    BANKUS's key after the rotation. ``run_until`` may be called again with a
    larger size to append more traffic to the same ledger.
    """

    ledger: Ledger
    clock: SteppingClock
    keys: dict[str, Ed25519PrivateKey]
    rotated_key: Ed25519PrivateKey
    round_number: int = 0
    padding_number: int = 0
    set_up: bool = False
    open_hold: str | None = None
    commits: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    # -- plumbing -------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.ledger.journal_size()

    def commit(self, commands: Sequence[Command], *, linked: bool = False) -> None:
        """Execute commands that must all be committed (never an idempotent retry)."""
        results = self.ledger.execute(list(commands), linked=linked)
        for result in results:
            if result.error is not None:
                raise AssertionError(f"{result.id!r} was refused: {result.error}")
            if result.receipt is None or result.receipt.existed:
                raise AssertionError(f"{result.id!r} was not newly committed")
        for command in commands:
            name = type(command).__name__
            self.kinds[name] = self.kinds.get(name, 0) + 1
        self.commits += 1

    def sign(
        self, signer: str, instruction_type: str, fields: Mapping[str, Any]
    ) -> SignedInstruction:
        """Sign an instruction of ``instruction_type`` (common.proto's three fields added)."""
        payload = {
            **fields,
            "participant_id": signer,
            "instruction_type": f"settlement.v1.{instruction_type}",
        }
        raw = encode(payload)
        return SignedInstruction(signer, raw, sign_instruction(self.keys[signer], raw))

    def transaction(
        self,
        signer: str,
        transaction_id: str,
        postings: tuple[Posting, ...],
        *,
        code: str = "",
        reference: str = "",
        metadata: Mapping[str, Any] | None = None,
        timeout_seconds: int | None = None,
        signed: bool = True,
    ) -> NewTransaction:
        """A transaction, signed with its own ``TransactionInstruction`` unless ``signed`` is
        false (the caller then attaches a batch's shared instruction)."""
        fields: dict[str, Any] = {
            "instruction_id": transaction_id,
            "postings": proto_postings(postings),
        }
        if code:
            fields["code"] = code
        if reference:
            fields["reference"] = reference
        if metadata:
            fields["metadata"] = metadata_text(metadata)
        if timeout_seconds is not None:
            fields["pending"] = True
            fields["timeout_seconds"] = timeout_seconds
        return NewTransaction(
            transaction_id,
            postings,
            code=code,
            reference=reference,
            metadata=dict(metadata or {}),
            pending=timeout_seconds is not None,
            timeout_seconds=timeout_seconds,
            instruction=(self.sign(signer, "TransactionInstruction", fields) if signed else None),
        )

    def item_body(self, signer: str, command: NewTransaction) -> bytes:
        """The canonical ``TransactionInstruction`` a batch item stands for (its hash is
        what the batch instruction lists)."""
        return encode(
            {
                "instruction_id": command.id,
                "instruction_type": "settlement.v1.TransactionInstruction",
                "participant_id": signer,
                "postings": proto_postings(command.postings),
            }
        )

    # -- the scenario -----------------------------------------------------------

    def run_until(self, size: int) -> None:
        """Commit traffic until the log holds exactly ``size`` entries."""
        if not self.set_up:
            self.setup()
        while self.size + ROUND_ENTRIES_MAX <= size:
            before = self.size
            self.round()
            if self.size - before > ROUND_ENTRIES_MAX:
                raise AssertionError(f"a round committed {self.size - before} entries")
        # Log the expiries that are due, then top up one payment at a time.
        self.ledger.expire_pending()
        if self.size > size:
            raise AssertionError(f"the log already holds {self.size} entries, asked for {size}")
        while self.size < size:
            self.padding_number += 1
            number = self.padding_number
            self.commit(
                [
                    self.transaction(
                        BANK_US,
                        f"pad-{number}",
                        pair(
                            settlement_account(BANK_US, "USD"),
                            settlement_account(BANK_PK, "USD"),
                            amount(f"pad-{number}", 50_000),
                            "USD",
                        ),
                    )
                ]
            )

    def setup(self) -> None:
        """Bootstrap, registrations, accounts and funding."""
        operator_key = public_bytes(self.keys[OPERATOR])
        self.commit(
            [
                RegisterSigningKey(f"bootstrap:{OPERATOR}", OPERATOR, operator_key),
                NewEvent(
                    f"participant:{OPERATOR}",
                    "participant_registered",
                    {"participant_id": OPERATOR, "role": "operator"},
                ),
            ],
            linked=True,
        )
        for participant in REGISTERED:
            public_key = public_bytes(self.keys[participant])
            role = "fx_provider" if participant == FX_PROVIDER else "bank"
            country = "PK" if participant == BANK_PK else "US"
            signed = self.sign(
                OPERATOR,
                "RegisterParticipantInstruction",
                {
                    "instruction_id": f"register:{participant}",
                    "target_participant_id": participant,
                    "country": country,
                    "signing_public_key": base64.b64encode(public_key).decode("ascii"),
                },
            )
            # One signature, two entries: the key and the registration event
            # (as the participant service commits them).
            self.commit(
                [
                    RegisterSigningKey(f"register:{participant}", participant, public_key, signed),
                    NewEvent(
                        f"participant:{participant}",
                        "participant_registered",
                        {"participant_id": participant, "role": role, "country": country},
                        signed,
                    ),
                ],
                linked=True,
            )
        accounts: list[Command] = []
        for currency in ("USD", "PKR"):
            account_id = funding_account(currency)
            accounts.append(
                NewAccount(
                    account_id,
                    OPERATOR,
                    currency,
                    Side.DEBIT,
                    instruction=self.sign(
                        OPERATOR,
                        "CreateAccountInstruction",
                        {
                            "instruction_id": account_id,
                            "owner_participant_id": OPERATOR,
                            "currency": currency,
                            "normal_side": "SIDE_DEBIT",
                        },
                    ),
                )
            )
        for account_id, owner, currency in ACCOUNT_OWNERS:
            accounts.append(
                NewAccount(
                    account_id,
                    owner,
                    currency,
                    Side.CREDIT,
                    flags=frozenset({AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS}),
                    instruction=self.sign(
                        OPERATOR,
                        "CreateAccountInstruction",
                        {
                            "instruction_id": account_id,
                            "owner_participant_id": owner,
                            "currency": currency,
                            "normal_side": "SIDE_CREDIT",
                            "debits_must_not_exceed_credits": True,
                        },
                    ),
                )
            )
        self.commit(accounts)
        self.commit(
            [
                self.transaction(
                    OPERATOR,
                    f"fund:{account_id}",
                    pair(funding_account(currency), account_id, FUNDING_MINOR[currency], currency),
                    code="FUND",
                )
                for account_id, _, currency in ACCOUNT_OWNERS
            ]
        )
        self.set_up = True

    def round(self) -> None:
        """One round of traffic (see the module docstring)."""
        number = self.round_number
        self.round_number += 1
        us_usd = settlement_account(BANK_US, "USD")
        us_pkr = settlement_account(BANK_US, "PKR")
        pk_usd = settlement_account(BANK_PK, "USD")
        pk_pkr = settlement_account(BANK_PK, "PKR")
        fx_usd = settlement_account(FX_PROVIDER, "USD")
        fx_pkr = settlement_account(FX_PROVIDER, "PKR")

        if number == ROTATION_ROUND:
            new_key = public_bytes(self.rotated_key)
            self.commit(
                [
                    RegisterSigningKey(
                        f"rotate:{BANK_US}:{number}",
                        BANK_US,
                        new_key,
                        self.sign(
                            OPERATOR,
                            "RotateSigningKeyInstruction",
                            {
                                "instruction_id": f"rotate:{BANK_US}:{number}",
                                "target_participant_id": BANK_US,
                                "signing_public_key": base64.b64encode(new_key).decode("ascii"),
                            },
                        ),
                    )
                ]
            )
            self.keys[BANK_US] = self.rotated_key

        payment = f"us-{number}"
        uetr = str(
            uuid.UUID(bytes=hashlib.sha256(payment.encode("ascii")).digest()[:16], version=4)
        )
        self.commit(
            [
                self.transaction(
                    BANK_US,
                    payment,
                    pair(us_usd, pk_usd, amount(payment, 5_000_000), "USD"),
                    code="PACS008",
                    reference=uetr,
                    metadata={"purpose": "offtake provisional payment", "round": number},
                )
            ]
        )

        items = [
            self.transaction(
                BANK_PK,
                f"pk-{number}-{item}",
                pair(pk_pkr, us_pkr, amount(f"pk-{number}-{item}", 90_000_000), "PKR"),
                signed=False,
            )
            for item in range(BATCH_ITEMS)
        ]
        shared = self.sign(
            BANK_PK,
            "TransactionBatchInstruction",
            {
                "instruction_id": f"pk-batch-{number}",
                "linked": True,
                "item_sha256": [
                    base64.b64encode(hashlib.sha256(self.item_body(BANK_PK, item)).digest()).decode(
                        "ascii"
                    )
                    for item in items
                ],
            },
        )
        self.commit(
            [dataclasses.replace(item, instruction=shared) for item in items],
            linked=True,
        )

        dollars = amount(f"pvp-{number}", 2_000_000)
        self.commit(
            [
                self.transaction(
                    BANK_US,
                    f"pvp-{number}",
                    (
                        Posting(us_usd, Side.DEBIT, dollars, "USD"),
                        Posting(fx_usd, Side.CREDIT, dollars, "USD"),
                        Posting(fx_pkr, Side.DEBIT, dollars * PKR_PER_USD, "PKR"),
                        Posting(pk_pkr, Side.CREDIT, dollars * PKR_PER_USD, "PKR"),
                    ),
                    code="PVP",
                )
            ]
        )

        holds: list[Command] = []
        if self.open_hold is not None:
            holds.append(
                PostPending(
                    f"post-{self.open_hold}",
                    self.open_hold,
                    instruction=self.sign(
                        BANK_US,
                        "PostPendingInstruction",
                        {
                            "instruction_id": f"post-{self.open_hold}",
                            "pending_transaction_id": self.open_hold,
                        },
                    ),
                )
            )
        self.open_hold = f"hold-{number}"
        holds.append(
            self.transaction(
                BANK_US,
                self.open_hold,
                pair(us_usd, pk_usd, amount(self.open_hold, 3_000_000), "USD"),
                timeout_seconds=HOLD_TIMEOUT_SECONDS,
            )
        )
        self.commit(holds)

        partial = f"part-{number}"
        reserved = amount(partial, 80_000_000)
        self.commit(
            [
                self.transaction(
                    BANK_PK,
                    partial,
                    pair(pk_pkr, us_pkr, reserved, "PKR"),
                    timeout_seconds=HOLD_TIMEOUT_SECONDS,
                )
            ]
        )
        self.commit(
            [
                PostPending(
                    f"post-{partial}",
                    partial,
                    amount_minor=reserved // 2 + 1,
                    instruction=self.sign(
                        BANK_PK,
                        "PostPendingInstruction",
                        {
                            "instruction_id": f"post-{partial}",
                            "pending_transaction_id": partial,
                            "amount_minor": str(reserved // 2 + 1),
                        },
                    ),
                )
            ]
        )

        voided = f"held-{number}"
        self.commit(
            [
                self.transaction(
                    BANK_US,
                    voided,
                    pair(us_usd, pk_usd, amount(voided, 1_000_000), "USD"),
                    timeout_seconds=HOLD_TIMEOUT_SECONDS,
                )
            ]
        )
        self.commit(
            [
                VoidPending(
                    f"void-{voided}",
                    voided,
                    instruction=self.sign(
                        BANK_US,
                        "VoidPendingInstruction",
                        {"instruction_id": f"void-{voided}", "pending_transaction_id": voided},
                    ),
                )
            ]
        )

        short = f"short-{number}"
        self.commit(
            [
                self.transaction(
                    BANK_PK,
                    short,
                    pair(pk_pkr, us_pkr, amount(short, 7_000_000), "PKR"),
                    timeout_seconds=SHORT_TIMEOUT_SECONDS,
                )
            ]
        )

        if number % 2 == 0:
            reversal = f"rev-{payment}"
            self.commit(
                [
                    Reverse(
                        reversal,
                        payment,
                        code="RETURN",
                        instruction=self.sign(
                            OPERATOR,
                            "ReverseTransactionInstruction",
                            {
                                "instruction_id": reversal,
                                "original_transaction_id": payment,
                                "code": "RETURN",
                            },
                        ),
                    )
                ]
            )

        status = f"status-{payment}"
        self.commit(
            [
                NewEvent(
                    status,
                    "payment_status",
                    {"uetr": uetr, "status": "ACCC"},
                    # No proto message yet: the verifier treats the payload as
                    # opaque and checks only that its participant_id is the signer.
                    self.sign(
                        BANK_PK,
                        "PaymentStatusInstruction",
                        {"instruction_id": status, "uetr": uetr, "status": "ACCC"},
                    ),
                )
            ]
        )

        if number % 4 == 3:
            limit = amount(f"limit-{number}", 1_000_000)
            self.commit(
                [
                    SetDebitLimit(
                        f"limit-{number}",
                        fx_usd,
                        limit,
                        self.sign(
                            OPERATOR,
                            "SetAccountLimitInstruction",
                            {
                                "instruction_id": f"limit-{number}",
                                "account_id": fx_usd,
                                "debit_limit_minor": str(limit),
                            },
                        ),
                    ),
                    SetAccountStatus(
                        f"freeze-{number}",
                        us_pkr,
                        AccountStatus.FROZEN,
                        self.sign(
                            OPERATOR,
                            "FreezeAccountInstruction",
                            {
                                "instruction_id": f"freeze-{number}",
                                "account_id": us_pkr,
                                "reason": "sanctions screening hit under review",
                            },
                        ),
                    ),
                    SetAccountStatus(
                        f"unfreeze-{number}",
                        us_pkr,
                        AccountStatus.OPEN,
                        self.sign(
                            OPERATOR,
                            "UnfreezeAccountInstruction",
                            {"instruction_id": f"unfreeze-{number}", "account_id": us_pkr},
                        ),
                    ),
                ]
            )
        # The short reservation passes its timeout: the next write logs its expiry.
        self.clock.advance(SHORT_TIMEOUT_SECONDS + 1)


def scenario_keys() -> dict[str, Ed25519PrivateKey]:
    """Every participant's first THROWAWAY TEST KEY (see :func:`derived_test_key`)."""
    return {participant: derived_test_key(participant.lower()) for participant in PARTICIPANTS}
