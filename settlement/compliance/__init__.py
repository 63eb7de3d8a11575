"""Compliance checks a payment passes before it moves money.

- :mod:`~settlement.compliance.parties`: BIC, IBAN, ABA routing number, LEI,
  UETR, country and currency of the parties and agents.
- :mod:`~settlement.compliance.screening`: fuzzy screening of names against
  OFAC's SDN list (vendored in ``data/``, or newer files given by path).
- :mod:`~settlement.compliance.reporting`: which regulatory reports an amount
  calls for (US travel rule, US and Pakistani currency transaction reports).

Nothing here touches the ledger or the transport: the payment flows call
these functions and the service maps their errors to status codes.
"""

from settlement.compliance.parties import (
    IbanAccount,
    Party,
    PartyFieldInvalid,
    UsBankAccount,
    check_party,
    validate_bic,
    validate_country,
    validate_currency,
    validate_iban,
    validate_lei,
    validate_party,
    validate_routing_number,
    validate_uetr,
)
from settlement.compliance.reporting import (
    DEFAULT_THRESHOLDS,
    ReportingThreshold,
    reporting_flags,
)
from settlement.compliance.screening import (
    DEFAULT_THRESHOLD,
    Match,
    SanctionsList,
    SanctionsListMalformed,
    ScreeningResult,
    default_list,
    screen,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_THRESHOLDS",
    "IbanAccount",
    "Match",
    "Party",
    "PartyFieldInvalid",
    "ReportingThreshold",
    "SanctionsList",
    "SanctionsListMalformed",
    "ScreeningResult",
    "UsBankAccount",
    "check_party",
    "default_list",
    "reporting_flags",
    "screen",
    "validate_bic",
    "validate_country",
    "validate_currency",
    "validate_iban",
    "validate_lei",
    "validate_party",
    "validate_routing_number",
    "validate_uetr",
]
