"""The Pakistani bank's reference client: ``python -m clients.pk_bank COMMAND --help``.

Participant ``bank-pk`` of the development PKI, home currency PKR; the
commands are those of :mod:`clients.bank`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clients.bank import BankDefaults
from clients.bank import main as bank_main

DEFAULTS = BankDefaults(
    program="pk_bank",
    participant_id="bank-pk",
    home_currency="PKR",
    foreign_currency="USD",
)


def main(argv: Sequence[str] | None = None) -> int:
    return bank_main(DEFAULTS, argv)


if __name__ == "__main__":
    sys.exit(main())
