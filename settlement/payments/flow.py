"""The payment flow: FX rates and quotes, payments from submission to settlement.

Plain classes and functions over the hub (ledger, registry, sequencer); the
servicer (:mod:`settlement.services.payment`) decodes requests into the
orders below and encodes the records it gets back. Nothing here knows gRPC.

**Ledger shape** (payment.proto, "Settlement, in ledger terms"). A payment is
one ledger transaction ``payment:<uetr>``, first committed PENDING with a
timeout of :attr:`PaymentSettings.hold_seconds`, reserving the debtor agent's
funds and the FX provider's liquidity against their caps; then posted in full
(``payment:<uetr>:settle``) or voided (``payment:<uetr>:release``), or expired
by the ledger. Cross-currency (payment versus payment), four postings plus the
fee's two:

    settlement:<debtor agent>:<source>   debit  send      settlement:<fx>:<source>   credit send
    settlement:<fx>:<target>             debit  receive   settlement:<creditor>:<t>  credit receive
    settlement:<debtor agent>:<source>   debit  fee       fees:<source>              credit fee

so both legs commit together or not at all. Same currency: one debit, one
credit. The hub's fee account ``fees:<currency>`` (credit-normal, owned by the
operator) is opened by the first payment that needs it.

**Status lifecycle** (pacs.002 codes). Every change is a signed journal event
``payment_status`` with body ``{uetr, sequence, status, reason_code, reason}``,
committed in the same linked group as the ledger entry it describes, so the
export bundle alone tells each payment's history. The event that records a
participant's instruction (the submission's ACTC, a review's outcome) carries
the signed instruction and takes its id, which uses the id up across the hub
as every instruction's does (common.proto); the hub's own changes are
``payment:<uetr>:status:<n>``:

- accepted, nothing holds it: ACTC (received; the event carries the signed
  instruction and, under ``payment``, every field the hub resolved: amounts,
  rate, parties, screening, reporting flags), pending transaction, ACSP
  (funds reserved), post, ACSC (settled): one commit;
- a screening hit: ACTC, pending transaction, PDNG ``RR04`` (held for
  review; the reason names the screened and the listed name); then the
  operator's review releases it (post, ACSC) or rejects it (void, RJCT
  ``RR04``), or the hold times out (the ledger expires the reservation; the
  payment becomes RJCT ``AB05``);
- not enough funds or liquidity (``exceeds_credits`` on any leg): ACTC, RJCT
  ``AM04``, nothing reserved; an account that does not exist, is frozen or
  closed, or holds another currency: ACTC, RJCT ``AC01``. These are answered
  OK with the payment: the instruction was received and decided.

**Commits.** A payment's commands are linked: all commit or none. Payments
submitted together share one linked ledger submit (:class:`LinkedGroups`),
one durable commit for all; a payment that fails is taken out and answered
alone, and the others are submitted again, so none fails for another's sake.

**Hold expiry** is detected lazily, which keeps it to one place with no timer
of its own: :meth:`PaymentFlows.expire_due_holds` records RJCT AB05 for every
held payment whose reservation timed out, and runs before any read of a
payment (GetPayment, GetPaymentMessage, a review), on every poll of a
WatchPayments stream (at most every :data:`SWEEP_INTERVAL_SECONDS`), and
before each submission. The reservation itself is released on time by the
ledger (the hub's timer, or the next write), whether or not the status event
has been written yet; the event is committed in the same database
transaction as, or after, the ledger's ``expire_pending`` entry.

**Order of checks of SubmitPayment** (payment.proto lists the codes; where
it is silent, this is the order): the common checks of common.proto
(``id_taken`` also looks at the ids of committed payments and reviews);
INVALID_ARGUMENT in the order of the rules listed by payment.proto, whatever
the field (uetr, BIC, IBAN, routing number, account number, account kind,
LEI, country, amount, currency, text), each rule over the fields in
instruction order; the idempotency check (the same instruction again: OK,
ALREADY_EXISTED, the payment as it is now; another body:
``exists_with_different_body``); NOT_FOUND ``participant_must_exist``,
``quote_must_exist``; ALREADY_EXISTS ``uetr_taken``; FAILED_PRECONDITION
``quote_expired``, ``quote_used``, ``quote_must_match``; for an imported
pacs.008, the agents' BICs against the registered participants
(``bic_country_must_match``, ``bic_must_match_participant``); the signature
(at commit); then the outcomes above.

**Quotes**: a quote is used by the payment that executes it, whatever that
payment's outcome (a payment rejected AM04 keeps its quote: request a new
one). It is usable while the hub's clock is strictly before ``expires_at``,
checked before submitting and again inside the commit (see
:mod:`settlement.payments.projection`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar

from ledger import canonical
from ledger.errors import (
    AccountMustBeOpen,
    AccountNotFound,
    AmountMustBePositive,
    Conflict,
    CurrencyMustMatchAccount,
    ExceedsCredits,
    ExistsWithDifferentBody,
    IntegrityError,
    LedgerError,
    LinkedCommandFailed,
    PendingExpired,
    TextMustBeValid,
)
from ledger.records import (
    Command,
    CommandResult,
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    PostPending,
    Receipt,
    Side,
    SignedInstruction,
    VoidPending,
)
from ledger.validation import validate_id, validate_text
from settlement.auth import Caller, Role
from settlement.compliance.parties import (
    AccountMustBeIbanOrUs,
    AddressMustBeValid,
    NameMustBeValid,
    PartyFieldInvalid,
    validate_address_lines,
    validate_bic,
    validate_country,
    validate_currency,
    validate_iban,
    validate_lei,
    validate_name,
    validate_routing_number,
    validate_uetr,
    validate_us_account_number,
)
from settlement.compliance.reporting import DEFAULT_THRESHOLDS, ReportingThreshold, reporting_flags
from settlement.compliance.screening import SanctionsList, default_list
from settlement.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFoundError
from settlement.hub import Hub
from settlement.payments import iso, projection
from settlement.payments.fx import (
    Conversion,
    CurrenciesMustDiffer,
    convert_receive,
    convert_send,
    parse_rate,
)
from settlement.payments.projection import (
    PAYMENT_STATUS,
    QUOTE_ISSUED,
    RATE_PUBLISHED,
    TRANSACTION_ID_PREFIX,
    PartyRecord,
    PaymentRecord,
    Quote,
    QuoteExpired,
    QuoteMustExist,
    QuoteMustMatch,
    QuoteUsed,
    Rate,
    Screening,
    UetrTaken,
)
from settlement.registry import Participant

# -- settings and limits ---------------------------------------------------------------------

HOLD_SECONDS_DEFAULT: Final = 24 * 3600
"""A held payment's funds stay reserved for a day: long enough for a compliance
officer to review it on the next business day's morning, short enough that a
forgotten hold does not lock a bank's liquidity for a weekend."""

QUOTE_EXPIRY_SECONDS_DEFAULT: Final = 600
QUOTE_EXPIRY_SECONDS_MAX: Final = 3600
RATE_VALID_SECONDS_MAX: Final = 86_400
END_TO_END_ID_LENGTH_MAX: Final = 35
"""ISO 20022 ``EndToEndId`` is ``Max35Text``."""
REMITTANCE_LENGTH_MAX: Final = 140
REVIEW_REASON_LENGTH_MAX: Final = 140
STATEMENT_DAYS_MAX: Final = 366
"""A statement covers at most a year; longer periods are asked for in parts."""
SWEEP_INTERVAL_SECONDS: Final = 1.0
"""How often, at most, reads look for held payments whose hold has timed out."""
HOLDS_PER_SWEEP_MAX: Final = 1000
PAYMENTS_PER_COMMIT_MAX: Final = 64
"""Payments committed together in one linked ledger submit: at most 6 commands each,
far below the ledger's 8,000 per commit; bounds the retries when some fail."""

PAYMENT_CODE: Final = "PAYMENT"
FEE_ACCOUNT_PREFIX: Final = "fees:"
CHARGE_BEARER_DEFAULT: Final = "DEBT"
"""The fee is debited from the debtor agent on top of the amount sent."""

ACTC, ACSP, PDNG, ACSC, RJCT = "ACTC", "ACSP", "PDNG", "ACSC", "RJCT"
REASON_INSUFFICIENT_FUNDS: Final = "AM04"
REASON_REGULATORY: Final = "RR04"
REASON_ACCOUNT: Final = "AC01"
REASON_EXPIRED: Final = "AB05"

T = TypeVar("T")

_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class PaymentSettings:
    """The payment flow's configuration (defaults are the production values)."""

    hold_seconds: int = HOLD_SECONDS_DEFAULT
    """How long a held (PDNG) payment's reservation lasts before it expires (RJCT AB05)."""
    screening_threshold: float | None = None
    """Sanctions match score from which a name is a hit; None: the list's own (0.90)."""
    reporting_thresholds: tuple[ReportingThreshold, ...] = DEFAULT_THRESHOLDS
    """US travel rule from USD 3,000, US and Pakistani cash transaction reports."""
    sanctions_list: SanctionsList | None = None
    """None: OFAC's SDN list vendored with the package, loaded on first use."""


# -- errors ------------------------------------------------------------------------------------


class ParticipantMustExist(NotFoundError):
    code = "participant_must_exist"


class IdTaken(AlreadyExists):
    code = "id_taken"


class ValidSecondsMustBeInRange(InvalidArgument):
    code = "valid_seconds_must_be_in_range"


class FeeMustNotBeNegative(InvalidArgument):
    code = "fee_must_not_be_negative"


class FixedSideMustBeSpecified(InvalidArgument):
    code = "fixed_side_must_be_specified"


class ExpirySecondsMustBeInRange(InvalidArgument):
    code = "expiry_seconds_must_be_in_range"


class RateMustBePublished(FailedPrecondition):
    code = "rate_must_be_published"


class PaymentMustExist(NotFoundError):
    code = "payment_must_exist"


class PaymentMustBeHeld(FailedPrecondition):
    code = "payment_must_be_held"


class DecisionMustBeSpecified(FailedPrecondition):
    code = "decision_must_be_specified"


class BicMustMatchParticipant(InvalidArgument):
    """An imported pacs.008 names an agent BIC other than the participant's registered one."""

    code = "bic_must_match_participant"


class DateRangeMustBeValid(InvalidArgument):
    code = "date_range_must_be_valid"


class StatementFormatMustBeSpecified(InvalidArgument):
    code = "statement_format_must_be_specified"


class MessageTypeMustBeSpecified(InvalidArgument):
    code = "message_type_must_be_specified"


# The INVALID_ARGUMENT rules of SubmitPayment in payment.proto's order; the
# codes payment.proto does not list (account number, account kind) sit next
# to the account rules they refine.
RULE_PRECEDENCE: Final[tuple[str, ...]] = (
    "uetr_must_be_uuid4",
    "bic_must_be_valid",
    "bic_country_must_match",
    "iban_must_be_valid",
    "routing_number_must_be_valid",
    "account_number_must_be_valid",
    "account_must_be_iban_or_us",
    "lei_must_be_valid",
    "country_must_be_iso3166",
    "amount_must_be_positive",
    "currency_must_be_known",
    "text_must_be_valid",
)


# -- orders (what a participant asks for, decoded) -------------------------------------------


@dataclass(frozen=True, slots=True)
class RateOrder:
    source_currency: str
    target_currency: str
    rate: str
    valid_seconds: int
    fee_minor: int


@dataclass(frozen=True, slots=True)
class QuoteOrder:
    fx_provider_id: str
    source_currency: str
    target_currency: str
    fixed_side: str | None
    """``send``, ``receive``, or None when unspecified."""
    amount_minor: int
    expiry_seconds: int
    """0 means :data:`QUOTE_EXPIRY_SECONDS_DEFAULT`."""


@dataclass(frozen=True, slots=True)
class StatedAmounts:
    """What an imported pacs.008 states; the quote must agree with it (``quote_must_match``)."""

    settlement_amount_minor: int
    settlement_currency: str
    instructed_amount_minor: int | None
    instructed_currency: str | None
    exchange_rate: str | None
    debtor_agent_bic: str
    creditor_agent_bic: str


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    uetr: str
    end_to_end_id: str
    quote_id: str
    amount_minor: int
    """Same-currency payments only (ignored with a quote)."""
    currency: str
    debtor: PartyRecord
    creditor: PartyRecord
    creditor_agent_id: str
    ultimate_debtor: PartyRecord | None = None
    ultimate_creditor: PartyRecord | None = None
    remittance_information: str = ""
    charge_bearer: str | None = None
    """DEBT, CRED or SHAR; None (unspecified) means :data:`CHARGE_BEARER_DEFAULT`."""
    stated: StatedAmounts | None = None
    """Set for an imported pacs.008."""


@dataclass(frozen=True, slots=True)
class ReviewOrder:
    uetr: str
    release: bool | None
    """True: release (settle); False: reject; None: unspecified."""
    reason: str


@dataclass(frozen=True, slots=True)
class Signed:
    """The instruction behind an order: its id and the bytes exactly as signed."""

    instruction_id: str
    instruction: SignedInstruction
    prior_payload: bytes | None = None
    """The caller's own earlier committed instruction with this id, found by the
    common checks in the journal (None when there is none)."""


# -- group commit of payments ----------------------------------------------------------------


@dataclass
class _Linked:
    """One payment's commands, all or nothing, and where its results go."""

    uetr: str
    commands: Sequence[Command]
    future: asyncio.Future[list[CommandResult]]


class LinkedGroups:
    """Commits the linked command lists of concurrent payments in ONE linked ledger submit.

    The sequencer commits a linked request in a database transaction of its
    own, so one request per payment would queue every payment behind one disk
    flush. Here the lists queued while the previous group was committing form
    the next group, submitted as one linked request: all of it commits, or
    nothing does. When a payment's command fails, the failure names it (the
    failing command's position, or the ``uetr`` that a projection error
    carries): that payment alone is answered, with its own results (the
    failing command's error, ``linked_command_failed`` for its others), and
    the group is submitted again without it. So each payment stays all or
    nothing, and never fails because of another.
    """

    def __init__(self, hub: Hub, max_items: int = PAYMENTS_PER_COMMIT_MAX) -> None:
        self.hub = hub
        self.max_items = max_items
        self._queue: asyncio.Queue[_Linked] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, uetr: str, commands: Sequence[Command]) -> list[CommandResult]:
        """Commit ``commands`` (one payment's) linked; their results once durable."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))
        future: asyncio.Future[list[CommandResult]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Linked(uetr, list(commands), future))
        return await future

    async def _run(self, queue: asyncio.Queue[_Linked]) -> None:
        while True:
            group = [await queue.get()]
            while len(group) < self.max_items and not queue.empty():
                group.append(queue.get_nowait())
            try:
                await self._commit(group)
            except Exception as error:  # every caller must be answered, whatever happened
                for item in group:
                    _answer(item, error=error)

    async def _commit(self, group: list[_Linked]) -> None:
        pending = list(group)
        while pending:
            commands = [command for item in pending for command in item.commands]
            try:
                results = await self.hub.sequencer.submit(commands, linked=True)
            except LedgerError as error:
                named = getattr(error, "uetr", None)
                culprit = next((item for item in pending if item.uetr == named), None)
                if culprit is None:
                    for item in pending:
                        _answer(item, error=error)
                    return
                _answer(culprit, error=error)
                pending.remove(culprit)
                continue
            failed_at = next(
                (
                    position
                    for position, result in enumerate(results)
                    if result.error is not None
                    and not isinstance(result.error, LinkedCommandFailed)
                ),
                None,
            )
            start = 0
            for item in list(pending):
                end = start + len(item.commands)
                if failed_at is None or start <= failed_at < end:
                    _answer(item, results=results[start:end])
                    pending.remove(item)
                start = end


def _answer(
    item: _Linked,
    *,
    results: list[CommandResult] | None = None,
    error: BaseException | None = None,
) -> None:
    if item.future.done():
        return  # the caller went away; its commands were committed (or not) all the same
    if error is not None:
        item.future.set_exception(error)
    else:
        item.future.set_result(results or [])


# -- the flows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Committed:
    """A committed instruction found in the payment tables."""

    instruction_id: str
    signer: str
    payload: bytes
    receipt: Receipt
    uetr: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A payment that passed every check, ready to commit."""

    caller: Caller
    order: PaymentOrder
    signed: Signed
    quote: Quote | None
    fx_provider_id: str
    source_currency: str
    send_minor: int
    target_currency: str
    receive_minor: int
    fee_minor: int
    rate: str
    screening: Screening
    reporting_flags: tuple[str, ...]
    open_fee_account: bool


@dataclass
class PaymentFlows:
    """The payment flows of one hub. Async methods; blocking work runs in worker threads."""

    hub: Hub
    settings: PaymentSettings = field(default_factory=PaymentSettings)
    _transitions: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _groups: LinkedGroups | None = field(default=None, init=False)
    _participants: dict[str, Participant] = field(default_factory=dict, init=False)
    _fee_accounts: set[str] = field(default_factory=set, init=False)
    _last_sweep_s: float = field(default=0.0, init=False)
    _sanctions: SanctionsList | None = field(default=None, init=False)
    _sanctions_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def read(self, function: Callable[..., T], *arguments: Any, **keywords: Any) -> T:
        """Call a projection reader with a read connection of its own (blocking)."""
        with self.hub.ledger.reading() as connection:
            return function(connection, *arguments, **keywords)

    async def read_async(self, function: Callable[..., T], *arguments: Any, **keywords: Any) -> T:
        """:meth:`read` in a worker thread."""
        return await asyncio.to_thread(self.read, function, *arguments, **keywords)

    def participant(self, participant_id: str) -> Participant | None:
        """A registered participant; cached, since a registration never changes."""
        found = self._participants.get(participant_id)
        if found is None:
            found = self.hub.registry.get(participant_id)
            if found is not None:
                self._participants[participant_id] = found
        return found

    def groups(self) -> LinkedGroups:
        if self._groups is None:
            self._groups = LinkedGroups(self.hub)
        return self._groups

    def now_us(self) -> int:
        """The hub's clock (the ledger's: quotes expire by the clock that stamps commits)."""
        return int(self.hub.ledger.clock())

    # -- rates ---------------------------------------------------------------------------------

    async def publish_rate(
        self, caller: Caller, order: RateOrder, signed: Signed
    ) -> tuple[Receipt, Rate]:
        """Publish a provider's rate for one pair (payment.proto, PublishRate)."""
        check_rate_order(order)
        event = NewEvent(
            id=signed.instruction_id,
            event_type=RATE_PUBLISHED,
            body={
                "fx_provider_id": caller.participant_id,
                "source_currency": order.source_currency,
                "target_currency": order.target_currency,
                "rate": order.rate,
                "valid_seconds": order.valid_seconds,
                "fee_minor": str(order.fee_minor),
            },
            instruction=signed.instruction,
        )
        (receipt,) = _receipts(await self.hub.sequencer.submit([event]))
        rate = await self.read_async(projection.rate_by_id, event.id)
        if rate is None:
            raise IntegrityError(f"rate {event.id!r} committed without its projection row")
        return receipt, rate

    # -- quotes --------------------------------------------------------------------------------

    async def request_quote(
        self, caller: Caller, order: QuoteOrder, signed: Signed
    ) -> tuple[Receipt, Quote]:
        """A firm quote from the provider's latest valid rate (payment.proto, RequestQuote)."""
        expiry_seconds = check_quote_order(order)
        if signed.prior_payload is not None:
            return await asyncio.to_thread(self._existing_quote, signed)
        event = await asyncio.to_thread(self._quote_event, caller, order, signed, expiry_seconds)
        try:
            (receipt,) = _receipts(await self.hub.sequencer.submit([event]))
        except ExistsWithDifferentBody:
            # A concurrent retry of the same instruction committed first,
            # priced from another rate: answer with that one.
            return await asyncio.to_thread(self._existing_quote, signed)
        quote = await self.read_async(projection.quote_by_id, event.id)
        if quote is None:
            raise IntegrityError(f"quote {event.id!r} committed without its projection row")
        return receipt, quote

    def _quote_event(
        self, caller: Caller, order: QuoteOrder, signed: Signed, expiry_seconds: int
    ) -> NewEvent:
        provider = (
            self.participant(order.fx_provider_id) if is_valid_id(order.fx_provider_id) else None
        )
        if provider is None or provider.role is not Role.FX_PROVIDER:
            raise _with_field(
                ParticipantMustExist(
                    f"fx_provider_id {order.fx_provider_id!r:.80} is not a registered FX provider"
                ),
                "fx_provider_id",
            )
        rate = self.read(
            projection.latest_valid_rate,
            order.fx_provider_id,
            order.source_currency,
            order.target_currency,
            self.now_us(),
        )
        if rate is None:
            raise RateMustBePublished(
                f"{order.fx_provider_id} has no valid {order.source_currency}/"
                f"{order.target_currency} rate now; ask the provider to publish one"
            )
        conversion = _convert(order, rate.rate)
        return NewEvent(
            id=signed.instruction_id,
            event_type=QUOTE_ISSUED,
            body={
                "requester_id": caller.participant_id,
                "fx_provider_id": order.fx_provider_id,
                "rate_id": rate.rate_id,
                "source_currency": order.source_currency,
                "target_currency": order.target_currency,
                "fixed_side": order.fixed_side,
                "send_minor": str(conversion.send_minor),
                "receive_minor": str(conversion.receive_minor),
                "fee_minor": str(rate.fee_minor),
                "rate": rate.rate,
                "expiry_seconds": expiry_seconds,
            },
            instruction=signed.instruction,
        )

    def _existing_quote(self, signed: Signed) -> tuple[Receipt, Quote]:
        quote = self.read(projection.quote_by_id, signed.instruction_id)
        payload = _committed_payload(self.hub.ledger, quote.journal_index) if quote else None
        if quote is None or payload is None:
            # The id was used by something other than a quote of this caller.
            raise ExistsWithDifferentBody(
                signed.instruction_id,
                _differing_fields(signed.prior_payload or b"{}", signed.instruction.payload),
            )
        if payload != signed.instruction.payload:
            raise ExistsWithDifferentBody(
                signed.instruction_id, _differing_fields(payload, signed.instruction.payload)
            )
        receipt = Receipt(
            signed.instruction_id,
            quote.journal_index,
            quote.leaf_hash,
            quote.issued_at_us,
            existed=True,
        )
        return receipt, quote

    # -- payments ------------------------------------------------------------------------------

    async def submit_payment(
        self, caller: Caller, order: PaymentOrder, signed: Signed
    ) -> tuple[Receipt, PaymentRecord]:
        """Validate, screen, reserve and settle (or hold, or reject) one payment."""
        await self.expire_due_holds()
        prepared = await asyncio.to_thread(self._prepare, caller, order, signed)
        if isinstance(prepared, tuple):
            return prepared
        return await self._commit_payment(prepared)

    def _prepare(
        self, caller: Caller, order: PaymentOrder, signed: Signed
    ) -> _Prepared | tuple[Receipt, PaymentRecord]:
        ledger = self.hub.ledger
        committed = self._committed_in_payments(signed.instruction_id)
        if committed is not None and committed.signer != caller.participant_id:
            raise _id_taken(signed.instruction_id)
        check_payment_order(order)
        if committed is not None:
            return self._existing_payment(committed, signed)
        if signed.prior_payload is not None:
            raise ExistsWithDifferentBody(
                signed.instruction_id,
                _differing_fields(signed.prior_payload, signed.instruction.payload),
            )
        creditor_agent = (
            self.participant(order.creditor_agent_id)
            if is_valid_id(order.creditor_agent_id)
            else None
        )
        if creditor_agent is None or creditor_agent.role is not Role.BANK:
            raise _with_field(
                ParticipantMustExist(
                    f"creditor_agent_id {order.creditor_agent_id!r:.80} is not a registered bank"
                ),
                "creditor_agent_id",
            )
        with ledger.reading() as connection:
            quote = (
                projection.quote_by_id(connection, order.quote_id)
                if is_valid_id(order.quote_id)
                else None
            )
            uetr_taken = projection.payment_exists(connection, order.uetr)
        if order.quote_id and quote is None:
            raise _with_field(
                QuoteMustExist(f"quote {order.quote_id!r:.80} does not exist"), "quote_id"
            )
        if uetr_taken:
            raise _with_field(
                UetrTaken(
                    f"UETR {order.uetr} belongs to another payment; a UETR names one payment "
                    "for ever, generate a new one"
                ),
                "uetr",
            )
        if quote is not None:
            _check_quote_usable(quote, caller, order, self.now_us())
        if order.stated is not None:
            debtor_agent = self.participant(caller.participant_id)
            _check_agent_bics(order.stated, debtor_agent, creditor_agent)
        if quote is not None:
            fx_provider_id = quote.fx_provider_id
            source, send = quote.source_currency, quote.send_minor
            target, receive = quote.target_currency, quote.receive_minor
            fee, rate = quote.fee_minor, quote.rate
        else:
            fx_provider_id, rate, fee = "", "", 0
            source = target = order.currency
            send = receive = order.amount_minor
        screening = self._screen(order)
        flags = list(reporting_flags(send, source, thresholds=self.settings.reporting_thresholds))
        if target != source:
            for flag in reporting_flags(
                receive, target, thresholds=self.settings.reporting_thresholds
            ):
                if flag not in flags:
                    flags.append(flag)
        open_fee_account = False
        if fee > 0:
            fee_account = FEE_ACCOUNT_PREFIX + source
            if fee_account not in self._fee_accounts:
                try:
                    ledger.account(fee_account)
                    self._fee_accounts.add(fee_account)
                except AccountNotFound:
                    open_fee_account = True
        return _Prepared(
            caller=caller,
            order=order,
            signed=signed,
            quote=quote,
            fx_provider_id=fx_provider_id,
            source_currency=source,
            send_minor=send,
            target_currency=target,
            receive_minor=receive,
            fee_minor=fee,
            rate=rate,
            screening=screening,
            reporting_flags=tuple(flags),
            open_fee_account=open_fee_account,
        )

    async def _commit_payment(self, prepared: _Prepared) -> tuple[Receipt, PaymentRecord]:
        uetr = prepared.order.uetr
        commands = self._submission_commands(prepared, rejection=None, keyed_by_instruction=True)
        results = await self.groups().submit(uetr, commands)
        error = _first_error(results)
        rejection: tuple[str, str] | None = None
        if isinstance(error, ExceedsCredits):
            rejection = (
                REASON_INSUFFICIENT_FUNDS,
                f"insufficient funds or liquidity: {error.message}",
            )
        elif isinstance(error, AccountNotFound | AccountMustBeOpen | CurrencyMustMatchAccount):
            rejection = (REASON_ACCOUNT, f"an account cannot take the payment: {error.message}")
        elif isinstance(error, Conflict):
            # Another submission with this UETR (or this very instruction) won the race.
            return await asyncio.to_thread(self._after_conflict, prepared, error)
        elif error is not None:
            raise error
        if rejection is not None:
            commands = self._submission_commands(
                prepared, rejection=rejection, keyed_by_instruction=True
            )
            results = await self.groups().submit(uetr, commands)
            error = _first_error(results)
            if isinstance(error, Conflict):
                return await asyncio.to_thread(self._after_conflict, prepared, error)
            if error is not None:
                raise error
        receipt = _instruction_receipt(results, prepared.signed.instruction_id)
        payment = await self.read_async(projection.payment_by_uetr, prepared.order.uetr)
        if payment is None:
            raise IntegrityError(f"payment {prepared.order.uetr} committed without its row")
        return receipt, payment

    def _after_conflict(
        self, prepared: _Prepared, error: LedgerError
    ) -> tuple[Receipt, PaymentRecord]:
        committed = self._committed_in_payments(prepared.signed.instruction_id)
        if committed is not None:
            if committed.signer != prepared.caller.participant_id:
                raise _id_taken(prepared.signed.instruction_id)
            return self._existing_payment(committed, prepared.signed)
        if self.read(projection.payment_exists, prepared.order.uetr):
            raise _with_field(
                UetrTaken(f"UETR {prepared.order.uetr} belongs to another payment"), "uetr"
            )
        # The ledger ids of this payment are taken by something else (e.g. a
        # transaction named payment:<uetr> posted through LedgerService).
        raise _with_field(
            UetrTaken(
                f"the ledger ids of UETR {prepared.order.uetr} are taken ({error.code}); "
                "generate a new UETR"
            ),
            "uetr",
        )

    def _submission_commands(
        self,
        prepared: _Prepared,
        *,
        rejection: tuple[str, str] | None,
        keyed_by_instruction: bool = False,
    ) -> list[Command]:
        """The linked commands of a submission (see the module docstring).

        ``keyed_by_instruction``: the ACTC event takes the instruction's id, so that
        the id is used up across the hub (another flow that commits its own
        event under the instruction's id, as loans do, leaves it False).
        """
        order = prepared.order
        uetr = order.uetr
        transaction_id = TRANSACTION_ID_PREFIX + uetr
        instruction = prepared.signed.instruction
        hold_seconds = self.settings.hold_seconds
        submitted = {
            "instruction_id": prepared.signed.instruction_id,
            "end_to_end_id": order.end_to_end_id,
            "debtor_agent_id": prepared.caller.participant_id,
            "creditor_agent_id": order.creditor_agent_id,
            "fx_provider_id": prepared.fx_provider_id,
            "quote_id": order.quote_id,
            "source_currency": prepared.source_currency,
            "send_minor": str(prepared.send_minor),
            "target_currency": prepared.target_currency,
            "receive_minor": str(prepared.receive_minor),
            "fee_minor": str(prepared.fee_minor),
            "rate": prepared.rate,
            "transaction_id": "" if rejection is not None else transaction_id,
            **projection.payment_details(
                debtor=order.debtor,
                creditor=order.creditor,
                ultimate_debtor=order.ultimate_debtor,
                ultimate_creditor=order.ultimate_creditor,
                remittance_information=order.remittance_information,
                charge_bearer=order.charge_bearer or CHARGE_BEARER_DEFAULT,
                screening=prepared.screening,
                reporting_flags=prepared.reporting_flags,
            ),
        }
        commands: list[Command] = [
            status_event(
                uetr,
                0,
                ACTC,
                reason="received and technically valid",
                payment=submitted,
                instruction=instruction,
                instruction_id=prepared.signed.instruction_id,
                event_id=prepared.signed.instruction_id if keyed_by_instruction else None,
            )
        ]
        if rejection is not None:
            code, reason = rejection
            commands.append(status_event(uetr, 1, RJCT, code, reason))
            return commands
        if prepared.open_fee_account:
            commands.insert(
                0,
                NewAccount(
                    id=FEE_ACCOUNT_PREFIX + prepared.source_currency,
                    owner=self.hub.settings.operator_id,
                    currency=prepared.source_currency,
                    normal_side=Side.CREDIT,
                ),
            )
        commands.append(
            NewTransaction(
                id=transaction_id,
                postings=payment_postings(prepared, prepared.caller.participant_id),
                code=PAYMENT_CODE,
                reference=uetr,
                pending=True,
                timeout_seconds=hold_seconds,
                instruction=instruction,
            )
        )
        if prepared.screening.hit:
            commands.append(
                status_event(
                    uetr,
                    1,
                    PDNG,
                    REASON_REGULATORY,
                    hold_reason(prepared.screening, hold_seconds),
                    hold_seconds=hold_seconds,
                )
            )
            return commands
        commands += [
            status_event(uetr, 1, ACSP, reason="funds reserved; settlement in process"),
            PostPending(
                id=transaction_id + ":settle",
                pending_id=transaction_id,
                code=PAYMENT_CODE,
                reference=uetr,
            ),
            status_event(uetr, 2, ACSC, reason="settled on the hub's ledger"),
        ]
        return commands

    def _existing_payment(
        self, committed: _Committed, signed: Signed
    ) -> tuple[Receipt, PaymentRecord]:
        if committed.payload != signed.instruction.payload:
            raise ExistsWithDifferentBody(
                signed.instruction_id,
                _differing_fields(committed.payload, signed.instruction.payload),
            )
        payment = self.read(projection.payment_by_uetr, committed.uetr)
        if payment is None:
            raise IntegrityError(f"payment {committed.uetr} has a status row but no payment row")
        return committed.receipt, payment

    def _committed_in_payments(self, instruction_id: str) -> _Committed | None:
        """A committed submission or review with this instruction id, from the payment tables."""
        ledger = self.hub.ledger
        use = self.read(projection.instruction_use, instruction_id)
        if use is None:
            return None
        leaf = canonical.decode(ledger.leaf(use.journal_index))
        instruction = leaf.get("instruction") if isinstance(leaf, dict) else None
        if not instruction:
            raise IntegrityError(
                f"journal entry {use.journal_index} records instruction {instruction_id!r} "
                "but holds no signed instruction"
            )
        return _Committed(
            instruction_id=instruction_id,
            signer=str(instruction["signer"]),
            payload=base64.b64decode(instruction["payload"]),
            receipt=Receipt(
                instruction_id, use.journal_index, use.leaf_hash, use.committed_at_us, existed=True
            ),
            uetr=use.uetr,
        )

    async def import_pacs008(
        self,
        caller: Caller,
        xml: bytes,
        creditor_agent_id: str,
        quote_id: str,
        signed: Signed,
    ) -> tuple[Receipt, PaymentRecord]:
        """A payment submitted as a pacs.008.001.08 document (payment.proto, ImportPacs008)."""
        committed = await asyncio.to_thread(self._committed_in_payments, signed.instruction_id)
        if committed is not None and committed.signer != caller.participant_id:
            raise _id_taken(signed.instruction_id)
        imported = await asyncio.to_thread(iso.imported_payment, xml)
        order = PaymentOrder(
            uetr=imported.uetr,
            end_to_end_id=imported.end_to_end_id,
            quote_id=quote_id,
            amount_minor=imported.settlement_amount_minor,
            currency=imported.settlement_currency,
            debtor=imported.debtor,
            creditor=imported.creditor,
            creditor_agent_id=creditor_agent_id,
            remittance_information=imported.remittance_information,
            charge_bearer=imported.charge_bearer,
            stated=StatedAmounts(
                settlement_amount_minor=imported.settlement_amount_minor,
                settlement_currency=imported.settlement_currency,
                instructed_amount_minor=imported.instructed_amount_minor,
                instructed_currency=imported.instructed_currency,
                exchange_rate=imported.exchange_rate,
                debtor_agent_bic=imported.debtor_agent_bic,
                creditor_agent_bic=imported.creditor_agent_bic,
            ),
        )
        return await self.submit_payment(caller, order, signed)

    # -- screening -------------------------------------------------------------------------------

    def sanctions(self) -> SanctionsList:
        """The sanctions list (loaded on first use: ~3 s for OFAC's SDN list)."""
        if self._sanctions is None:
            with self._sanctions_lock:
                if self._sanctions is None:
                    self._sanctions = self.settings.sanctions_list or default_list()
        return self._sanctions

    def _screen(self, order: PaymentOrder) -> Screening:
        """Screen every party's name; the best hit, if any, holds the payment."""
        sanctions = self.sanctions()
        threshold = self.settings.screening_threshold
        parties = [("debtor", order.debtor), ("creditor", order.creditor)]
        if order.ultimate_debtor is not None:
            parties.append(("ultimate_debtor", order.ultimate_debtor))
        if order.ultimate_creditor is not None:
            parties.append(("ultimate_creditor", order.ultimate_creditor))
        best: tuple[float, str, str] | None = None
        used_threshold = sanctions.threshold if threshold is None else threshold
        for name_field, party in parties:
            try:
                result = sanctions.screen(party.name, threshold=threshold, field=name_field)
            except PartyFieldInvalid as error:
                raise _text_error(error) from None
            used_threshold = result.threshold
            if result.hit and (best is None or result.best_score > best[0]):
                best = (result.best_score, party.name, result.matches[0].listed_name)
        if best is None:
            return Screening(False, "", "", "", sanctions.digest, str(used_threshold))
        score, screened, listed = best
        return Screening(
            True, f"{score:.4f}", screened, listed, sanctions.digest, str(used_threshold)
        )

    # -- review and expiry ---------------------------------------------------------------------

    async def review_payment(
        self, caller: Caller, order: ReviewOrder, signed: Signed
    ) -> tuple[Receipt, PaymentRecord]:
        """Release or reject a held payment (payment.proto, ReviewPayment)."""
        committed = await asyncio.to_thread(self._committed_in_payments, signed.instruction_id)
        if committed is not None and committed.signer != caller.participant_id:
            raise _id_taken(signed.instruction_id)
        check_review_order(order)
        if committed is not None:
            return await asyncio.to_thread(self._existing_payment, committed, signed)
        if signed.prior_payload is not None:
            raise ExistsWithDifferentBody(
                signed.instruction_id,
                _differing_fields(signed.prior_payload, signed.instruction.payload),
            )
        await self.expire_due_holds(force=True)
        async with self._transitions:
            payment = await self.read_async(projection.payment_by_uetr, order.uetr)
            if payment is None:
                raise _with_field(PaymentMustExist(f"payment {order.uetr} does not exist"), "uetr")
            if payment.status != PDNG:
                raise PaymentMustBeHeld(
                    f"payment {order.uetr} is {payment.status} {payment.reason_code}".rstrip()
                    + "; only a held (PDNG) payment is reviewed"
                )
            if order.release is None:
                raise _with_field(
                    DecisionMustBeSpecified("decision must be RELEASE or REJECT"), "decision"
                )
            commands = review_commands(payment, order, signed)
            results = await self.groups().submit(payment.uetr, commands)
        error = _first_error(results)
        if isinstance(error, PendingExpired):
            await self.expire_due_holds(force=True)
            raise PaymentMustBeHeld(
                f"payment {order.uetr}'s hold expired before the review committed (RJCT AB05)"
            )
        if error is not None:
            raise error
        receipt = _instruction_receipt(results, signed.instruction_id)
        reviewed = await self.read_async(projection.payment_by_uetr, order.uetr)
        if reviewed is None:
            raise IntegrityError(f"payment {order.uetr} vanished during its review")
        return receipt, reviewed

    async def expire_due_holds(self, *, force: bool = False) -> int:
        """Record RJCT AB05 for every held payment whose reservation timed out.

        Runs on the writer only, at most every :data:`SWEEP_INTERVAL_SECONDS`
        unless ``force``. Returns how many payments it rejected.
        """
        if not self.hub.lease.held:
            return 0
        moment = time.monotonic()
        if not force and moment - self._last_sweep_s < SWEEP_INTERVAL_SECONDS:
            return 0
        self._last_sweep_s = moment
        due = await self.read_async(projection.holds_due, self.now_us(), HOLDS_PER_SWEEP_MAX)
        if not due:
            return 0
        async with self._transitions:
            held = await self.read_async(projection.payments_by_uetr, due)
            now_us = self.now_us()
            events: list[Command] = [
                status_event(
                    payment.uetr,
                    len(payment.history),
                    RJCT,
                    REASON_EXPIRED,
                    "the hold expired before review; the reservation was released",
                )
                for payment in held.values()
                if payment.status == PDNG
                and payment.hold_expires_at_us is not None
                and payment.hold_expires_at_us <= now_us
            ]
            if not events:
                return 0
            results = await self.hub.sequencer.submit(events)
        failed = [result for result in results if result.error is not None]
        if failed:
            raise failed[0].error or IntegrityError("an expiry event failed without an error")
        return len(events)

    # -- reads ---------------------------------------------------------------------------------

    async def payment_for(self, caller: Caller, uetr: str) -> PaymentRecord:
        """A payment the caller may see (payment.proto, GetPayment), hold expiry applied."""
        check_uetr(uetr)
        payment = await self.read_async(projection.payment_by_uetr, uetr)
        if payment is not None and payment.status == PDNG:
            hold_end = payment.hold_expires_at_us
            if hold_end is not None and hold_end <= self.now_us():
                await self.expire_due_holds(force=True)
                payment = await self.read_async(projection.payment_by_uetr, uetr)
        if payment is None or not (
            caller.sees_everything or payment.visible_to(caller.participant_id)
        ):
            raise _with_field(PaymentMustExist(f"payment {uetr} does not exist"), "uetr")
        return payment

    async def payment_message(self, caller: Caller, uetr: str, message_type: str | None) -> bytes:
        """pacs.008.001.08 or pacs.002.001.10 of a payment, valid against the XSD."""
        payment = await self.payment_for(caller, uetr)
        if message_type is None:
            raise _with_field(
                MessageTypeMustBeSpecified("message_type must be PACS_008 or PACS_002"),
                "message_type",
            )
        return await asyncio.to_thread(self._payment_message, payment, message_type)

    def _payment_message(self, payment: PaymentRecord, message_type: str) -> bytes:
        debtor_agent = self.participant(payment.debtor_agent_id)
        creditor_agent = self.participant(payment.creditor_agent_id)
        if debtor_agent is None or creditor_agent is None:
            raise IntegrityError(f"payment {payment.uetr} names an unregistered agent")
        if message_type == "pacs.008":
            return iso.build_pacs008(payment, debtor_agent, creditor_agent)
        return iso.build_pacs002(payment)

    async def account_statement(
        self,
        caller: Caller,
        account_id: str,
        from_text: str,
        to_text: str,
        statement_format: str | None,
    ) -> bytes:
        """camt.053 or camt.054 of one account over whole UTC days (payment.proto)."""
        first_day, last_day = parse_date_range(from_text, to_text)
        if statement_format is None:
            raise _with_field(
                StatementFormatMustBeSpecified("format must be CAMT_053 or CAMT_054"), "format"
            )
        return await asyncio.to_thread(
            self._statement, caller, account_id, first_day, last_day, statement_format
        )

    def _statement(
        self,
        caller: Caller,
        account_id: str,
        first_day: date,
        last_day: date,
        statement_format: str,
    ) -> bytes:
        ledger = self.hub.ledger
        try:
            if not is_valid_id(account_id):
                raise AccountNotFound(account_id)
            account = ledger.account(account_id)
        except AccountNotFound:
            raise _with_field(
                AccountNotFound(f"account {account_id!r:.80} does not exist"), "account_id"
            ) from None
        if not caller.sees_everything and account.owner != caller.participant_id:
            raise _with_field(
                AccountNotFound(f"account {account_id!r:.80} does not exist"), "account_id"
            )
        movements = iso.account_movements(ledger, account, first_day, last_day)
        if statement_format == "camt.053":
            return iso.build_camt053(account, movements, self.now_us())
        return iso.build_camt054(account, movements, self.now_us())

    # -- watching --------------------------------------------------------------------------------

    async def watch_position(self) -> int:
        return await self.read_async(projection.last_status_index)

    async def changes_after(
        self, caller: Caller, position: int, uetr: str | None
    ) -> tuple[list[projection.WatchedChange], int]:
        """Status changes after ``position`` the caller may see (as debtor or creditor agent)."""
        await self.expire_due_holds()
        return await self.read_async(
            projection.status_changes_after,
            position,
            participant_id=None if caller.sees_everything else caller.participant_id,
            uetr=uetr,
        )


# -- commands -----------------------------------------------------------------------------------


def status_event(
    uetr: str,
    sequence: int,
    status: str,
    reason_code: str = "",
    reason: str = "",
    *,
    payment: dict[str, Any] | None = None,
    instruction: SignedInstruction | None = None,
    instruction_id: str | None = None,
    hold_seconds: int | None = None,
    event_id: str | None = None,
) -> NewEvent:
    """The ``payment_status`` event of one status change (see the module docstring).

    ``event_id`` names the event that records a participant's instruction by the
    instruction's id; the hub's own changes are ``payment:<uetr>:status:<n>``.
    """
    body: dict[str, Any] = {
        "uetr": uetr,
        "sequence": sequence,
        "status": status,
        "reason_code": reason_code,
        "reason": reason,
    }
    if payment is not None:
        body["payment"] = payment
    if instruction_id is not None:
        body["instruction_id"] = instruction_id
    if hold_seconds is not None:
        body["hold_seconds"] = hold_seconds
    return NewEvent(
        id=event_id or f"{TRANSACTION_ID_PREFIX}{uetr}:status:{sequence}",
        event_type=PAYMENT_STATUS,
        body=body,
        instruction=instruction,
    )


def settlement_account_id(participant_id: str, currency_code: str) -> str:
    return f"settlement:{participant_id}:{currency_code}"


def payment_postings(prepared: _Prepared, debtor_agent_id: str) -> tuple[Posting, ...]:
    """The payment's postings: PvP legs (or one leg), then the fee (see the module docstring)."""
    order = prepared.order
    source, target = prepared.source_currency, prepared.target_currency
    debtor = settlement_account_id(debtor_agent_id, source)
    creditor = settlement_account_id(order.creditor_agent_id, target)
    if source == target:
        postings = [
            Posting(debtor, Side.DEBIT, prepared.send_minor, source),
            Posting(creditor, Side.CREDIT, prepared.receive_minor, target),
        ]
    else:
        provider = prepared.fx_provider_id
        postings = [
            Posting(debtor, Side.DEBIT, prepared.send_minor, source),
            Posting(
                settlement_account_id(provider, source), Side.CREDIT, prepared.send_minor, source
            ),
            Posting(
                settlement_account_id(provider, target), Side.DEBIT, prepared.receive_minor, target
            ),
            Posting(creditor, Side.CREDIT, prepared.receive_minor, target),
        ]
    if prepared.fee_minor > 0:
        postings += [
            Posting(debtor, Side.DEBIT, prepared.fee_minor, source),
            Posting(FEE_ACCOUNT_PREFIX + source, Side.CREDIT, prepared.fee_minor, source),
        ]
    return tuple(postings)


def review_commands(payment: PaymentRecord, order: ReviewOrder, signed: Signed) -> list[Command]:
    """Post (release) or void (reject) the reservation, and record the status it leads to."""
    transaction_id = TRANSACTION_ID_PREFIX + payment.uetr
    sequence = len(payment.history)
    note = f": {order.reason}" if order.reason else ""
    money: Command
    if order.release:
        money = PostPending(
            id=transaction_id + ":settle",
            pending_id=transaction_id,
            code=PAYMENT_CODE,
            reference=payment.uetr,
            instruction=signed.instruction,
        )
        event = status_event(
            payment.uetr,
            sequence,
            ACSC,
            reason=f"released at review and settled{note}",
            instruction=signed.instruction,
            instruction_id=signed.instruction_id,
            event_id=signed.instruction_id,
        )
    else:
        money = VoidPending(
            id=transaction_id + ":release",
            pending_id=transaction_id,
            code=PAYMENT_CODE,
            reference=payment.uetr,
            instruction=signed.instruction,
        )
        event = status_event(
            payment.uetr,
            sequence,
            RJCT,
            REASON_REGULATORY,
            f"rejected at review; the reservation was released{note}",
            instruction=signed.instruction,
            instruction_id=signed.instruction_id,
            event_id=signed.instruction_id,
        )
    return [money, event]


def hold_reason(screening: Screening, hold_seconds: int) -> str:
    return (
        f"sanctions screening: {screening.screened_name!r} matched the listed name "
        f"{screening.listed_name!r} (score {screening.score}, threshold {screening.threshold}); "
        f"held for review, funds reserved for {hold_seconds} s"
    )


# -- checks (pure) --------------------------------------------------------------------------------


def check_rate_order(order: RateOrder) -> None:
    """PublishRate's INVALID_ARGUMENT rules, in payment.proto's order."""
    _currency(order.source_currency, "source_currency")
    _currency(order.target_currency, "target_currency")
    parse_rate(order.rate)
    if order.source_currency == order.target_currency:
        raise _with_field(
            CurrenciesMustDiffer(
                f"a rate converts between two currencies, got {order.source_currency} twice"
            ),
            "target_currency",
        )
    if not 1 <= order.valid_seconds <= RATE_VALID_SECONDS_MAX:
        raise _with_field(
            ValidSecondsMustBeInRange(
                f"valid_seconds must be 1 to {RATE_VALID_SECONDS_MAX}, got {order.valid_seconds}"
            ),
            "valid_seconds",
        )
    if order.fee_minor < 0:
        raise _with_field(
            FeeMustNotBeNegative(f"fee_minor must be 0 or more, got {order.fee_minor}"),
            "fee_minor",
        )


def check_quote_order(order: QuoteOrder) -> int:
    """RequestQuote's INVALID_ARGUMENT rules in order; returns the expiry in seconds."""
    _currency(order.source_currency, "source_currency")
    _currency(order.target_currency, "target_currency")
    if order.source_currency == order.target_currency:
        raise _with_field(
            CurrenciesMustDiffer(
                f"a quote converts between two currencies, got {order.source_currency} twice"
            ),
            "target_currency",
        )
    if order.amount_minor <= 0:
        raise _with_field(
            AmountMustBePositive(f"amount_minor must be at least 1, got {order.amount_minor}"),
            "amount_minor",
        )
    if order.fixed_side is None:
        raise _with_field(
            FixedSideMustBeSpecified("fixed_side must be FIXED_SIDE_SEND or FIXED_SIDE_RECEIVE"),
            "fixed_side",
        )
    if not 0 <= order.expiry_seconds <= QUOTE_EXPIRY_SECONDS_MAX:
        raise _with_field(
            ExpirySecondsMustBeInRange(
                f"expiry_seconds must be 1 to {QUOTE_EXPIRY_SECONDS_MAX} (0 for the default "
                f"{QUOTE_EXPIRY_SECONDS_DEFAULT}), got {order.expiry_seconds}"
            ),
            "expiry_seconds",
        )
    return order.expiry_seconds or QUOTE_EXPIRY_SECONDS_DEFAULT


def check_payment_order(order: PaymentOrder) -> None:
    """Raise the first INVALID_ARGUMENT finding of a payment, by rule precedence then field."""
    findings = payment_findings(order)
    if findings:
        raise findings[0]


def payment_findings(order: PaymentOrder) -> list[LedgerError]:
    """Every INVALID_ARGUMENT finding of a payment, in precedence order (see RULE_PRECEDENCE)."""
    found: list[LedgerError] = []

    def check(function: Any, value: Any, name: str, **keywords: Any) -> None:
        try:
            function(value, field=name, **keywords)
        except PartyFieldInvalid as error:
            found.append(_party_error(error))

    check(validate_uetr, order.uetr, "uetr")
    if order.stated is not None:
        check(validate_bic, order.stated.debtor_agent_bic, "debtor_agent.bic")
        check(validate_bic, order.stated.creditor_agent_bic, "creditor_agent.bic")
    found += _text_findings(order.end_to_end_id, "end_to_end_id", END_TO_END_ID_LENGTH_MAX, 1)
    if not order.quote_id:
        if order.amount_minor <= 0:
            found.append(
                _with_field(
                    AmountMustBePositive(
                        f"amount.amount_minor must be at least 1, got {order.amount_minor}"
                    ),
                    "amount.amount_minor",
                )
            )
        check(validate_currency, order.currency, "amount.currency")
    found += party_findings(order.debtor, "debtor", account_required=True)
    found += party_findings(order.creditor, "creditor", account_required=True)
    if order.ultimate_debtor is not None:
        found += party_findings(order.ultimate_debtor, "ultimate_debtor", account_required=False)
    if order.ultimate_creditor is not None:
        found += party_findings(
            order.ultimate_creditor, "ultimate_creditor", account_required=False
        )
    found += _text_findings(
        order.remittance_information, "remittance_information", REMITTANCE_LENGTH_MAX, 0
    )
    ranked = sorted(
        enumerate(found),
        key=lambda item: (_rule_rank(item[1].code), item[0]),
    )
    return [error for _, error in ranked]


def party_findings(party: PartyRecord, prefix: str, *, account_required: bool) -> list[LedgerError]:
    """Every finding of one party, fields named as in the instruction (``debtor.iban``)."""
    found: list[LedgerError] = []

    def check(function: Any, value: Any, name: str) -> None:
        try:
            function(value, field=name)
        except PartyFieldInvalid as error:
            found.append(_party_error(error))

    check(validate_name, party.name, f"{prefix}.name")
    has_us_account = bool(party.account_number or party.aba_routing_number)
    if party.iban:
        check(validate_iban, party.iban, f"{prefix}.iban")
        if has_us_account:
            found.append(
                _party_error(
                    AccountMustBeIbanOrUs(
                        f"{prefix}.iban",
                        "either an IBAN or an account number with a routing number, not both",
                        party.iban,
                    )
                )
            )
    elif has_us_account:
        check(validate_routing_number, party.aba_routing_number, f"{prefix}.aba_routing_number")
        check(validate_us_account_number, party.account_number, f"{prefix}.account_number")
    elif account_required:
        found.append(
            _party_error(
                AccountMustBeIbanOrUs(
                    f"{prefix}.iban",
                    "an IBAN, or an account_number with an aba_routing_number",
                    "",
                )
            )
        )
    if party.lei:
        check(validate_lei, party.lei, f"{prefix}.lei")
    if party.country or account_required:
        check(validate_country, party.country, f"{prefix}.country")
    check(validate_address_lines, party.address_lines, f"{prefix}.address_lines")
    return found


def check_review_order(order: ReviewOrder) -> None:
    check_uetr(order.uetr)
    findings = _text_findings(order.reason, "reason", REVIEW_REASON_LENGTH_MAX, 0)
    if findings:
        raise findings[0]


def parse_date_range(from_text: str, to_text: str) -> tuple[date, date]:
    """Two inclusive UTC days "YYYY-MM-DD", in order, at most STATEMENT_DAYS_MAX days apart."""
    days: list[date] = []
    for text, name in ((from_text, "from_date"), (to_text, "to_date")):
        try:
            if not _DATE_TEXT.fullmatch(text):
                raise ValueError(text)
            days.append(date.fromisoformat(text))
        except ValueError:
            raise _with_field(
                DateRangeMustBeValid(f"{name} must be a date YYYY-MM-DD, got {text!r:.40}"), name
            ) from None
    first, last = days
    if first > last:
        raise _with_field(
            DateRangeMustBeValid(f"from_date {first} is after to_date {last}"), "to_date"
        )
    if (last - first).days + 1 > STATEMENT_DAYS_MAX:
        raise _with_field(
            DateRangeMustBeValid(
                f"a statement covers at most {STATEMENT_DAYS_MAX} days, got "
                f"{(last - first).days + 1}; ask for shorter periods"
            ),
            "to_date",
        )
    return first, last


def _check_quote_usable(quote: Quote, caller: Caller, order: PaymentOrder, now_us: int) -> None:
    """quote_expired, quote_used, quote_must_match, in payment.proto's order."""
    if now_us >= quote.expires_at_us:
        raise _with_field(
            QuoteExpired(
                f"quote {quote.quote_id!r} expired (it was usable until {quote.expires_at_us} us, "
                f"the hub's clock is {now_us} us); request a new quote"
            ),
            "quote_id",
        )
    if quote.used_by_uetr is not None:
        raise _with_field(
            QuoteUsed(
                f"quote {quote.quote_id!r} was used by payment {quote.used_by_uetr}; "
                "request a new quote"
            ),
            "quote_id",
        )
    if quote.requester_id != caller.participant_id:
        raise _with_field(
            QuoteMustMatch(f"quote {quote.quote_id!r} was issued to another participant"),
            "quote_id",
        )
    stated = order.stated
    if stated is None:
        return
    mismatches = []
    if (stated.settlement_currency, stated.settlement_amount_minor) != (
        quote.target_currency,
        quote.receive_minor,
    ):
        mismatches.append(
            f"IntrBkSttlmAmt {stated.settlement_amount_minor} {stated.settlement_currency} "
            f"(quote: {quote.receive_minor} {quote.target_currency})"
        )
    if stated.instructed_currency is not None and (
        stated.instructed_currency,
        stated.instructed_amount_minor,
    ) != (quote.source_currency, quote.send_minor):
        mismatches.append(
            f"InstdAmt {stated.instructed_amount_minor} {stated.instructed_currency} "
            f"(quote: {quote.send_minor} {quote.source_currency})"
        )
    if stated.exchange_rate is not None and not iso.same_rate(stated.exchange_rate, quote.rate):
        mismatches.append(f"XchgRate {stated.exchange_rate} (quote: {quote.rate})")
    if mismatches:
        raise _with_field(
            QuoteMustMatch(
                f"the pacs.008 does not match quote {quote.quote_id!r}: " + "; ".join(mismatches)
            ),
            "pacs008_xml",
        )


def _check_agent_bics(
    stated: StatedAmounts, debtor_agent: Participant | None, creditor_agent: Participant
) -> None:
    for name, bic, participant in (
        ("debtor_agent.bic", stated.debtor_agent_bic, debtor_agent),
        ("creditor_agent.bic", stated.creditor_agent_bic, creditor_agent),
    ):
        if participant is None:
            raise IntegrityError("the caller is not a registered participant")
        try:
            validate_bic(bic, field=name, country=participant.country)
        except PartyFieldInvalid as error:
            raise _party_error(error) from None
        if not iso.same_bic(bic, participant.bic):
            raise _with_field(
                BicMustMatchParticipant(
                    f"{name}: expected {participant.participant_id}'s BIC {participant.bic}, "
                    f"got {bic}"
                ),
                name,
            )


def _convert(order: QuoteOrder, rate: str) -> Conversion:
    if order.fixed_side == "send":
        return convert_send(order.amount_minor, order.source_currency, order.target_currency, rate)
    return convert_receive(order.amount_minor, order.source_currency, order.target_currency, rate)


def _currency(code: str, name: str) -> None:
    try:
        validate_currency(code, field=name)
    except PartyFieldInvalid as error:
        raise _party_error(error) from None


def check_uetr(uetr: str) -> None:
    try:
        validate_uetr(uetr, field="uetr")
    except PartyFieldInvalid as error:
        raise _party_error(error) from None


def _text_findings(value: str, name: str, length_max: int, length_min: int) -> list[LedgerError]:
    if len(value) < length_min:
        return [
            _with_field(
                TextMustBeValid(
                    f"{name} must be {length_min} to {length_max} characters, got none"
                ),
                name,
            )
        ]
    try:
        validate_text(value, name, length_max)
    except TextMustBeValid as error:
        return [_with_field(error, name)]
    return []


def is_valid_id(value: str) -> bool:
    """Whether ``value`` can name anything at all (1..128 printable ASCII, no spaces).

    Checked before an id is looked up: nothing is stored under another id, and
    PostgreSQL refuses some characters (NUL) in a query.
    """
    try:
        validate_id(value)
    except LedgerError:
        return False
    return True


def _rule_rank(code: str) -> int:
    try:
        return RULE_PRECEDENCE.index(code)
    except ValueError:
        return len(RULE_PRECEDENCE)


def _party_error(error: PartyFieldInvalid) -> LedgerError:
    """A party finding with its field; names and addresses are payment.proto's text rule."""
    if isinstance(error, NameMustBeValid | AddressMustBeValid):
        return _text_error(error)
    return _with_field(error, error.field)


def _text_error(error: PartyFieldInvalid) -> LedgerError:
    return _with_field(TextMustBeValid(error.message), error.field)


def _with_field(error: LedgerError, name: str) -> LedgerError:
    setattr(error, "fields", [name])  # noqa: B010 - the interceptor sends them as Error.fields
    return error


def _id_taken(instruction_id: str) -> IdTaken:
    return IdTaken(
        f"instruction_id {instruction_id!r:.80} is taken by another participant; choose a new "
        "id (e.g. '<participant_id>:<random UUID>')"
    )


def _differing_fields(before: bytes, after: bytes) -> list[str]:
    old, new = json.loads(before), json.loads(after)
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def _committed_payload(ledger: Any, journal_index: int) -> bytes | None:
    leaf = canonical.decode(ledger.leaf(journal_index))
    instruction = leaf.get("instruction") if isinstance(leaf, dict) else None
    return None if not instruction else base64.b64decode(instruction["payload"])


def _first_error(results: Sequence[CommandResult]) -> LedgerError | None:
    """The error that decided a linked submit: the failing command's own."""
    errors = [result.error for result in results if result.error is not None]
    for error in errors:
        if not isinstance(error, LinkedCommandFailed):
            return error
    return errors[0] if errors else None


def _receipts(results: Sequence[CommandResult]) -> list[Receipt]:
    error = _first_error(results)
    if error is not None:
        raise error
    receipts = [result.receipt for result in results if result.receipt is not None]
    if len(receipts) != len(results):
        raise IntegrityError("a command succeeded without a receipt")
    return receipts


def _instruction_receipt(results: Sequence[CommandResult], instruction_id: str) -> Receipt:
    """The receipt of the status event holding the instruction, named by the instruction id."""
    status_receipts = [
        result.receipt
        for result in results
        if result.receipt is not None and (result.id == instruction_id or ":status:" in result.id)
    ]
    exact = [receipt for receipt in status_receipts if receipt.id == instruction_id]
    if not status_receipts:
        raise IntegrityError("a payment commit without a status event")
    found = (exact or status_receipts)[0]
    return Receipt(
        instruction_id,
        found.journal_index,
        found.leaf_hash,
        found.committed_at_us,
        existed=found.existed,
    )


__all__ = [
    "PaymentFlows",
    "PaymentOrder",
    "PaymentSettings",
    "QuoteOrder",
    "RateOrder",
    "ReviewOrder",
    "Signed",
    "StatedAmounts",
]
