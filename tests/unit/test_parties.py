"""Party and agent identifiers: one row per value, the code it must raise (or None) last.

Valid examples are real-format identifiers checked with the libraries that
validate them (schwifty, python-stdnum), not made up.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger.money import Currency
from settlement.compliance.parties import (
    ADDRESS_LINES_MAX,
    IbanAccount,
    Party,
    PartyFieldInvalid,
    UsBankAccount,
    check_party,
    validate_address_lines,
    validate_bic,
    validate_country,
    validate_currency,
    validate_iban,
    validate_lei,
    validate_name,
    validate_party,
    validate_routing_number,
    validate_uetr,
    validate_us_account_number,
)
from settlement.errors import InvalidArgument

Validator = Callable[..., object]

BIC_CASES = [
    # value, participant country, expected code
    ("HABBPKKA", None, None),  # Habib Bank, Karachi
    ("SCBLPKKX", "PK", None),  # Standard Chartered Pakistan
    ("CHASUS33", "US", None),  # JPMorgan Chase, New York
    ("CHASUS33XXX", "US", None),  # 11 characters, primary office
    ("BOFAUS3N", None, None),
    ("HABBPKKA", "US", "bic_country_must_match"),
    ("CHASUS33XXX", "PK", "bic_country_must_match"),
    ("", None, "bic_must_be_valid"),
    ("HABBPK", None, "bic_must_be_valid"),  # 6 characters
    ("DEUTDEFF50", None, "bic_must_be_valid"),  # 10 characters
    ("HABBPKKA1", None, "bic_must_be_valid"),  # 9 characters
    ("DEUT1EFF", None, "bic_must_be_valid"),  # digit in the country code
    ("HABBZZKA", None, "bic_must_be_valid"),  # ZZ is no country
    ("habbpkka", None, "bic_must_be_valid"),  # not canonical: lower case
    ("HABB PKKA", None, "bic_must_be_valid"),  # not canonical: space
    ("HABBPKKA\n", None, "bic_must_be_valid"),
]

IBAN_CASES = [
    # value, country, expected code
    ("PK36SCBL0000001123456702", None, None),
    ("PK36SCBL0000001123456702", "PK", None),
    ("PK22HABB0000123456789012", "PK", None),
    ("PK56MEZN0001234567890123", None, None),
    ("GB29NWBK60161331926819", "GB", None),
    ("DE89370400440532013000", None, None),
    ("PK36SCBL0000001123456702", "US", "iban_country_must_match"),
    ("GB29NWBK60161331926819", "PK", "iban_country_must_match"),
    ("", None, "iban_must_be_valid"),
    ("PK37SCBL0000001123456702", None, "iban_must_be_valid"),  # check digits (mod 97)
    ("PK36SCBL0000001123456703", None, "iban_must_be_valid"),  # one digit changed
    ("PK36SCBL000000112345670", None, "iban_must_be_valid"),  # 23 characters, Pakistan has 24
    ("PK36SCBL00000011234567021", None, "iban_must_be_valid"),  # 25 characters
    ("PK401234000000112345670A", None, "iban_must_be_valid"),  # bank code must be 4 letters
    ("pk36scbl0000001123456702", None, "iban_must_be_valid"),  # not canonical: lower case
    ("PK36 SCBL 0000 0011 2345 6702", None, "iban_must_be_valid"),  # print form
    ("XX36SCBL0000001123456702", None, "iban_must_be_valid"),  # no such country
    ("US12345678901234567890", None, "iban_must_be_valid"),  # the US has no IBAN
]

ROUTING_NUMBER_CASES = [
    ("021000021", None),  # JPMorgan Chase, New York
    ("026009593", None),  # Bank of America
    ("011000015", None),  # Federal Reserve Bank of Boston
    ("122105278", None),  # Wells Fargo, Arizona
    ("021000022", "routing_number_must_be_valid"),  # check digit
    ("02100002", "routing_number_must_be_valid"),  # 8 digits
    ("0210000210", "routing_number_must_be_valid"),  # 10 digits
    ("02100002A", "routing_number_must_be_valid"),
    (" 021000021", "routing_number_must_be_valid"),  # stdnum would strip the space
    ("021-000-021", "routing_number_must_be_valid"),
    ("500000005", "routing_number_must_be_valid"),  # check digit fine, prefix 50 unassigned
    ("000000000", "routing_number_must_be_valid"),  # check digit fine, not a number
    ("", "routing_number_must_be_valid"),
]

ACCOUNT_NUMBER_CASES = [
    ("1234567890", None),
    ("1", None),
    ("12345678901234567", None),  # 17 digits
    ("123456789012345678", "account_number_must_be_valid"),  # 18 digits
    ("", "account_number_must_be_valid"),
    ("1234 5678", "account_number_must_be_valid"),
    ("12345678A", "account_number_must_be_valid"),
    ("\uff11\uff12\uff13", "account_number_must_be_valid"),  # full-width digits
]

LEI_CASES = [
    ("5493001KJTIIGC8Y1R12", None),
    ("7LTWFZYICNSX8D621K86", None),  # Deutsche Bank
    ("HWUPKR0MPOU8FGXBT394", None),
    ("5493001KJTIIGC8Y1R13", "lei_must_be_valid"),  # check digits (mod 97)
    ("5493001KJTIIGC8Y1R1", "lei_must_be_valid"),  # 19 characters
    ("5493001KJTIIGC8Y1R123", "lei_must_be_valid"),  # 21 characters
    ("5493001kjtiigc8y1r12", "lei_must_be_valid"),  # not canonical: lower case
    ("5493 001K JTII GC8Y 1R12", "lei_must_be_valid"),
    ("", "lei_must_be_valid"),
]

UETR_CASES = [
    ("eb6305c9-1f7f-49de-aed0-16487c27b42d", None),
    ("00000000-0000-4000-8000-000000000000", None),
    ("ffffffff-ffff-4fff-bfff-ffffffffffff", None),
    ("EB6305C9-1F7F-49DE-AED0-16487C27B42D", "uetr_must_be_uuid4"),  # upper case
    ("eb6305c9-1f7f-19de-aed0-16487c27b42d", "uetr_must_be_uuid4"),  # version 1
    ("eb6305c9-1f7f-49de-ced0-16487c27b42d", "uetr_must_be_uuid4"),  # variant 110x
    ("eb6305c9-1f7f-49de-7ed0-16487c27b42d", "uetr_must_be_uuid4"),  # variant 0xxx
    ("eb6305c91f7f49deaed016487c27b42d", "uetr_must_be_uuid4"),  # no hyphens
    ("{eb6305c9-1f7f-49de-aed0-16487c27b42d}", "uetr_must_be_uuid4"),
    ("eb6305c9-1f7f-49de-aed0-16487c27b42d\n", "uetr_must_be_uuid4"),
    ("eb6305c9-1f7f-49de-aed0-16487c27b42", "uetr_must_be_uuid4"),  # 35 characters
    ("", "uetr_must_be_uuid4"),
]

COUNTRY_CASES = [
    ("PK", None),
    ("US", None),
    ("GB", None),
    ("pk", "country_must_be_iso3166"),  # pycountry would accept it
    ("Pk", "country_must_be_iso3166"),
    ("PAK", "country_must_be_iso3166"),  # alpha-3
    ("ZZ", "country_must_be_iso3166"),
    ("XK", "country_must_be_iso3166"),  # Kosovo: user-assigned, not in ISO 3166-1
    ("UK", "country_must_be_iso3166"),  # reserved, GB is the code
    ("", "country_must_be_iso3166"),
]

NAME_CASES = [
    ("Habib Bank Limited", None),
    ("Müller & Söhne GmbH", None),
    ("A", None),
    ("x" * 140, None),
    ("x" * 141, "name_must_be_valid"),
    ("", "name_must_be_valid"),
    ("   ", "name_must_be_valid"),
    ("--- ...", "name_must_be_valid"),
    ("Habib\nBank", "name_must_be_valid"),
    ("Habib\u202eBank", "name_must_be_valid"),  # right-to-left override
]


def assert_rule(validator: Validator, value: object, code: str | None, **keywords: object) -> None:
    if code is None:
        assert validator(value, field="party.field", **keywords) == value
        return
    with pytest.raises(PartyFieldInvalid) as caught:
        validator(value, field="party.field", **keywords)
    assert caught.value.code == code
    assert caught.value.field == "party.field"
    assert isinstance(caught.value, InvalidArgument)
    assert str(caught.value).startswith(f"{code}: party.field: expected ")


@pytest.mark.parametrize(("value", "country", "code"), BIC_CASES)
def test_bic(value: str, country: str | None, code: str | None) -> None:
    assert_rule(validate_bic, value, code, country=country)


@pytest.mark.parametrize(("value", "country", "code"), IBAN_CASES)
def test_iban(value: str, country: str | None, code: str | None) -> None:
    assert_rule(validate_iban, value, code, country=country)


@pytest.mark.parametrize(("value", "code"), ROUTING_NUMBER_CASES)
def test_routing_number(value: str, code: str | None) -> None:
    assert_rule(validate_routing_number, value, code)


@pytest.mark.parametrize(("value", "code"), ACCOUNT_NUMBER_CASES)
def test_us_account_number(value: str, code: str | None) -> None:
    assert_rule(validate_us_account_number, value, code)


@pytest.mark.parametrize(("value", "code"), LEI_CASES)
def test_lei(value: str, code: str | None) -> None:
    assert_rule(validate_lei, value, code)


@pytest.mark.parametrize(("value", "code"), UETR_CASES)
def test_uetr(value: str, code: str | None) -> None:
    assert_rule(validate_uetr, value, code)


@pytest.mark.parametrize(("value", "code"), COUNTRY_CASES)
def test_country(value: str, code: str | None) -> None:
    assert_rule(validate_country, value, code)


@pytest.mark.parametrize(("value", "code"), NAME_CASES)
def test_name(value: str, code: str | None) -> None:
    assert_rule(validate_name, value, code)


@pytest.mark.parametrize(
    "validator",
    [
        validate_bic,
        validate_iban,
        validate_routing_number,
        validate_us_account_number,
        validate_lei,
        validate_uetr,
        validate_country,
        validate_name,
    ],
)
@pytest.mark.parametrize("value", [None, 21000021, b"HABBPKKA"])
def test_a_value_that_is_not_text_is_refused_by_the_rule_not_a_type_error(
    validator: Validator, value: object
) -> None:
    with pytest.raises(PartyFieldInvalid):
        validator(value, field="party.field")


def test_currency() -> None:
    assert validate_currency("PKR", field="amount.currency") == Currency("PKR", "586", 2)
    assert validate_currency("USD", field="amount.currency").exponent == 2
    for value in ("usd", "XXX", "", "US"):
        with pytest.raises(PartyFieldInvalid) as caught:
            validate_currency(value, field="amount.currency")
        assert caught.value.code == "currency_must_be_known"
        assert caught.value.field == "amount.currency"


def test_messages_name_the_field_the_rule_and_the_value() -> None:
    with pytest.raises(PartyFieldInvalid) as caught:
        validate_bic("CHASUS33", field="debtor_agent.bic", country="PK")
    assert str(caught.value) == (
        "bic_country_must_match: debtor_agent.bic: expected a BIC of the participant's "
        "country PK, got 'CHASUS33 of US'"
    )
    with pytest.raises(PartyFieldInvalid) as caught:
        validate_iban("PK36SCBL000000112345670", field="creditor.account.iban")
    assert str(caught.value) == (
        "iban_must_be_valid: creditor.account.iban: expected an IBAN (ISO 13616), "
        "got 'PK36SCBL000000112345670' (Invalid IBAN length)"
    )


@pytest.mark.parametrize(
    "validator", [validate_bic, validate_iban, validate_routing_number, validate_lei]
)
@pytest.mark.parametrize("value", ["9" * 100_000, "PK" + "9" * 5_000, "PK36" + "A" * 5_000])
def test_a_huge_value_is_refused_and_shown_truncated(validator: Validator, value: str) -> None:
    with pytest.raises(PartyFieldInvalid) as caught:
        validator(value, field="debtor.field")
    assert len(str(caught.value)) < 300
    assert "..." in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "field", "code"),
    [
        ((), None, None),
        (("1 I.I. Chundrigar Road", "Karachi 74000"), None, None),
        (("x" * 70,) * ADDRESS_LINES_MAX, None, None),
        (("x",) * (ADDRESS_LINES_MAX + 1), "party.field", "address_must_be_valid"),
        (("Karachi", "x" * 71), "party.field[1]", "address_must_be_valid"),
        (("Karachi", ""), "party.field[1]", "address_must_be_valid"),
        (("Karachi\n74000",), "party.field[0]", "address_must_be_valid"),
        ("Karachi", "party.field", "address_must_be_valid"),  # a string, not lines
    ],
)
def test_address_lines(lines: tuple[str, ...], field: str | None, code: str | None) -> None:
    if code is None:
        assert validate_address_lines(lines, field="party.field") == lines
        return
    with pytest.raises(PartyFieldInvalid) as caught:
        validate_address_lines(lines, field="party.field")
    assert (caught.value.code, caught.value.field) == (code, field)


PAKISTANI_CREDITOR = Party(
    name="Saindak Metals Limited",
    account=IbanAccount("PK36SCBL0000001123456702"),
    country="PK",
    lei="5493001KJTIIGC8Y1R12",
    address_lines=("Saindak, Chagai District", "Balochistan"),
)
US_DEBTOR = Party(
    name="Copper Buyer Inc.",
    account=UsBankAccount(account_number="000123456789", routing_number="021000021"),
    country="US",
)


def test_valid_parties_pass() -> None:
    assert check_party(PAKISTANI_CREDITOR, "creditor") == []
    assert check_party(US_DEBTOR, "debtor") == []
    assert validate_party(US_DEBTOR, "debtor") is US_DEBTOR


def test_a_party_reports_every_finding_in_field_order() -> None:
    party = Party(
        name="",
        account=UsBankAccount(account_number="12 34", routing_number="021000022"),
        country="USA",
        lei="5493001KJTIIGC8Y1R13",
        address_lines=("x" * 71,),
    )
    findings = check_party(party, "debtor")
    assert [(finding.field, finding.code) for finding in findings] == [
        ("debtor.name", "name_must_be_valid"),
        ("debtor.country", "country_must_be_iso3166"),
        ("debtor.account.routing_number", "routing_number_must_be_valid"),
        ("debtor.account.account_number", "account_number_must_be_valid"),
        ("debtor.lei", "lei_must_be_valid"),
        ("debtor.address_lines[0]", "address_must_be_valid"),
    ]
    with pytest.raises(PartyFieldInvalid) as caught:
        validate_party(party, "debtor")
    assert (caught.value.field, caught.value.code) == ("debtor.name", "name_must_be_valid")


@pytest.mark.parametrize(
    ("party", "field", "code"),
    [
        (
            Party("Saindak Metals", IbanAccount("PK36SCBL0000001123456703"), "PK"),
            "creditor.account.iban",
            "iban_must_be_valid",
        ),
        (
            Party("Saindak Metals", IbanAccount("PK36SCBL0000001123456702"), "pk"),
            "creditor.country",
            "country_must_be_iso3166",
        ),
        (
            Party("Saindak Metals", IbanAccount("PK36SCBL0000001123456702"), "PK", lei=""),
            "creditor.lei",
            "lei_must_be_valid",
        ),
        (
            Party("Saindak Metals", "PK36SCBL0000001123456702", "PK"),  # type: ignore[arg-type]
            "creditor.account",
            "account_must_be_iban_or_us",
        ),
    ],
)
def test_each_party_field_is_checked(party: Party, field: str, code: str) -> None:
    findings = check_party(party, "creditor")
    assert [(finding.field, finding.code) for finding in findings] == [(field, code)]


def test_the_account_country_is_not_the_party_country() -> None:
    # A Pakistani resident with a US account, a US company with a Pakistani one.
    resident = Party("Imran Qureshi", US_DEBTOR.account, "PK")
    company = Party("Copper Buyer Inc.", PAKISTANI_CREDITOR.account, "US")
    assert check_party(resident, "debtor") == []
    assert check_party(company, "debtor") == []
