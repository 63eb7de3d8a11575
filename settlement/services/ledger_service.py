"""LedgerService (ledger.proto): accounts, transactions, balances, listings, the journal.

Writes are thin: the caller's role, the common checks of common.proto, for a
participant the ownership of every account involved (other participants'
accounts and transactions are NOT_FOUND, exactly like missing ones), then one
submit through the sequencer; the ledger checks the transaction rules in the
contract's order. Reads run in a worker thread and show a participant only
what touches its own accounts.

``WatchJournal`` streams the journal by polling its size (every
:data:`WATCH_POLL_INTERVAL_SECONDS`) and reading it in chunks of
:data:`WATCH_CHUNK_ENTRIES`, one chunk in memory at a time: a slow reader
holds back the stream (gRPC flow control), never the server's memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from ledger import canonical
from ledger.batch import SignerMustBeKnown
from ledger.errors import (
    AccountNotFound,
    BatchMustNotExceedLimit,
    IntegrityError,
    LedgerError,
    LinkedCommandFailed,
    TextMustBeValid,
    TransactionNotFound,
)
from ledger.money import currency
from ledger.records import (
    Account,
    AccountFlag,
    Command,
    CommandResult,
    EntryKind,
    NewAccount,
    NewTransaction,
    PostPending,
    Reverse,
    VoidPending,
)
from ledger.signing import verify_instruction
from ledger.store import MAX_BATCH
from ledger.validation import CODE_MAX_LENGTH, REFERENCE_MAX_LENGTH, validate_id, validate_text
from settlement.auth import Caller, Role, current_caller
from settlement.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from settlement.hub import Hub
from settlement.instructions import InstructionTypeMustMatch, ParsedInstruction, parse
from settlement.services import convert
from settlement.services.convert import (
    WRITER_ROLES,
    Context,
    ParticipantMustExist,
    commit,
    commit_result,
    with_fields,
)
from settlement.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc

SERVICE_NAME: Final = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name

log = structlog.get_logger(__name__)

WATCH_POLL_INTERVAL_SECONDS: Final = 0.1
"""How often an idle WatchJournal stream looks for new entries."""

WATCH_CHUNK_ENTRIES: Final = 256
"""Entries read and held per step of a WatchJournal stream."""

WATCH_LAG_MAX_ENTRIES: Final = 100_000
"""ledger.proto: a reader more than this many entries behind the journal is
ended with RESOURCE_EXHAUSTED (and reconnects from where it stopped)."""

BATCH_ITEM_TYPES: Final[dict[str, type[Any]]] = {
    message_type.DESCRIPTOR.full_name: message_type
    for message_type in (
        ledger_pb2.TransactionInstruction,
        ledger_pb2.PostPendingInstruction,
        ledger_pb2.VoidPendingInstruction,
        ledger_pb2.ReverseTransactionInstruction,
    )
}

SHA256_SIZE: Final = 32


class FilterMustBeExactlyOne(InvalidArgument):
    code = "filter_must_be_exactly_one"


class IndexMustBeCommitted(FailedPrecondition):
    code = "index_must_be_committed"


class BatchMustNotBeEmpty(InvalidArgument):
    code = "batch_must_not_be_empty"


class ItemsMustMatchBatch(InvalidArgument):
    code = "items_must_match_batch"


class WatchMustKeepUp(ResourceExhausted):
    """ledger.proto, WatchJournal: the reader fell too far behind the journal."""

    code = "watch_must_keep_up"


# -- commands from instructions (pure checks in the ledger's order first) ---------------


def _checked_text(code: str, reference: str) -> None:
    validate_text(code, "code", CODE_MAX_LENGTH)
    validate_text(reference, "reference", REFERENCE_MAX_LENGTH)


def account_command(parsed: ParsedInstruction[ledger_pb2.CreateAccountInstruction]) -> NewAccount:
    message = parsed.message
    validate_id(parsed.instruction_id, "instruction_id")
    currency(message.currency)
    normal_side = convert.side_from_message(message.normal_side)
    if normal_side is None:
        raise with_fields(
            TextMustBeValid("normal_side must be SIDE_DEBIT or SIDE_CREDIT"), ["normal_side"]
        )
    flags = set()
    if message.debits_must_not_exceed_credits:
        flags.add(AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS)
    if message.credits_must_not_exceed_debits:
        flags.add(AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS)
    return NewAccount(
        id=parsed.instruction_id,
        owner=message.owner_participant_id,
        currency=message.currency,
        normal_side=normal_side,
        flags=frozenset(flags),
        debit_limit_minor=(
            message.debit_limit_minor if message.HasField("debit_limit_minor") else None
        ),
        metadata=convert.metadata_object(message.metadata),
        instruction=parsed.signed,
    )


def transaction_command(
    parsed: ParsedInstruction[ledger_pb2.TransactionInstruction],
) -> NewTransaction:
    message = parsed.message
    validate_id(parsed.instruction_id, "instruction_id")
    _checked_text(message.code, message.reference)
    return NewTransaction(
        id=parsed.instruction_id,
        postings=convert.postings_from_messages(message.postings),
        code=message.code,
        reference=message.reference,
        metadata=convert.metadata_object(message.metadata),
        pending=message.pending,
        timeout_seconds=message.timeout_seconds or None,
        instruction=parsed.signed,
    )


def post_pending_command(
    parsed: ParsedInstruction[ledger_pb2.PostPendingInstruction],
) -> PostPending:
    message = parsed.message
    validate_id(parsed.instruction_id, "instruction_id")
    validate_id(message.pending_transaction_id, "pending_transaction_id")
    _checked_text(message.code, message.reference)
    return PostPending(
        id=parsed.instruction_id,
        pending_id=message.pending_transaction_id,
        amount_minor=message.amount_minor if message.HasField("amount_minor") else None,
        code=message.code,
        reference=message.reference,
        metadata=convert.metadata_object(message.metadata),
        instruction=parsed.signed,
    )


def void_pending_command(
    parsed: ParsedInstruction[ledger_pb2.VoidPendingInstruction],
) -> VoidPending:
    message = parsed.message
    validate_id(parsed.instruction_id, "instruction_id")
    validate_id(message.pending_transaction_id, "pending_transaction_id")
    _checked_text(message.code, message.reference)
    return VoidPending(
        id=parsed.instruction_id,
        pending_id=message.pending_transaction_id,
        code=message.code,
        reference=message.reference,
        metadata=convert.metadata_object(message.metadata),
        instruction=parsed.signed,
    )


def reverse_command(
    parsed: ParsedInstruction[ledger_pb2.ReverseTransactionInstruction],
) -> Reverse:
    message = parsed.message
    validate_id(parsed.instruction_id, "instruction_id")
    validate_id(message.original_transaction_id, "original_transaction_id")
    _checked_text(message.code, message.reference)
    return Reverse(
        id=parsed.instruction_id,
        original_id=message.original_transaction_id,
        code=message.code,
        reference=message.reference,
        metadata=convert.metadata_object(message.metadata),
        instruction=parsed.signed,
    )


def referenced_transaction(message: Any) -> str | None:
    """The transaction an instruction resolves or reverses (None for a new transaction)."""
    if isinstance(message, ledger_pb2.ReverseTransactionInstruction):
        return message.original_transaction_id
    if isinstance(message, ledger_pb2.PostPendingInstruction | ledger_pb2.VoidPendingInstruction):
        return message.pending_transaction_id
    return None


def command_for(parsed: ParsedInstruction[Any]) -> Command:
    message = parsed.message
    if isinstance(message, ledger_pb2.TransactionInstruction):
        return transaction_command(parsed)
    if isinstance(message, ledger_pb2.PostPendingInstruction):
        return post_pending_command(parsed)
    if isinstance(message, ledger_pb2.VoidPendingInstruction):
        return void_pending_command(parsed)
    return reverse_command(parsed)


def _missing_account(account_id: str) -> AccountNotFound:
    # The ledger's own words, so that another participant's account reads
    # exactly like a missing one.
    return AccountNotFound(f"account {account_id!r} does not exist")


def _missing_transaction(transaction_id: str) -> TransactionNotFound:
    return TransactionNotFound(f"transaction {transaction_id!r} does not exist")


# -- the servicer ----------------------------------------------------------------------------


class LedgerService(ledger_pb2_grpc.LedgerServiceServicer):
    """Thin: decode, check the role, parse the instruction, submit, encode."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.owners = convert.AccountOwners(hub.ledger)

    # -- writes ---------------------------------------------------------------------------

    async def CreateAccount(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.CreateAccountRequest, context: Context
    ) -> ledger_pb2.CreateAccountResponse:
        caller = current_caller()
        caller.require(Role.OPERATOR)
        parsed = parse(request.instruction, ledger_pb2.CreateAccountInstruction, caller)
        await convert.check_id_not_taken(self.hub, parsed, caller)
        owner = parsed.message.owner_participant_id
        if await asyncio.to_thread(self.hub.registry.get, owner) is None:
            raise with_fields(
                ParticipantMustExist(f"owner {owner!r} is not a registered participant"),
                ["owner_participant_id"],
            )
        command = account_command(parsed)
        (receipt,) = await commit(self.hub, [command], parsed, caller)
        account = convert.created_account_message(command, receipt)
        if account is None:
            found = await asyncio.to_thread(self.hub.ledger.account, command.id)
            account = convert.account_message(found)
        return ledger_pb2.CreateAccountResponse(result=commit_result(receipt), account=account)

    async def CreateTransaction(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.CreateTransactionRequest, context: Context
    ) -> ledger_pb2.CreateTransactionResponse:
        caller = current_caller()
        caller.require(*WRITER_ROLES)
        parsed = parse(request.instruction, ledger_pb2.TransactionInstruction, caller)
        result, transaction = await self._commit_one(caller, parsed)
        return ledger_pb2.CreateTransactionResponse(result=result, transaction=transaction)

    async def PostPendingTransaction(  # noqa: N802 - the RPC's name
        self,
        request: ledger_pb2.PostPendingTransactionRequest,
        context: Context,
    ) -> ledger_pb2.PostPendingTransactionResponse:
        caller = current_caller()
        caller.require(*WRITER_ROLES)
        parsed = parse(request.instruction, ledger_pb2.PostPendingInstruction, caller)
        result, transaction = await self._commit_one(caller, parsed)
        return ledger_pb2.PostPendingTransactionResponse(result=result, transaction=transaction)

    async def VoidPendingTransaction(  # noqa: N802 - the RPC's name
        self,
        request: ledger_pb2.VoidPendingTransactionRequest,
        context: Context,
    ) -> ledger_pb2.VoidPendingTransactionResponse:
        caller = current_caller()
        caller.require(*WRITER_ROLES)
        parsed = parse(request.instruction, ledger_pb2.VoidPendingInstruction, caller)
        result, transaction = await self._commit_one(caller, parsed)
        return ledger_pb2.VoidPendingTransactionResponse(result=result, transaction=transaction)

    async def ReverseTransaction(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.ReverseTransactionRequest, context: Context
    ) -> ledger_pb2.ReverseTransactionResponse:
        caller = current_caller()
        caller.require(*WRITER_ROLES)
        parsed = parse(request.instruction, ledger_pb2.ReverseTransactionInstruction, caller)
        result, transaction = await self._commit_one(caller, parsed)
        return ledger_pb2.ReverseTransactionResponse(result=result, transaction=transaction)

    async def CreateTransactionBatch(  # noqa: N802 - the RPC's name
        self,
        request: ledger_pb2.CreateTransactionBatchRequest,
        context: Context,
    ) -> ledger_pb2.CreateTransactionBatchResponse:
        caller = current_caller()
        caller.require(*WRITER_ROLES)
        batch = parse(request.instruction, ledger_pb2.TransactionBatchInstruction, caller)
        digests = list(batch.message.item_sha256)
        # The batch instruction is not logged in the journal: its id names it here.
        log.info(
            "transaction batch",
            batch_id=batch.instruction_id,
            items=len(request.items),
            linked=batch.message.linked,
        )
        if not request.items or not digests:
            raise BatchMustNotBeEmpty(
                "a batch holds 1 to 8,000 items, each listed by its SHA-256 in item_sha256"
            )
        if max(len(request.items), len(digests)) > MAX_BATCH:
            raise BatchMustNotExceedLimit(
                f"a batch holds at most {MAX_BATCH} items, got "
                f"{max(len(request.items), len(digests))}"
            )
        # Up to 8,000 items to parse, hash and look up: off the event loop.
        items = await asyncio.to_thread(self._checked_items, caller, batch, request.items, digests)
        prepared = await asyncio.to_thread(self._prepare_items, caller, items)
        results = await self._commit_items(caller, items, prepared, linked=batch.message.linked)
        return ledger_pb2.CreateTransactionBatchResponse(results=results)

    # -- reads ------------------------------------------------------------------------------

    async def GetAccount(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.GetAccountRequest, context: Context
    ) -> ledger_pb2.GetAccountResponse:
        caller = current_caller()
        validate_id(request.account_id, "account_id")
        account = await asyncio.to_thread(self._visible_account, caller, request.account_id)
        return ledger_pb2.GetAccountResponse(account=convert.account_message(account))

    async def ListAccounts(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.ListAccountsRequest, context: Context
    ) -> ledger_pb2.ListAccountsResponse:
        caller = current_caller()
        scope = ("ListAccounts", caller.participant_id, request.owner_participant_id)
        after = convert.page_position(request.page, scope)
        size = convert.page_size(request.page)
        owner = request.owner_participant_id or None
        if not caller.sees_everything:
            if owner not in (None, caller.participant_id):
                return ledger_pb2.ListAccountsResponse()
            owner = caller.participant_id
        accounts = await asyncio.to_thread(self.hub.ledger.accounts, owner)
        following = [account for account in accounts if after is None or account.id > after]
        response = ledger_pb2.ListAccountsResponse(
            accounts=[convert.account_message(account) for account in following[:size]]
        )
        if len(following) > size:
            response.next_page_token = convert.page_token(scope, following[size - 1].id)
        return response

    async def GetBalance(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.GetBalanceRequest, context: Context
    ) -> ledger_pb2.GetBalanceResponse:
        caller = current_caller()
        validate_id(request.account_id, "account_id")
        as_of_index = request.as_of_index if request.HasField("as_of_index") else None
        return await asyncio.to_thread(self._balance, caller, request.account_id, as_of_index)

    async def GetTransaction(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.GetTransactionRequest, context: Context
    ) -> ledger_pb2.GetTransactionResponse:
        caller = current_caller()
        validate_id(request.transaction_id, "transaction_id")
        transaction = await asyncio.to_thread(
            self._visible_transaction, caller, request.transaction_id
        )
        return ledger_pb2.GetTransactionResponse(transaction=transaction)

    async def ListTransactions(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.ListTransactionsRequest, context: Context
    ) -> ledger_pb2.ListTransactionsResponse:
        caller = current_caller()
        if bool(request.account_id) == bool(request.reference):
            raise FilterMustBeExactlyOne(
                "set exactly one of account_id and reference",
            )
        if request.account_id:
            validate_id(request.account_id, "account_id")
        newest_first = request.order != common_pb2.SORT_ORDER_OLDEST_FIRST
        scope = (
            "ListTransactions",
            caller.participant_id,
            request.account_id,
            request.reference,
            "newest" if newest_first else "oldest",
        )
        position = convert.page_position(request.page, scope)
        after = _journal_position(position)
        size = convert.page_size(request.page)
        transactions, next_index = await asyncio.to_thread(
            self._list_transactions, caller, request, after, size, newest_first
        )
        response = ledger_pb2.ListTransactionsResponse(transactions=transactions)
        if next_index is not None:
            response.next_page_token = convert.page_token(scope, str(next_index))
        return response

    async def WatchJournal(  # noqa: N802 - the RPC's name
        self, request: ledger_pb2.WatchJournalRequest, context: Context
    ) -> AsyncIterator[ledger_pb2.WatchJournalResponse]:
        caller = current_caller()
        ledger = self.hub.ledger
        size_at_start = await asyncio.to_thread(ledger.journal_size)
        end = size_at_start if request.stop_at_end else None
        viewer: _Viewer | None = None
        if not caller.sees_everything:
            accounts = await asyncio.to_thread(
                convert.owned_account_ids, ledger, caller.participant_id
            )
            viewer = _Viewer(caller.participant_id, set(accounts))
        cursor = request.from_index
        size = size_at_start
        while end is None or cursor < end:
            if cursor >= size:
                await asyncio.sleep(WATCH_POLL_INTERVAL_SECONDS)
                size = await asyncio.to_thread(ledger.journal_size)
                continue
            stop = min(cursor + WATCH_CHUNK_ENTRIES, size if end is None else min(size, end))
            responses = await asyncio.to_thread(self._journal_chunk, cursor, stop, viewer)
            for response in responses:
                yield response
            cursor = stop
            if end is None:
                size = await asyncio.to_thread(ledger.journal_size)
                behind = size - max(cursor, size_at_start)
                if behind > WATCH_LAG_MAX_ENTRIES:
                    raise WatchMustKeepUp(
                        f"the stream fell {behind} entries behind the journal (the limit is "
                        f"{WATCH_LAG_MAX_ENTRIES}); reconnect with from_index {cursor}"
                    )

    # -- steps --------------------------------------------------------------------------------

    async def _commit_one(
        self, caller: Caller, parsed: ParsedInstruction[Any]
    ) -> tuple[common_pb2.CommitResult, ledger_pb2.Transaction]:
        """A single transaction instruction: ownership, then one submit."""
        await convert.check_id_not_taken(self.hub, parsed, caller)
        if not caller.sees_everything and not self._owns_cached(caller, parsed.message):
            await asyncio.to_thread(self._require_own, caller, parsed.message)
        command = command_for(parsed)
        (receipt,) = await commit(self.hub, [command], parsed, caller)
        transaction = convert.created_transaction_message(parsed, receipt)
        if transaction is None:
            transaction = await asyncio.to_thread(
                convert.read_transaction, self.hub.ledger, command.id
            )
        return commit_result(receipt), transaction

    def _owns_cached(self, caller: Caller, message: Any) -> bool:
        """True when a new transaction posts only to accounts known to be the caller's.

        Answered from the owners already cached, without the database or a
        worker thread; False means "not known here", and :meth:`_require_own`
        decides.
        """
        if referenced_transaction(message) is not None:
            return False
        owners = self.owners.cached(posting.account_id for posting in message.postings)
        return owners is not None and all(
            owner == caller.participant_id for owner in owners.values()
        )

    def _require_own(
        self,
        caller: Caller,
        message: Any,
        known: dict[str, set[str]] | None = None,
    ) -> set[str]:
        """The accounts an instruction involves, all the caller's, or NOT_FOUND.

        ``known`` holds transactions created earlier in the same batch.
        """
        referenced = referenced_transaction(message)
        if referenced is None:
            accounts = {posting.account_id for posting in message.postings}
            owners = self.owners.owners(accounts)
            for account_id in sorted(accounts):
                if owners.get(account_id) != caller.participant_id:
                    raise with_fields(_missing_account(account_id), ["postings"])
            return accounts
        involved = (known or {}).get(referenced)
        if involved is None:
            involved = convert.accounts_of_transactions(self.hub.ledger, [referenced]).get(
                referenced
            )
        owners = self.owners.owners(involved or ())
        if not involved or any(
            owners.get(account_id) != caller.participant_id for account_id in involved
        ):
            field = (
                "original_transaction_id"
                if isinstance(message, ledger_pb2.ReverseTransactionInstruction)
                else "pending_transaction_id"
            )
            raise with_fields(_missing_transaction(referenced), [field])
        return involved

    def _checked_items(
        self,
        caller: Caller,
        batch: ParsedInstruction[ledger_pb2.TransactionBatchInstruction],
        signed_items: Sequence[common_pb2.SignedInstruction],
        digests: Sequence[bytes],
    ) -> list[ParsedInstruction[Any]]:
        """The batch's call-level checks after its own: items' common checks, binding, signature."""
        items = [_parse_item(item, caller, position) for position, item in enumerate(signed_items)]
        uses = convert.prior_uses(self.hub.ledger, [item.instruction_id for item in items])
        for position, item in enumerate(items):
            convert.refuse_taken_id(uses.get(item.instruction_id), caller, [f"items[{position}]"])
        _check_items_match(signed_items, digests)
        self._verify_batch_signature(caller, batch)
        return items

    def _verify_batch_signature(
        self, caller: Caller, batch: ParsedInstruction[ledger_pb2.TransactionBatchInstruction]
    ) -> None:
        """The batch instruction is checked but not logged: its signature is verified here."""
        current = [
            key
            for key in self.hub.ledger.signing_keys()
            if key.signer == caller.participant_id and key.last_index is None
        ]
        if not current:
            raise SignerMustBeKnown(
                f"signer {caller.participant_id!r} has no registered signing key"
            )
        verify_instruction(current[-1].public_key, batch.signed.payload, batch.signed.signature)

    def _prepare_items(
        self, caller: Caller, items: Sequence[ParsedInstruction[Any]]
    ) -> list[Command | LedgerError]:
        """Each item's command, or the error of a rule checked before the ledger's."""
        checked = not caller.sees_everything
        known: dict[str, set[str]] = {}
        if checked:
            referenced = {referenced_transaction(item.message) for item in items}
            referenced.discard(None)
            known = convert.accounts_of_transactions(
                self.hub.ledger, [name for name in referenced if name is not None]
            )
            # Every owner the items need in one lookup; each item then reads the cache.
            self.owners.owners(
                {
                    posting.account_id
                    for item in items
                    if referenced_transaction(item.message) is None
                    for posting in item.message.postings
                }
                | {account_id for accounts in known.values() for account_id in accounts}
            )
        prepared: list[Command | LedgerError] = []
        for item in items:
            try:
                if checked:
                    known[item.instruction_id] = self._require_own(caller, item.message, known)
                prepared.append(command_for(item))
            except LedgerError as error:
                prepared.append(error)
        return prepared

    async def _commit_items(
        self,
        caller: Caller,
        items: Sequence[ParsedInstruction[Any]],
        prepared: Sequence[Command | LedgerError],
        *,
        linked: bool,
    ) -> list[common_pb2.CommitResult]:
        """Submit the items' commands (linked: all or none); one result per item, in order."""
        results: list[CommandResult] = [
            CommandResult(item.instruction_id, error=entry)
            for item, entry in zip(items, prepared, strict=True)
            if isinstance(entry, LedgerError)
        ]
        commands = [entry for entry in prepared if not isinstance(entry, LedgerError)]
        if linked and results:
            # Refused before the ledger: nothing is submitted; the first
            # refused item carries its error, every other item says why it
            # was not applied.
            failed_at = next(
                position
                for position, entry in enumerate(prepared)
                if isinstance(entry, LedgerError)
            )
            results = [
                CommandResult(item.instruction_id, error=entry)
                if position == failed_at and isinstance(entry, LedgerError)
                else CommandResult(
                    item.instruction_id,
                    error=LinkedCommandFailed(
                        f"not applied: items[{failed_at}] of this all-or-nothing batch failed"
                    ),
                )
                for position, (item, entry) in enumerate(zip(items, prepared, strict=True))
            ]
        else:
            submitted = iter(
                await self.hub.sequencer.submit(commands, linked=linked) if commands else []
            )
            refused = iter(results)
            results = [
                next(refused) if isinstance(entry, LedgerError) else next(submitted)
                for entry in prepared
            ]
        return await asyncio.to_thread(self._batch_results, caller, items, results)

    def _batch_results(
        self,
        caller: Caller,
        items: Sequence[ParsedInstruction[Any]],
        results: Sequence[CommandResult],
    ) -> list[common_pb2.CommitResult]:
        messages = []
        for item, result in zip(items, results, strict=True):
            if result.error is not None:
                error = convert.explain_conflict(
                    self.hub.ledger, result.error, item.instruction_id, item.signed.payload, caller
                )
                messages.append(convert.failed_result(item.instruction_id, error))
            elif result.receipt is not None:
                messages.append(commit_result(result.receipt))
            else:
                raise IntegrityError(f"batch item {item.instruction_id!r} has no result")
        return messages

    def _visible_account(self, caller: Caller, account_id: str) -> Account:
        account = self.hub.ledger.account(account_id)
        if not caller.sees_everything and account.owner != caller.participant_id:
            raise _missing_account(account_id)
        return account

    def _balance(
        self, caller: Caller, account_id: str, as_of_index: int | None
    ) -> ledger_pb2.GetBalanceResponse:
        if as_of_index is None:
            found = convert.latest_balance(self.hub.ledger, account_id)
            if found is None or not (caller.sees_everything or found[0] == caller.participant_id):
                raise _missing_account(account_id)
            return ledger_pb2.GetBalanceResponse(balance=convert.balance_message(found[1]))
        self._visible_account(caller, account_id)
        size = self.hub.ledger.journal_size()
        if as_of_index >= size:
            raise with_fields(
                IndexMustBeCommitted(
                    f"as_of_index {as_of_index} is not committed yet: the journal holds "
                    f"indexes 0 to {size - 1}"
                ),
                ["as_of_index"],
            )
        balance = self.hub.ledger.balance(account_id, as_of_index)
        return ledger_pb2.GetBalanceResponse(balance=convert.balance_message(balance))

    def _visible_transaction(self, caller: Caller, transaction_id: str) -> ledger_pb2.Transaction:
        ledger = self.hub.ledger
        record = ledger.transaction(transaction_id)
        leaf = ledger.leaf(record.journal_index)
        document = convert.decode_leaf(leaf)
        if not caller.sees_everything:
            owned = convert.owned_account_ids(ledger, caller.participant_id)
            if not convert.leaf_accounts(document) & owned:
                raise _missing_transaction(transaction_id)
        return convert.transaction_message(leaf, record.state, document)

    def _list_transactions(
        self,
        caller: Caller,
        request: ledger_pb2.ListTransactionsRequest,
        after: int | None,
        size: int,
        newest_first: bool,
    ) -> tuple[list[ledger_pb2.Transaction], int | None]:
        ledger = self.hub.ledger
        owned = (
            None
            if caller.sees_everything
            else convert.owned_account_ids(ledger, caller.participant_id)
        )
        if request.account_id:
            self._visible_account(caller, request.account_id)
            page = ledger.transactions_by_account(
                request.account_id, limit=size, cursor=after, newest_first=newest_first
            )
            found = [(record.journal_index, record.state) for record in page.items]
            next_index = page.next_cursor
        else:
            found, next_index = convert.reference_page(
                ledger, request.reference, after=after, limit=size, newest_first=newest_first
            )
        leaves = convert.leaves_by_index(ledger, [index for index, _ in found])
        transactions = []
        for index, state in found:
            document = convert.decode_leaf(leaves[index])
            if owned is not None and not convert.leaf_accounts(document) & owned:
                continue
            transactions.append(convert.transaction_message(leaves[index], state, document))
        return transactions, next_index

    def _journal_chunk(
        self, start: int, stop: int, viewer: _Viewer | None
    ) -> list[ledger_pb2.WatchJournalResponse]:
        """The entries of ``start <= index < stop`` the viewer sees (all for None)."""
        ledger = self.hub.ledger
        visible: list[tuple[convert.JournalRow, dict[str, Any]]] = []
        for row in convert.journal_rows(ledger, start, stop):
            document = convert.decode_leaf(row.leaf)
            kind = EntryKind(document["kind"])
            if kind not in convert.ENTRY_KIND_TO_PROTO:
                continue
            if viewer is not None and not viewer.sees(document, kind):
                continue
            visible.append((row, document))
        states = convert.states_by_index(
            ledger,
            [
                row.journal_index
                for row, document in visible
                if EntryKind(document["kind"]) in convert.TRANSACTION_KIND_TO_PROTO
            ],
        )
        return [
            ledger_pb2.WatchJournalResponse(
                entry=convert.journal_entry_message(row, document, states.get(row.journal_index))
            )
            for row, document in visible
        ]


@dataclass(slots=True)
class _Viewer:
    """A participant watching the journal, and its accounts so far."""

    participant_id: str
    accounts: set[str]

    def sees(self, document: dict[str, Any], kind: EntryKind) -> bool:
        """Whether the entry posts to or changes one of its accounts (and learn new ones)."""
        if kind is EntryKind.SIGNING_KEY:
            return False
        if kind is EntryKind.ACCOUNT and document["account"]["owner"] == self.participant_id:
            self.accounts.add(document["account"]["id"])
            return True
        return bool(convert.leaf_accounts(document) & self.accounts)


def _parse_item(
    item: common_pb2.SignedInstruction, caller: Caller, position: int
) -> ParsedInstruction[Any]:
    """Common checks 3 to 5 of one batch item; a failure names it as ``items[i]``."""
    try:
        instruction_type = _instruction_type(bytes(item.instruction))
        message_type = BATCH_ITEM_TYPES.get(instruction_type)
        if message_type is None:
            canonical.decode(bytes(item.instruction))
            raise InstructionTypeMustMatch(
                f"instruction_type is {instruction_type!r}; batch items are one of "
                f"{', '.join(sorted(BATCH_ITEM_TYPES))}"
            )
        return parse(item, message_type, caller)
    except LedgerError as error:
        raise with_fields(error, [f"items[{position}]"]) from None


def _instruction_type(payload: bytes) -> str:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    value = document.get("instruction_type") if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""


def _check_items_match(
    items: Sequence[common_pb2.SignedInstruction], digests: Iterable[bytes]
) -> None:
    listed = list(digests)
    if len(listed) != len(items):
        raise with_fields(
            ItemsMustMatchBatch(
                f"item_sha256 lists {len(listed)} items but the request carries {len(items)}"
            ),
            ["items"],
        )
    for position, (item, digest) in enumerate(zip(items, listed, strict=True)):
        if hashlib.sha256(item.instruction).digest() != digest:
            raise with_fields(
                ItemsMustMatchBatch(
                    f"items[{position}] is not the instruction whose SHA-256 the batch lists "
                    "at that position"
                ),
                [f"items[{position}]"],
            )


def _journal_position(position: str | None) -> int | None:
    if position is None:
        return None
    if not position.isdigit():
        raise convert.PageTokenMustMatchRequest(
            "page_token was not returned for this request; leave it empty for the first page"
        )
    return int(position)


__all__ = ["SERVICE_NAME", "LedgerService"]
