"""The group-commit sequencer: many callers, few durable transactions, isolated failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from ledger.errors import DebitsMustEqualCredits, LinkedCommandFailed
from ledger.records import CommandResult, NewAccount, NewTransaction, Posting, Side
from ledger.store import Ledger
from settlement.errors import Unavailable
from settlement.sequencer import Sequencer

CALLERS = 40


def _transfer(transaction_id: str, amount: int, credit_amount: int | None = None) -> NewTransaction:
    return NewTransaction(
        transaction_id,
        (
            Posting("a", Side.DEBIT, amount, "USD"),
            Posting("b", Side.CREDIT, amount if credit_amount is None else credit_amount, "USD"),
        ),
    )


@pytest.fixture
def ledger(database: str) -> Any:
    with Ledger(database) as store:
        store.execute(
            [
                NewAccount("a", "bank-a", "USD", Side.DEBIT),
                NewAccount("b", "bank-b", "USD", Side.CREDIT),
            ]
        )
        yield store


def _run(ledger: Ledger, scenario: Any) -> Any:
    async def main() -> Any:
        groups: list[int] = []
        sequencer = Sequencer(ledger, on_group=groups.append)
        sequencer.start()
        try:
            return await scenario(sequencer), groups
        finally:
            await sequencer.stop()

    return asyncio.run(main())


def test_concurrent_callers_share_commits_and_each_gets_its_own_result(ledger: Ledger) -> None:
    async def scenario(sequencer: Sequencer) -> list[list[CommandResult]]:
        return await asyncio.gather(
            *(sequencer.submit([_transfer(f"t{n}", n + 1)]) for n in range(CALLERS))
        )

    results, groups = _run(ledger, scenario)
    assert [result[0].id for result in results] == [f"t{n}" for n in range(CALLERS)]
    assert all(result[0].ok for result in results)
    assert sum(groups) == CALLERS
    assert len(groups) < CALLERS  # grouped: fewer database transactions than callers
    assert ledger.balance("b").credits_posted == sum(range(1, CALLERS + 1))
    ledger.check_invariants()


def test_one_bad_request_in_a_group_never_fails_the_others(ledger: Ledger) -> None:
    async def scenario(sequencer: Sequencer) -> list[list[CommandResult]]:
        requests = [[_transfer(f"ok{n}", 10)] for n in range(10)]
        requests.insert(5, [_transfer("unbalanced", 10, credit_amount=9)])
        return await asyncio.gather(*(sequencer.submit(request) for request in requests))

    results, _ = _run(ledger, scenario)
    outcomes = {result[0].id: result[0] for result in results}
    assert isinstance(outcomes["unbalanced"].error, DebitsMustEqualCredits)
    assert all(outcomes[f"ok{n}"].ok for n in range(10))
    assert ledger.balance("b").credits_posted == 100


def test_a_linked_batch_is_all_or_nothing_even_among_other_callers(ledger: Ledger) -> None:
    async def scenario(sequencer: Sequencer) -> tuple[Any, ...]:
        return await asyncio.gather(
            sequencer.submit([_transfer("before", 1)]),
            sequencer.submit(
                [_transfer("linked-ok", 5), _transfer("linked-bad", 5, credit_amount=4)],
                linked=True,
            ),
            sequencer.submit([_transfer("after", 2)]),
        )

    (before, linked, after), _ = _run(ledger, scenario)
    assert before[0].ok
    assert after[0].ok
    assert isinstance(linked[0].error, LinkedCommandFailed)
    assert isinstance(linked[1].error, DebitsMustEqualCredits)
    assert ledger.balance("b").credits_posted == 3


def test_an_answered_write_is_already_durable(ledger: Ledger, database: str) -> None:
    async def scenario(sequencer: Sequencer) -> list[CommandResult]:
        return await sequencer.submit([_transfer("durable", 7)])

    (result,), _ = _run(ledger, scenario)
    assert result.receipt is not None
    with Ledger(database, migrate=False) as other:  # another connection, another pool
        assert other.transaction("durable").journal_index == result.receipt.journal_index


def test_without_the_writer_lease_writes_are_unavailable(ledger: Ledger) -> None:
    async def main() -> None:
        sequencer = Sequencer(ledger, may_write=lambda: False)
        with pytest.raises(Unavailable, match="writer lease"):
            await sequencer.submit([_transfer("refused", 1)])

    asyncio.run(main())
    assert ledger.journal_size() == 2


def test_a_database_failure_is_unavailable_for_the_whole_group(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_arguments: Any, **_options: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection reset"))

    monkeypatch.setattr(ledger, "execute", broken)

    async def scenario(sequencer: Sequencer) -> list[Any]:
        return await asyncio.gather(
            *(sequencer.submit([_transfer(f"x{n}", 1)]) for n in range(3)),
            return_exceptions=True,
        )

    outcomes, _ = _run(ledger, scenario)
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes)
