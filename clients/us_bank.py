"""The US bank's reference client: ``python -m clients.us_bank COMMAND --help``.

Participant ``bank-us`` of the development PKI, home currency USD; the
commands are those of :mod:`clients.bank`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clients.bank import BankDefaults
from clients.bank import main as bank_main

DEFAULTS = BankDefaults(
    program="us_bank",
    participant_id="bank-us",
    home_currency="USD",
    foreign_currency="PKR",
)


def main(argv: Sequence[str] | None = None) -> int:
    return bank_main(DEFAULTS, argv)


if __name__ == "__main__":
    sys.exit(main())
