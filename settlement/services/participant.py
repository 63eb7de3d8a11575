"""ParticipantService (participant.proto): participants, keys, settlement accounts, funding.

Every mutating RPC is the operator's, signed by the operator's key and
committed to the journal with that signed instruction, so registrations, key
changes, accounts, limits, freezes and funding are part of the auditable
history. Each one is a few ledger commands submitted through the sequencer
(the only write path); the rules the ledger checks itself (ids, text,
idempotency, accounts, balance constraints, the signature) are left to it so
that its answers keep their order of precedence.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import schwifty
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from schwifty import registry as schwifty_registry
from schwifty.domain import Component
from stdnum import lei as lei_number
from stdnum.exceptions import ValidationError
from stdnum.us import rtn as routing_number

from ledger.errors import (
    AccountNotFound,
    ExceedsCredits,
    ExistsWithDifferentBody,
    IntegrityError,
    LedgerError,
    LimitMustNotBeNegative,
    LinkedCommandFailed,
    TextMustBeValid,
)
from ledger.money import currency
from ledger.records import (
    Account,
    AccountFlag,
    AccountStatus,
    Command,
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    RegisterSigningKey,
    SetAccountStatus,
    SetDebitLimit,
    Side,
)
from ledger.validation import validate_id, validate_text
from settlement.auth import PARTICIPANT_ROLES, Caller, Role, current_caller
from settlement.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from settlement.hub import Hub
from settlement.instructions import MessageType, ParsedInstruction, parse
from settlement.registry import Participant, registration_event
from settlement.services import convert
from settlement.services.convert import (
    Context,
    ParticipantMustExist,
    PriorUse,
    commit,
    commit_result,
    with_fields,
)
from settlement.v1 import common_pb2, ledger_pb2, participant_pb2, participant_pb2_grpc

SERVICE_NAME: Final = participant_pb2.DESCRIPTOR.services_by_name["ParticipantService"].full_name

PARTICIPANT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""participant.proto: no ":", which separates the parts of account ids."""

LEGAL_NAME_LENGTH_MAX: Final = 140
COMMON_NAME_LENGTH_MAX: Final = 64
"""RFC 5280 ub-common-name."""
REASON_LENGTH_MAX: Final = 140

_COMMON_NAME_PATTERN: Final = re.compile(r"[\x20-\x7e]{1,64}")
_BIC_PATTERN: Final = re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_LEI_PATTERN: Final = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
_ROUTING_NUMBER_PATTERN: Final = re.compile(r"[0-9]{9}")
_COUNTRY_PATTERN: Final = re.compile(r"[A-Z]{2}")

BIC_REQUIRED: Final = frozenset({Role.BANK, Role.FX_PROVIDER})
LEI_REQUIRED: Final = frozenset({Role.BANK, Role.FX_PROVIDER, Role.LENDER})

SETTLEMENT_ACCOUNT_PREFIX: Final = "settlement:"
FUNDING_ACCOUNT_PREFIX: Final = "funding:"
FUND_CODE: Final = "FUND"
DEFUND_CODE: Final = "DEFUND"

_ALWAYS_REFUSED: Final = NewEvent(id="", event_type="")
"""A command whose first rule (id_must_be_valid) always fails. Appended to a
linked submit it makes the ledger check every command before it, in its
order of precedence, and write none of them: a dry run."""


# -- rules of this service, in the contract's words -------------------------------


class ParticipantIdMustBeValid(InvalidArgument):
    code = "participant_id_must_be_valid"


class RoleMustBeSpecified(InvalidArgument):
    code = "role_must_be_specified"


class CountryMustBeValid(InvalidArgument):
    code = "country_must_be_valid"


class BicMustBeValid(InvalidArgument):
    code = "bic_must_be_valid"


class CountryMustMatchBic(InvalidArgument):
    code = "country_must_match_bic"


class LeiMustBeValid(InvalidArgument):
    code = "lei_must_be_valid"


class AbaRoutingNumberMustBeValid(InvalidArgument):
    code = "aba_routing_number_must_be_valid"


class IbanBankCodeMustBeValid(InvalidArgument):
    code = "iban_bank_code_must_be_valid"


class CertificateCommonNameMustBeValid(InvalidArgument):
    code = "certificate_common_name_must_be_valid"


class SigningKeyMustBeValid(InvalidArgument):
    code = "signing_key_must_be_valid"


class ParticipantExists(AlreadyExists):
    code = "participant_exists"


class CertificateCommonNameTaken(AlreadyExists):
    code = "certificate_common_name_taken"


class SigningKeyTaken(AlreadyExists):
    code = "signing_key_taken"


class InstructionIdMustBeAccountId(InvalidArgument):
    code = "instruction_id_must_be_account_id"


class ParticipantMustHoldAccounts(FailedPrecondition):
    code = "participant_must_hold_accounts"


class AccountMustBeSettlementAccount(InvalidArgument):
    code = "account_must_be_settlement_account"


class FundingAccountMustExist(FailedPrecondition):
    code = "funding_account_must_exist"


def _refuse(error: LedgerError, field: str) -> LedgerError:
    return with_fields(error, [field])


# -- pure checks of a registration, in the contract's order ---------------------------


def validate_participant_id(value: str, field: str) -> None:
    if not PARTICIPANT_ID_PATTERN.fullmatch(value):
        raise _refuse(
            ParticipantIdMustBeValid(
                f"{field} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-', "
                f"got {value!r:.80}"
            ),
            field,
        )


def is_assigned_country(code: str) -> bool:
    """ISO 3166-1 alpha-2, assigned (not user-assigned), upper case.

    Asked of schwifty's country data through the BIC rules, so that the two
    country checks of a registration (``country`` and the BIC's country part)
    can never disagree about what a country is.
    """
    if not _COUNTRY_PATTERN.fullmatch(code):
        return False
    try:
        schwifty.BIC(f"AAAA{code}22")
    except ValueError:
        return False
    return True


_BBAN_SPEC_TOKEN: Final = re.compile(r"(\d+)!?([nace])")
_BBAN_CHARACTERS: Final = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]", "e": " "}


def iban_bank_code_pattern(country: str) -> re.Pattern[str] | None:
    """The bank identifier of the country's IBANs (ISO 13616 registry), or None.

    None when the country has no IBAN, or its IBAN has no bank identifier.
    """
    try:
        spec = schwifty_registry.get_iban_spec(country)
    except (ValueError, KeyError):
        return None
    bank = spec.positions.get(Component.BANK_CODE)
    if bank is None or bank.end <= bank.start:
        return None
    characters: list[str] = []
    for count, kind in _BBAN_SPEC_TOKEN.findall(spec.bban_spec):
        characters.extend([_BBAN_CHARACTERS[kind]] * int(count))
    return re.compile("".join(characters[bank.start : bank.end]))


def validate_registration(message: participant_pb2.RegisterParticipantInstruction) -> Role:
    """The registration's own fields, in participant.proto's order; returns the role."""
    validate_participant_id(message.target_participant_id, "target_participant_id")
    if not message.legal_name:
        raise _refuse(TextMustBeValid("legal_name must be 1 to 140 characters"), "legal_name")
    try:
        validate_text(message.legal_name, "legal_name", LEGAL_NAME_LENGTH_MAX)
    except TextMustBeValid as error:
        raise _refuse(error, "legal_name") from None
    role = convert.ROLE_FROM_PROTO.get(message.role)
    if role is None:
        raise _refuse(
            RoleMustBeSpecified(
                "role must be ROLE_BANK, ROLE_FX_PROVIDER, ROLE_LENDER, ROLE_OPERATOR or "
                "ROLE_AUDITOR"
            ),
            "role",
        )
    country = message.country
    if not is_assigned_country(country):
        raise _refuse(
            CountryMustBeValid(
                f"country must be an assigned ISO 3166-1 alpha-2 code in upper case "
                f"(e.g. 'PK', 'US'), got {country!r:.20}"
            ),
            "country",
        )
    _validate_bic(message.bic, role, country)
    _validate_lei(message.lei, role)
    if message.aba_routing_number:
        _validate_routing_number(message.aba_routing_number, country)
    if message.iban_bank_code:
        _validate_iban_bank_code(message.iban_bank_code, country)
    if not _COMMON_NAME_PATTERN.fullmatch(message.certificate_common_name):
        raise _refuse(
            CertificateCommonNameMustBeValid(
                f"certificate_common_name must be 1 to {COMMON_NAME_LENGTH_MAX} printable ASCII "
                f"characters, got {message.certificate_common_name!r:.80}"
            ),
            "certificate_common_name",
        )
    validate_signing_key(message.signing_public_key)
    return role


def _validate_bic(bic: str, role: Role, country: str) -> None:
    if not bic:
        if role in BIC_REQUIRED:
            raise _refuse(
                BicMustBeValid(f"a participant with role {role.value} needs a BIC (ISO 9362)"),
                "bic",
            )
        return
    if not _BIC_PATTERN.fullmatch(bic):
        raise _refuse(
            BicMustBeValid(
                "bic must be ISO 9362: 4 letters, 2 letters of country, 2 letters or digits, "
                f"optionally 3 letters or digits, upper case; got {bic!r:.20}"
            ),
            "bic",
        )
    try:
        parsed = schwifty.BIC(bic)
    except ValueError as error:
        raise _refuse(BicMustBeValid(f"bic {bic!r} is not a valid BIC: {error}"), "bic") from None
    if parsed.country_code != country:
        raise with_fields(
            CountryMustMatchBic(
                f"the BIC's country part is {parsed.country_code!r} but country is {country!r}; "
                "they must be equal"
            ),
            ["bic", "country"],
        )


def _validate_lei(lei: str, role: Role) -> None:
    if not lei:
        if role in LEI_REQUIRED:
            raise _refuse(
                LeiMustBeValid(f"a participant with role {role.value} needs an LEI (ISO 17442)"),
                "lei",
            )
        return
    if not _LEI_PATTERN.fullmatch(lei):
        raise _refuse(
            LeiMustBeValid(
                "lei must be ISO 17442: 18 upper-case letters or digits and 2 check digits, "
                f"got {lei!r:.30}"
            ),
            "lei",
        )
    try:
        lei_number.validate(lei)
    except ValidationError:
        raise _refuse(
            LeiMustBeValid(f"lei {lei!r} fails its ISO 7064 MOD 97-10 check digits"), "lei"
        ) from None


def _validate_routing_number(value: str, country: str) -> None:
    if country != "US":
        raise _refuse(
            AbaRoutingNumberMustBeValid(
                f"aba_routing_number is only for country 'US', not {country!r}; leave it empty"
            ),
            "aba_routing_number",
        )
    if not _ROUTING_NUMBER_PATTERN.fullmatch(value):
        raise _refuse(
            AbaRoutingNumberMustBeValid(f"aba_routing_number must be 9 digits, got {value!r:.20}"),
            "aba_routing_number",
        )
    try:
        routing_number.validate(value)
    except ValidationError:
        raise _refuse(
            AbaRoutingNumberMustBeValid(
                f"aba_routing_number {value!r} fails the ABA checksum (weights 3, 7, 1)"
            ),
            "aba_routing_number",
        ) from None


def _validate_iban_bank_code(value: str, country: str) -> None:
    pattern = iban_bank_code_pattern(country)
    if pattern is None:
        raise _refuse(
            IbanBankCodeMustBeValid(
                f"country {country!r} has no IBAN bank identifier; leave iban_bank_code empty"
            ),
            "iban_bank_code",
        )
    if not pattern.fullmatch(value):
        raise _refuse(
            IbanBankCodeMustBeValid(
                f"iban_bank_code {value!r:.40} is not a bank identifier of {country} IBANs "
                f"(expected {pattern.pattern})"
            ),
            "iban_bank_code",
        )


def validate_signing_key(key: bytes) -> None:
    if len(key) == 32:
        try:
            Ed25519PublicKey.from_public_bytes(key)
        except ValueError:
            pass
        else:
            return
    raise _refuse(
        SigningKeyMustBeValid(
            f"signing_public_key must be a raw 32-byte Ed25519 public key (RFC 8032 "
            f"section 5.1.5), got {len(key)} bytes"
        ),
        "signing_public_key",
    )


def settlement_account_id(participant_id: str, currency_code: str) -> str:
    return f"{SETTLEMENT_ACCOUNT_PREFIX}{participant_id}:{currency_code}"


def funding_account_id(currency_code: str) -> str:
    return f"{FUNDING_ACCOUNT_PREFIX}{currency_code}"


# -- the servicer ------------------------------------------------------------------------


class ParticipantService(participant_pb2_grpc.ParticipantServiceServicer):
    """Thin: decode, check the role, parse the instruction, submit, encode."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # Registrations and rotations check uniqueness (participant id,
        # certificate name, key) before they submit; funding movements create
        # the funding account on first use and check a Defund against the
        # participant's own funds. One of each at a time keeps those checks
        # true until the commit (this process is the only writer).
        self._registration_lock = asyncio.Lock()
        self._funding_lock = asyncio.Lock()

    # -- writes ------------------------------------------------------------------------

    async def RegisterParticipant(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.RegisterParticipantRequest, context: Context
    ) -> participant_pb2.RegisterParticipantResponse:
        caller, parsed, prior = await self._operator_instruction(
            request.instruction, participant_pb2.RegisterParticipantInstruction
        )
        message = parsed.message
        role = validate_registration(message)
        identical = self._idempotency(prior, parsed)
        target = message.target_participant_id
        key = RegisterSigningKey(
            id=parsed.instruction_id,
            signer=target,
            public_key=bytes(message.signing_public_key),
            instruction=parsed.signed,
        )
        event = registration_event(
            {
                "participant_id": target,
                "legal_name": message.legal_name,
                "role": role.value,
                "country": message.country,
                "bic": message.bic,
                "lei": message.lei,
                "aba_routing_number": message.aba_routing_number,
                "iban_bank_code": message.iban_bank_code,
                "common_name": message.certificate_common_name,
            },
            instruction=parsed.signed,
        )
        async with self._registration_lock:
            if not identical:
                await asyncio.to_thread(self._check_registration_is_new, message)
            results = await self.hub.sequencer.submit([key, event], linked=True)
            if isinstance(results[1].error, ExistsWithDifferentBody):
                raise ParticipantExists(f"participant {target!r} is already registered")
            receipts = await convert.settle(self.hub, results, parsed, caller)
        participant = await asyncio.to_thread(self._participant, target)
        return participant_pb2.RegisterParticipantResponse(
            result=commit_result(receipts[0]), participant=participant
        )

    async def RotateSigningKey(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.RotateSigningKeyRequest, context: Context
    ) -> participant_pb2.RotateSigningKeyResponse:
        caller, parsed, prior = await self._operator_instruction(
            request.instruction, participant_pb2.RotateSigningKeyInstruction
        )
        message = parsed.message
        validate_participant_id(message.target_participant_id, "target_participant_id")
        validate_signing_key(message.signing_public_key)
        identical = self._idempotency(prior, parsed)
        target = message.target_participant_id
        command = RegisterSigningKey(
            id=parsed.instruction_id,
            signer=target,
            public_key=bytes(message.signing_public_key),
            instruction=parsed.signed,
        )
        async with self._registration_lock:
            if not identical:
                await asyncio.to_thread(self._check_rotation, message)
            (receipt,) = await commit(self.hub, [command], parsed, caller)
        participant = await asyncio.to_thread(self._participant, target)
        return participant_pb2.RotateSigningKeyResponse(
            result=commit_result(receipt), participant=participant
        )

    async def OpenSettlementAccount(  # noqa: N802 - the RPC's name
        self,
        request: participant_pb2.OpenSettlementAccountRequest,
        context: Context,
    ) -> participant_pb2.OpenSettlementAccountResponse:
        caller, parsed, _ = await self._operator_instruction(
            request.instruction, participant_pb2.OpenSettlementAccountInstruction
        )
        message = parsed.message
        target = message.target_participant_id
        validate_participant_id(target, "target_participant_id")
        currency(message.currency)
        account_id = settlement_account_id(target, message.currency)
        if parsed.instruction_id != account_id:
            raise _refuse(
                InstructionIdMustBeAccountId(
                    f"instruction_id must be the new account's id {account_id!r}, "
                    f"got {parsed.instruction_id!r:.140}"
                ),
                "instruction_id",
            )
        participant = await asyncio.to_thread(self.hub.registry.get, target)
        if participant is None:
            raise _refuse(
                ParticipantMustExist(f"participant {target!r} is not registered"),
                "target_participant_id",
            )
        if participant.role not in PARTICIPANT_ROLES:
            raise _refuse(
                ParticipantMustHoldAccounts(
                    f"participant {target!r} has role {participant.role.value}; only banks, FX "
                    "providers and lenders hold settlement accounts"
                ),
                "target_participant_id",
            )
        if message.debit_limit_minor < 0:
            raise _refuse(
                LimitMustNotBeNegative(
                    f"debit_limit_minor must be 0 or more, got {message.debit_limit_minor}"
                ),
                "debit_limit_minor",
            )
        command = NewAccount(
            id=account_id,
            owner=target,
            currency=message.currency,
            # Credit-normal: the hub owes the balance to the participant.
            normal_side=Side.CREDIT,
            flags=frozenset({AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS}),
            debit_limit_minor=message.debit_limit_minor,
            instruction=parsed.signed,
        )
        (receipt,) = await commit(self.hub, [command], parsed, caller)
        account = await asyncio.to_thread(self.hub.ledger.account, account_id)
        return participant_pb2.OpenSettlementAccountResponse(
            result=commit_result(receipt), account=convert.account_message(account)
        )

    async def SetAccountLimit(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.SetAccountLimitRequest, context: Context
    ) -> participant_pb2.SetAccountLimitResponse:
        caller, parsed, _ = await self._operator_instruction(
            request.instruction, participant_pb2.SetAccountLimitInstruction
        )
        message = parsed.message
        command = SetDebitLimit(
            id=parsed.instruction_id,
            account_id=message.account_id,
            debit_limit_minor=message.debit_limit_minor,
            instruction=parsed.signed,
        )
        (receipt,) = await commit(self.hub, [command], parsed, caller)
        account = await asyncio.to_thread(self.hub.ledger.account, message.account_id)
        return participant_pb2.SetAccountLimitResponse(
            result=commit_result(receipt), account=convert.account_message(account)
        )

    async def FreezeAccount(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.FreezeAccountRequest, context: Context
    ) -> participant_pb2.FreezeAccountResponse:
        receipt, account = await self._set_status(
            request.instruction, participant_pb2.FreezeAccountInstruction, AccountStatus.FROZEN
        )
        return participant_pb2.FreezeAccountResponse(result=receipt, account=account)

    async def UnfreezeAccount(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.UnfreezeAccountRequest, context: Context
    ) -> participant_pb2.UnfreezeAccountResponse:
        receipt, account = await self._set_status(
            request.instruction, participant_pb2.UnfreezeAccountInstruction, AccountStatus.OPEN
        )
        return participant_pb2.UnfreezeAccountResponse(result=receipt, account=account)

    async def Fund(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.FundRequest, context: Context
    ) -> participant_pb2.FundResponse:
        caller, parsed, prior = await self._operator_instruction(
            request.instruction, participant_pb2.FundInstruction
        )
        result, transaction = await self._move_funds(caller, parsed, prior, funding=True)
        return participant_pb2.FundResponse(result=result, transaction=transaction)

    async def Defund(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.DefundRequest, context: Context
    ) -> participant_pb2.DefundResponse:
        caller, parsed, prior = await self._operator_instruction(
            request.instruction, participant_pb2.DefundInstruction
        )
        result, transaction = await self._move_funds(caller, parsed, prior, funding=False)
        return participant_pb2.DefundResponse(result=result, transaction=transaction)

    # -- reads --------------------------------------------------------------------------

    async def GetParticipant(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.GetParticipantRequest, context: Context
    ) -> participant_pb2.GetParticipantResponse:
        caller = current_caller()
        validate_participant_id(request.participant_id, "participant_id")
        participant = await asyncio.to_thread(self._visible_participant, caller, request)
        return participant_pb2.GetParticipantResponse(participant=participant)

    async def ListParticipants(  # noqa: N802 - the RPC's name
        self, request: participant_pb2.ListParticipantsRequest, context: Context
    ) -> participant_pb2.ListParticipantsResponse:
        caller = current_caller()
        scope = ("ListParticipants", caller.participant_id, str(request.role))
        after = convert.page_position(request.page, scope)
        size = convert.page_size(request.page)
        return await asyncio.to_thread(self._list_participants, caller, request, after, size)

    # -- steps ----------------------------------------------------------------------------

    async def _operator_instruction(
        self, signed: common_pb2.SignedInstruction, message_type: type[MessageType]
    ) -> tuple[Caller, ParsedInstruction[MessageType], PriorUse | None]:
        """Common checks 2 to 6 of common.proto for an operator-only instruction."""
        caller = current_caller()
        caller.require(Role.OPERATOR)
        parsed = parse(signed, message_type, caller)
        prior = await convert.check_id_not_taken(self.hub, parsed, caller)
        return caller, parsed, prior

    @staticmethod
    def _idempotency(prior: PriorUse | None, parsed: ParsedInstruction[Any]) -> bool:
        """The idempotency check where a service rule follows it: True for an identical retry."""
        if prior is None:
            return False
        if prior.payload != parsed.signed.payload:
            raise convert.exists_with_different_body(prior, parsed.signed.payload)
        return True

    def _check_registration_is_new(
        self, message: participant_pb2.RegisterParticipantInstruction
    ) -> None:
        target = message.target_participant_id
        if self.hub.registry.get(target) is not None:
            raise _refuse(
                ParticipantExists(
                    f"participant {target!r} is already registered (by another instruction)"
                ),
                "target_participant_id",
            )
        if self.hub.registry.caller_for_common_name(message.certificate_common_name) is not None:
            raise _refuse(
                CertificateCommonNameTaken(
                    f"certificate_common_name {message.certificate_common_name!r} identifies "
                    "another participant; issue a certificate with a name of its own"
                ),
                "certificate_common_name",
            )
        self._check_key_is_new(bytes(message.signing_public_key))

    def _check_rotation(self, message: participant_pb2.RotateSigningKeyInstruction) -> None:
        target = message.target_participant_id
        if self.hub.registry.get(target) is None:
            raise _refuse(
                ParticipantMustExist(f"participant {target!r} is not registered"),
                "target_participant_id",
            )
        self._check_key_is_new(bytes(message.signing_public_key))

    def _check_key_is_new(self, public_key: bytes) -> None:
        # Never reused, not even by its own participant: a key identifies one
        # signer over one range of the log.
        if any(key.public_key == public_key for key in self.hub.ledger.signing_keys()):
            raise _refuse(
                SigningKeyTaken(
                    "signing_public_key is, or was, registered; generate a new key pair"
                ),
                "signing_public_key",
            )

    async def _set_status(
        self,
        signed: common_pb2.SignedInstruction,
        message_type: type[
            participant_pb2.FreezeAccountInstruction | participant_pb2.UnfreezeAccountInstruction
        ],
        status: AccountStatus,
    ) -> tuple[common_pb2.CommitResult, ledger_pb2.Account]:
        caller, parsed, _ = await self._operator_instruction(signed, message_type)
        message = parsed.message
        validate_id(parsed.instruction_id, "instruction_id")
        validate_id(message.account_id, "account_id")
        if not message.reason:
            raise _refuse(TextMustBeValid("reason must be 1 to 140 characters"), "reason")
        try:
            validate_text(message.reason, "reason", REASON_LENGTH_MAX)
        except TextMustBeValid as error:
            raise _refuse(error, "reason") from None
        command = SetAccountStatus(
            id=parsed.instruction_id,
            account_id=message.account_id,
            status=status,
            instruction=parsed.signed,
        )
        (receipt,) = await commit(self.hub, [command], parsed, caller)
        account = await asyncio.to_thread(self.hub.ledger.account, message.account_id)
        return commit_result(receipt), convert.account_message(account)

    async def _move_funds(
        self,
        caller: Caller,
        parsed: ParsedInstruction[participant_pb2.FundInstruction]
        | ParsedInstruction[participant_pb2.DefundInstruction],
        prior: PriorUse | None,
        *,
        funding: bool,
    ) -> tuple[common_pb2.CommitResult, ledger_pb2.Transaction]:
        """Fund: debit the hub's funding account, credit the settlement account; Defund: back."""
        message = parsed.message
        async with self._funding_lock:
            settlement, funding_account = await asyncio.to_thread(
                self._funding_pair, message.account_id
            )
            settlement_leg = Posting(
                settlement.id,
                Side.CREDIT if funding else Side.DEBIT,
                message.amount_minor,
                message.currency,
            )
            funding_leg = Posting(
                funding_account_id(settlement.currency),
                Side.DEBIT if funding else Side.CREDIT,
                message.amount_minor,
                message.currency,
            )
            commands: list[Command] = []
            if funding_account is None:
                # Created on first use, by the instruction that needs it (so
                # it is signed like every other entry).
                commands.append(
                    NewAccount(
                        id=funding_account_id(settlement.currency),
                        owner=caller.participant_id,
                        currency=settlement.currency,
                        # Debit-normal: an asset of the hub, money it holds
                        # outside the ledger.
                        normal_side=Side.DEBIT,
                        instruction=parsed.signed,
                    )
                )
            commands.append(
                NewTransaction(
                    id=parsed.instruction_id,
                    postings=(funding_leg, settlement_leg)
                    if funding
                    else (settlement_leg, funding_leg),
                    code=FUND_CODE if funding else DEFUND_CODE,
                    reference=message.reference,
                    instruction=parsed.signed,
                )
            )
            identical = prior is not None and prior.payload == parsed.signed.payload
            if not funding and not identical:
                await self._refuse_beyond_own_funds(caller, parsed, commands, settlement)
            receipts = await commit(self.hub, commands, parsed, caller, linked=len(commands) > 1)
        transaction = await asyncio.to_thread(
            convert.read_transaction, self.hub.ledger, parsed.instruction_id
        )
        return commit_result(receipts[-1]), transaction

    def _funding_pair(self, account_id: str) -> tuple[Account, Account | None]:
        """The settlement account and the funding account of its currency (None: not yet)."""
        ledger = self.hub.ledger
        try:
            settlement = ledger.account(account_id)
        except AccountNotFound as error:
            raise _refuse(error, "account_id") from None
        if settlement.id != settlement_account_id(settlement.owner, settlement.currency):
            raise _refuse(
                AccountMustBeSettlementAccount(
                    f"account {account_id!r} is not a settlement account "
                    "('settlement:<participant_id>:<currency>'); only those are funded"
                ),
                "account_id",
            )
        funding_id = funding_account_id(settlement.currency)
        try:
            funding = ledger.account(funding_id)
        except AccountNotFound:
            return settlement, None
        owner = self.hub.registry.get(funding.owner)
        if (
            funding.currency != settlement.currency
            or owner is None
            or owner.role is not Role.OPERATOR
        ):
            raise FundingAccountMustExist(
                f"account {funding_id!r} is not the hub's funding account in "
                f"{settlement.currency} (owned by an operator, in that currency)"
            )
        return settlement, funding

    async def _refuse_beyond_own_funds(
        self,
        caller: Caller,
        parsed: ParsedInstruction[participant_pb2.DefundInstruction]
        | ParsedInstruction[participant_pb2.FundInstruction],
        commands: list[Command],
        settlement: Account,
    ) -> None:
        """FAILED_PRECONDITION exceeds_credits when a Defund would dip into the credit line.

        The ledger would allow it up to the debit limit. The check has the
        place of exceeds_credits in the transaction rules: when it fails, a dry
        run lets the ledger report any rule that comes before it first.
        """
        amount = parsed.message.amount_minor
        balance = await asyncio.to_thread(self.hub.ledger.balance, settlement.id)
        debits = balance.debits_posted + balance.debits_pending + amount
        if debits <= balance.credits_posted:
            return
        results = await self.hub.sequencer.submit([*commands, _ALWAYS_REFUSED], linked=True)
        if results[-1].error is None:
            raise IntegrityError("a dry run committed: its last command must always be refused")
        if isinstance(results[-1].error, LinkedCommandFailed):
            # A rule before the own-funds check refused the Defund: its answer.
            await convert.settle(self.hub, results[:-1], parsed, caller)
        raise _refuse(
            ExceedsCredits(
                f"a Defund pays out only the participant's own funds: {amount} would take "
                f"{settlement.id!r} to debits (posted and pending) of {debits} against posted "
                f"credits of {balance.credits_posted}; its credit line (debit_limit_minor "
                f"{settlement.debit_limit_minor}) is never withdrawn"
            ),
            "amount_minor",
        )

    def _participant(self, participant_id: str) -> participant_pb2.Participant:
        participant = self.hub.registry.get(participant_id)
        if participant is None:
            raise ParticipantMustExist(f"participant {participant_id!r} is not registered")
        return convert.participant_message(participant, self.hub.ledger.signing_keys())

    def _visible_participant(
        self, caller: Caller, request: participant_pb2.GetParticipantRequest
    ) -> participant_pb2.Participant:
        participant = self.hub.registry.get(request.participant_id)
        if participant is None or not _may_see(caller, participant):
            raise _refuse(
                ParticipantMustExist(f"participant {request.participant_id!r} is not registered"),
                "participant_id",
            )
        return convert.participant_message(participant, self.hub.ledger.signing_keys())

    def _list_participants(
        self,
        caller: Caller,
        request: participant_pb2.ListParticipantsRequest,
        after: str | None,
        size: int,
    ) -> participant_pb2.ListParticipantsResponse:
        role = convert.ROLE_FROM_PROTO.get(request.role) if request.role else None
        matching = [
            participant
            for participant in self.hub.registry.all()
            if _may_see(caller, participant)
            and (request.role == participant_pb2.ROLE_UNSPECIFIED or participant.role is role)
            and (after is None or participant.participant_id > after)
        ]
        page = matching[:size]
        keys = self.hub.ledger.signing_keys() if page else []
        response = participant_pb2.ListParticipantsResponse(
            participants=[convert.participant_message(participant, keys) for participant in page]
        )
        if len(matching) > size:
            scope = ("ListParticipants", caller.participant_id, str(request.role))
            response.next_page_token = convert.page_token(scope, page[-1].participant_id)
        return response


def _may_see(caller: Caller, participant: Participant) -> bool:
    return caller.sees_everything or participant.participant_id == caller.participant_id


__all__ = ["SERVICE_NAME", "ParticipantService"]
