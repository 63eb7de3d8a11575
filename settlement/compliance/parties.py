"""Identifiers of the parties and agents of a cross-border payment.

Every check is done by a well-kept library, never by a checksum written here:

- BIC, ISO 9362: :class:`schwifty.BIC` (8 or 11 characters, structure, country).
- IBAN, ISO 13616: :class:`schwifty.IBAN` (length per country, e.g. 24 for
  Pakistan, BBAN structure, ISO 7064 mod 97-10 check digits).
- ABA routing number: :mod:`stdnum.us.rtn` (9 digits, 3-7-1 weighted check digit).
- LEI, ISO 17442: :mod:`stdnum.lei` (20 characters, ISO 7064 mod 97-10).
- Country, ISO 3166-1 alpha-2: :mod:`pycountry` (the ISO 3166 tables).
- Currency, ISO 4217: :func:`ledger.money.currency`.
- UETR: the ISO 20022 ``UUIDv4Identifier`` pattern (RFC 9562 version 4, lower case).

Values must already be in their canonical electronic form (upper case, no
spaces, as the ISO 20022 schemas require): a payment is signed, stored and
exported as sent, so the hub refuses a form it would otherwise have to rewrite.

Each rejection is a :class:`PartyFieldInvalid` (an
:class:`settlement.errors.InvalidArgument`) with a stable ``code`` naming the
rule, the ``field`` it concerns and a message "FIELD: expected X, got Y".
:func:`check_party` reports every finding of a party; :func:`validate_party`
raises the first, in the order the fields are listed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pycountry
import schwifty
import schwifty.exceptions
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError
from stdnum.us import rtn as stdnum_rtn

from ledger.money import Currency, UnknownCurrency, currency
from settlement.errors import InvalidArgument

NAME_LENGTH_MAX = 140
"""ISO 20022 ``Nm`` of a party is ``Max140Text``."""

ADDRESS_LINE_LENGTH_MAX = 70
"""ISO 20022 ``PostalAddress24/AdrLine`` is ``Max70Text``..."""

ADDRESS_LINES_MAX = 7
"""...and occurs at most 7 times."""

US_ACCOUNT_NUMBER_LENGTH_MAX = 17
"""The NACHA DFI account number field is 17 characters; this hub takes digits only."""

SHOWN_VALUE_LENGTH_MAX = 64
"""An error quotes at most this much of the value (and of a library's reason, which may
repeat it), so a huge input cannot bloat a response or a log."""

_UETR_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
"""ISO 20022 ``UUIDv4Identifier`` (pacs.008 ``PmtId/UETR``): RFC 9562 version 4, variant 10xx."""

_US_ACCOUNT_NUMBER_PATTERN = re.compile(rf"[0-9]{{1,{US_ACCOUNT_NUMBER_LENGTH_MAX}}}")

_ROUTING_NUMBER_PREFIXES = frozenset(
    [f"{prefix:02d}" for prefix in (*range(13), *range(21, 33), *range(61, 73), 80)]
)
"""First two digits the ABA assigns: 00 (US government), 01-12 (Federal Reserve
districts), 21-32 (thrifts), 61-72 (electronic), 80 (traveller's cheques).
python-stdnum checks the check digit only, which unassigned numbers such as
``500000005`` and ``000000000`` also pass."""


class PartyFieldInvalid(InvalidArgument):
    """A party or agent field breaks the rule named by ``code``.

    ``field`` is the dotted path of the field in the request (for example
    ``debtor_agent.bic``), so a bank can find what to fix.
    """

    code: ClassVar[str] = "party_field_invalid"

    def __init__(self, field: str, expected: str, value: object, reason: str | None = None) -> None:
        self.field = field
        self.expected = expected
        self.value = value
        because = "" if reason is None else f" ({_truncated(reason)})"
        super().__init__(f"{field}: expected {expected}, got {_shown(value)}{because}")


class BicMustBeValid(PartyFieldInvalid):
    code = "bic_must_be_valid"


class BicCountryMustMatch(PartyFieldInvalid):
    code = "bic_country_must_match"


class IbanMustBeValid(PartyFieldInvalid):
    code = "iban_must_be_valid"


class IbanCountryMustMatch(PartyFieldInvalid):
    code = "iban_country_must_match"


class RoutingNumberMustBeValid(PartyFieldInvalid):
    code = "routing_number_must_be_valid"


class AccountNumberMustBeValid(PartyFieldInvalid):
    code = "account_number_must_be_valid"


class AccountMustBeIbanOrUs(PartyFieldInvalid):
    code = "account_must_be_iban_or_us"


class LeiMustBeValid(PartyFieldInvalid):
    code = "lei_must_be_valid"


class UetrMustBeUuid4(PartyFieldInvalid):
    code = "uetr_must_be_uuid4"


class CountryMustBeIso3166(PartyFieldInvalid):
    code = "country_must_be_iso3166"


class CurrencyMustBeKnown(PartyFieldInvalid):
    # The ledger's code for the same rule (ledger.money.UnknownCurrency).
    code = "currency_must_be_known"


class NameMustBeValid(PartyFieldInvalid):
    code = "name_must_be_valid"


class AddressMustBeValid(PartyFieldInvalid):
    code = "address_must_be_valid"


def _truncated(text: str) -> str:
    if len(text) > SHOWN_VALUE_LENGTH_MAX:
        return text[: SHOWN_VALUE_LENGTH_MAX - 3] + "..."
    return text


def _shown(value: object) -> str:
    return _truncated(repr(value))


def _has_control_characters(text: str) -> bool:
    # Cc: C0/C1 controls (newlines, NUL); Cf: invisible format characters
    # (bidirectional overrides) that make a name display as another.
    return any(unicodedata.category(character) in ("Cc", "Cf") for character in text)


def validate_bic(value: str, *, field: str, country: str | None = None) -> str:
    """Check a BIC (ISO 9362) of 8 or 11 characters; return it.

    ``country``, when given, is the participant's ISO 3166 country: the BIC's
    country letters (positions 5-6) must equal it.
    """
    expected = "a BIC of 8 or 11 upper-case characters (ISO 9362)"
    if not isinstance(value, str):
        raise BicMustBeValid(field, expected, value)
    try:
        bic = schwifty.BIC(value)
    except schwifty.exceptions.SchwiftyException as error:
        raise BicMustBeValid(field, expected, value, str(error)) from None
    if bic.compact != value:
        raise BicMustBeValid(field, f"{expected}, in canonical form {bic.compact!r}", value)
    if country is not None and bic.country_code != country:
        raise BicCountryMustMatch(
            field, f"a BIC of the participant's country {country}", f"{value} of {bic.country_code}"
        )
    return value


def validate_iban(value: str, *, field: str, country: str | None = None) -> str:
    """Check an IBAN (ISO 13616) in electronic form; return it.

    The country's length and BBAN structure and the mod 97 check digits are
    schwifty's (Pakistan: ``PK``, 24 characters, 4-letter bank code then 16
    alphanumerics). ``country``, when given, must be the IBAN's country.
    """
    expected = "an IBAN (ISO 13616)"
    if not isinstance(value, str):
        raise IbanMustBeValid(field, expected, value)
    try:
        iban = schwifty.IBAN(value)
    except schwifty.exceptions.SchwiftyException as error:
        raise IbanMustBeValid(field, expected, value, str(error)) from None
    if iban.compact != value:
        raise IbanMustBeValid(field, f"{expected} in electronic form {iban.compact!r}", value)
    if country is not None and iban.country_code != country:
        raise IbanCountryMustMatch(
            field, f"an IBAN of country {country}", f"{value} of {iban.country_code}"
        )
    return value


def validate_routing_number(value: str, *, field: str) -> str:
    """Check a US ABA routing transit number (9 digits with its check digit); return it."""
    expected = "an ABA routing number of 9 digits"
    if not isinstance(value, str):
        raise RoutingNumberMustBeValid(field, expected, value)
    try:
        compact = stdnum_rtn.validate(value)
    except ValidationError as error:
        raise RoutingNumberMustBeValid(field, expected, value, str(error)) from None
    if compact != value:
        raise RoutingNumberMustBeValid(field, f"{expected}, without spaces", value)
    if value[:2] not in _ROUTING_NUMBER_PREFIXES or value == "000000000":
        raise RoutingNumberMustBeValid(
            field, f"{expected} starting 00-12, 21-32, 61-72 or 80 (ABA-assigned ranges)", value
        )
    return value


def validate_us_account_number(value: str, *, field: str) -> str:
    """Check a US bank account number: 1 to 17 digits; return it."""
    expected = f"a US account number of 1 to {US_ACCOUNT_NUMBER_LENGTH_MAX} digits"
    if not isinstance(value, str) or not _US_ACCOUNT_NUMBER_PATTERN.fullmatch(value):
        raise AccountNumberMustBeValid(field, expected, value)
    return value


def validate_lei(value: str, *, field: str) -> str:
    """Check a Legal Entity Identifier (ISO 17442, 20 characters, mod 97); return it."""
    expected = "an LEI of 20 upper-case characters (ISO 17442)"
    if not isinstance(value, str):
        raise LeiMustBeValid(field, expected, value)
    try:
        compact = stdnum_lei.validate(value)
    except ValidationError as error:
        raise LeiMustBeValid(field, expected, value, str(error)) from None
    if compact != value:
        raise LeiMustBeValid(field, f"{expected}, in canonical form {compact!r}", value)
    return value


def validate_uetr(value: str, *, field: str) -> str:
    """Check a UETR: a version 4 UUID in lower-case canonical form; return it."""
    expected = "a UUID version 4 in lower case, xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx"
    if not isinstance(value, str) or not _UETR_PATTERN.fullmatch(value):
        raise UetrMustBeUuid4(field, expected, value)
    return value


def validate_country(value: str, *, field: str) -> str:
    """Check an ISO 3166-1 alpha-2 country code in upper case; return it."""
    expected = "an ISO 3166-1 alpha-2 country code in upper case"
    # pycountry's lookup ignores case; the code itself must be canonical.
    if (
        not isinstance(value, str)
        or len(value) != 2
        or not ("A" <= value[0] <= "Z" and "A" <= value[1] <= "Z")
        or pycountry.countries.get(alpha_2=value) is None
    ):
        raise CountryMustBeIso3166(field, expected, value)
    return value


def validate_currency(value: str, *, field: str) -> Currency:
    """Check an ISO 4217 currency the ledger supports; return its :class:`Currency`."""
    try:
        return currency(value)
    except UnknownCurrency:
        raise CurrencyMustBeKnown(
            field, "an ISO 4217 currency the ledger supports", value
        ) from None


def validate_name(value: str, *, field: str) -> str:
    """Check a party name: 1 to 140 characters, a letter or digit, no control characters."""
    expected = f"a name of 1 to {NAME_LENGTH_MAX} characters with a letter or digit"
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= NAME_LENGTH_MAX
        or not any(character.isalnum() for character in value)
    ):
        raise NameMustBeValid(field, expected, value)
    if _has_control_characters(value):
        raise NameMustBeValid(field, "a name without control or format characters", value)
    return value


def validate_address_lines(lines: Sequence[str], *, field: str) -> tuple[str, ...]:
    """Check unstructured address lines: at most 7, each 1 to 70 characters."""
    if isinstance(lines, str) or len(lines) > ADDRESS_LINES_MAX:
        raise AddressMustBeValid(field, f"at most {ADDRESS_LINES_MAX} address lines", lines)
    for number, line in enumerate(lines):
        line_field = f"{field}[{number}]"
        if not isinstance(line, str) or not 1 <= len(line) <= ADDRESS_LINE_LENGTH_MAX:
            raise AddressMustBeValid(
                line_field, f"an address line of 1 to {ADDRESS_LINE_LENGTH_MAX} characters", line
            )
        if _has_control_characters(line):
            raise AddressMustBeValid(
                line_field, "an address line without control or format characters", line
            )
    return tuple(lines)


@dataclass(frozen=True)
class IbanAccount:
    """An account identified by its IBAN (Pakistan and most non-US countries)."""

    iban: str


@dataclass(frozen=True)
class UsBankAccount:
    """A US account: the bank's ABA routing number and the account number there."""

    account_number: str
    routing_number: str


Account = IbanAccount | UsBankAccount


@dataclass(frozen=True)
class Party:
    """A debtor or creditor of a payment (ISO 20022 ``Dbtr``/``Cdtr`` with its account).

    ``country`` is the party's country of residence (ISO 3166-1 alpha-2). It
    is not compared with the account's country: a resident of one country may
    legitimately hold an account in another.
    """

    name: str
    account: Account
    country: str
    lei: str | None = None
    address_lines: tuple[str, ...] = ()


def check_party(party: Party, field_prefix: str) -> list[PartyFieldInvalid]:
    """Every rule the party breaks, in the order of its fields (empty when valid).

    Field names are ``{field_prefix}.name``, ``{field_prefix}.account.iban``
    and so on.
    """
    findings: list[PartyFieldInvalid] = []

    def check(function: Callable[..., object], *arguments: object, **keywords: object) -> None:
        try:
            function(*arguments, **keywords)
        except PartyFieldInvalid as finding:
            findings.append(finding)

    check(validate_name, party.name, field=f"{field_prefix}.name")
    check(validate_country, party.country, field=f"{field_prefix}.country")
    # Typed as object: the type allows only the two kinds, but a caller might pass another.
    account: object = party.account
    if isinstance(account, IbanAccount):
        check(validate_iban, account.iban, field=f"{field_prefix}.account.iban")
    elif isinstance(account, UsBankAccount):
        check(
            validate_routing_number,
            account.routing_number,
            field=f"{field_prefix}.account.routing_number",
        )
        check(
            validate_us_account_number,
            account.account_number,
            field=f"{field_prefix}.account.account_number",
        )
    else:
        findings.append(
            AccountMustBeIbanOrUs(
                f"{field_prefix}.account", "an IBAN or a US account with routing number", account
            )
        )
    if party.lei is not None:
        check(validate_lei, party.lei, field=f"{field_prefix}.lei")
    check(validate_address_lines, party.address_lines, field=f"{field_prefix}.address_lines")
    return findings


def validate_party(party: Party, field_prefix: str) -> Party:
    """Raise the first rule the party breaks (see :func:`check_party`); return the party."""
    findings = check_party(party, field_prefix)
    if findings:
        raise findings[0]
    return party
