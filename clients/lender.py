"""The export-credit lender's reference client: ``python -m clients.lender COMMAND --help``.

Participant ``lender`` of the development PKI, home currency USD; the
commands are those of :mod:`clients.bank`, the ``loan-*`` ones among them
(:mod:`clients.loans`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clients.bank import BankDefaults
from clients.bank import main as bank_main

DEFAULTS = BankDefaults(
    program="lender",
    participant_id="lender",
    home_currency="USD",
    foreign_currency="PKR",
)


def main(argv: Sequence[str] | None = None) -> int:
    return bank_main(DEFAULTS, argv)


if __name__ == "__main__":
    sys.exit(main())
