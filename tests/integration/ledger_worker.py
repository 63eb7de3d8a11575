"""A separate process that writes to a ledger, for the multi-process and crash tests.

Run as ``python -m tests.integration.ledger_worker MODE LOCATION ...`` from the
repository root. It prints one line per outcome and flushes it at once, so the
parent knows exactly what was acknowledged:

- ``transfers LOCATION PREFIX COUNT SEED ACCOUNT...``: COUNT transfers of 1..100
  from a random ACCOUNT to ``sink``, and one shared id ``shared-N`` every tenth
  step (the same ids in every process: each must post once). Prints
  ``ok ID ACCOUNT AMOUNT EXISTED`` or ``refused ID CODE``.
- ``crash LOCATION PREFIX``: transfers of 1 from ``issuer`` to ``sink`` until
  killed, printing ``ack ID`` after each ``execute`` returns.
"""

from __future__ import annotations

import random
import sys

from ledger.records import NewTransaction, Posting, Side
from ledger.store import Ledger


def one_transfer(transaction_id: str, debit_account_id: str, amount: int) -> NewTransaction:
    return NewTransaction(
        transaction_id,
        (
            Posting(debit_account_id, Side.DEBIT, amount, "USD"),
            Posting("sink", Side.CREDIT, amount, "USD"),
        ),
        reference=transaction_id,
    )


def transfers(location: str, prefix: str, count: int, seed: int, hot: list[str]) -> None:
    chooser = random.Random(seed)
    with Ledger(location, pool_size=2) as ledger:
        for step in range(count):
            if step % 10 == 0:
                command = one_transfer(f"shared-{step}", hot[0], 1)
            else:
                command = one_transfer(
                    f"{prefix}-{step}", chooser.choice(hot), chooser.randint(1, 100)
                )
            (result,) = ledger.execute([command])
            debit = command.postings[0]
            if result.receipt is not None:
                existed = int(result.receipt.existed)
                print(f"ok {command.id} {debit.account_id} {debit.amount_minor} {existed}")
            else:
                assert result.error is not None
                print(f"refused {command.id} {result.error.code}")
            sys.stdout.flush()


def crash(location: str, prefix: str) -> None:
    with Ledger(location, pool_size=1) as ledger:
        print("ready", flush=True)
        step = 0
        while True:
            command = one_transfer(f"{prefix}-{step}", "issuer", 1)
            (result,) = ledger.execute([command])
            if result.error is not None:
                raise result.error
            print(f"ack {command.id}", flush=True)
            step += 1


def main(arguments: list[str]) -> None:
    mode, location, prefix, *rest = arguments
    if mode == "transfers":
        count, seed, *hot = rest
        transfers(location, prefix, int(count), int(seed), hot)
    elif mode == "crash":
        crash(location, prefix)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
