"""Export an audit bundle from the ledger's database.

The bundle (format in :mod:`ledger.bundle`) covers the log up to one signed
checkpoint: a fresh checkpoint is issued at the current size first, so the
bundle holds every committed entry. Leaves are streamed from the database in
index order; memory stays flat however long the log is.
"""

from __future__ import annotations

from pathlib import Path

from ledger import bundle
from ledger.note import sign_note
from ledger.store import Ledger


class NothingToExport(ValueError):
    """The log is empty, or the ledger was opened without the log key."""


def export_bundle(ledger: Ledger, directory: Path) -> int:
    """Write a bundle of the whole log to ``directory``; return its tree size.

    Needs a ledger opened with log settings: the checkpoint and the manifest
    are signed with the log key.
    """
    if ledger.log is None:
        raise NothingToExport("exporting needs the log key: open the ledger with log settings")
    ledger.issue_checkpoint()
    checkpoints = ledger.checkpoints()
    if not checkpoints:
        raise NothingToExport("the log is empty: there is nothing to export")
    tree_size = checkpoints[-1][0]
    directory.mkdir(parents=True, exist_ok=True)
    bundle.write_framed(directory / bundle.LEAVES_FILE, ledger.leaves(0, tree_size))
    bundle.write_framed(directory / bundle.CHECKPOINTS_FILE, (note for _, note in checkpoints))
    bundle.write_json(directory / bundle.TRUST_FILE, bundle.trust_document(trust(ledger)))
    bundle.write_json(
        directory / bundle.BALANCES_FILE,
        bundle.balances_document(closing_balances(ledger, tree_size)),
    )
    text = bundle.manifest_text(
        ledger.log.origin, tree_size, bundle.manifest_file_hashes(directory)
    )
    (directory / bundle.MANIFEST_FILE).write_bytes(sign_note(text, [ledger.log.signer]))
    return tree_size


def trust(ledger: Ledger) -> bundle.Trust:
    """The log key and every participant key with the leaf indexes it may sign."""
    if ledger.log is None:
        raise NothingToExport("no log settings")
    return bundle.Trust(
        origin=ledger.log.origin,
        log_keys=(bundle.LogKey(ledger.log.signer.verifier(), 0, None),),
        participant_keys=tuple(
            bundle.ParticipantKey(key.signer, key.public_key, key.first_index, key.last_index)
            for key in ledger.signing_keys()
        ),
    )


def closing_balances(ledger: Ledger, tree_size: int) -> bundle.Balances:
    return bundle.Balances(
        tree_size=tree_size,
        accounts=tuple(
            bundle.AccountBalance(
                balance.account_id,
                balance.currency,
                balance.debits_posted,
                balance.credits_posted,
                balance.debits_pending,
                balance.credits_pending,
            )
            for balance in ledger.closing_balances(tree_size)
        ),
    )
