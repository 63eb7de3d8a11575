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
