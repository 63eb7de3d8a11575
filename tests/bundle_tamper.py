"""Tampering with export bundles: one function per attack, each mutating a directory.

Each function takes a bundle directory and changes it the way the attack
would, re-signing with the log keys (``LogSigning``) where the attacker holds
them: the operator, who signs checkpoints and manifests, is the strongest
adversary of an offline audit. Functions that "reseal" recompute every
checkpoint root over the tampered leaves and re-sign checkpoints and manifest,
so that only the verifier's semantic checks (signatures, balance, replay) are
left to notice. Kept importable for the golden-bundle generator, which runs
them on bundles exported from a real ledger.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import bundle
from ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from ledger.merkle import leaf_hash, root_from_leaf_hashes
from ledger.note import NoteSigner, sign_note
from ledger.signing import sign_instruction
from tests.bundle_builder import LogSigning, sign_manifest

# --- Reading and writing the parts ------------------------------------------------------


def read_leaves(directory: Path) -> list[bytes]:
    return list(bundle.read_framed(directory / bundle.LEAVES_FILE))


def write_leaves(directory: Path, leaves: list[bytes]) -> None:
    bundle.write_framed(directory / bundle.LEAVES_FILE, leaves)


def read_checkpoints(directory: Path) -> list[bytes]:
    return list(bundle.read_framed(directory / bundle.CHECKPOINTS_FILE))


def write_checkpoints(directory: Path, notes: list[bytes]) -> None:
    bundle.write_framed(directory / bundle.CHECKPOINTS_FILE, notes)


def note_text(note: bytes) -> str:
    """The signed text of a note, without checking any signature."""
    return note[: note.rfind(b"\n\n") + 1].decode("utf-8")


def origin_of(directory: Path) -> str:
    origin = bundle.read_json(directory / bundle.TRUST_FILE)["origin"]
    if not isinstance(origin, str):
        raise TypeError("trust file origin")
    return origin


def resign_manifest(directory: Path, signing: LogSigning, tree_size: int | None = None) -> None:
    """Re-sign the manifest over the files as they are now (tree size: the leaves)."""
    size = len(read_leaves(directory)) if tree_size is None else tree_size
    sign_manifest(directory, signing, origin_of(directory), size)


def reseal(directory: Path, signing: LogSigning) -> None:
    """Recompute and re-sign every checkpoint over the current leaves, then the manifest.

    Checkpoints larger than the leaves now are dropped. What an operator with
    the log keys does to make tampered leaves match "its" checkpoints.
    """
    leaves = read_leaves(directory)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    notes = []
    for note in read_checkpoints(directory):
        checkpoint = parse_checkpoint(note_text(note))
        if checkpoint.size > len(leaves):
            continue
        root = root_from_leaf_hashes(hashes[: checkpoint.size])
        notes.append(
            sign_checkpoint(
                Checkpoint(checkpoint.origin, checkpoint.size, root),
                signing.signer_for(checkpoint.size),
            )
        )
    write_checkpoints(directory, notes)
    resign_manifest(directory, signing)


def edit_leaf(directory: Path, index: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Decode leaf ``index``, let ``change`` mutate the document, re-encode it canonically."""
    leaves = read_leaves(directory)
    document = bundle.decode_canonical(leaves[index])
    change(document)
    leaves[index] = bundle.encode_canonical(document)
    write_leaves(directory, leaves)


# --- Attacks on leaves ------------------------------------------------------------------------


def change_amount(directory: Path, signing: LogSigning, index: int, delta: int = 1) -> None:
    """Add ``delta`` to the first posting's amount of leaf ``index`` and reseal."""

    def change(document: dict[str, Any]) -> None:
        posting = document["postings"][0]
        posting["amount"] = str(int(posting["amount"]) + delta)

    edit_leaf(directory, index, change)
    reseal(directory, signing)


def delete_entry(directory: Path, signing: LogSigning, index: int) -> None:
    """Remove leaf ``index`` (hide a transaction) and reseal."""
    leaves = read_leaves(directory)
    del leaves[index]
    write_leaves(directory, leaves)
    reseal(directory, signing)


def swap_entries(directory: Path, signing: LogSigning, index: int) -> None:
    """Exchange leaves ``index`` and ``index + 1`` (reorder history) and reseal."""
    leaves = read_leaves(directory)
    leaves[index], leaves[index + 1] = leaves[index + 1], leaves[index]
    write_leaves(directory, leaves)
    reseal(directory, signing)


def insert_entry(directory: Path, signing: LogSigning, index: int, source: int) -> None:
    """Insert a verbatim copy of leaf ``source`` before leaf ``index`` (a replay) and reseal."""
    leaves = read_leaves(directory)
    leaves.insert(index, leaves[source])
    write_leaves(directory, leaves)
    reseal(directory, signing)


def flip_signature_byte(directory: Path, signing: LogSigning, index: int) -> None:
    """Flip one bit of the participant signature of leaf ``index`` and reseal."""

    def change(document: dict[str, Any]) -> None:
        signature = bytearray(base64.b64decode(document["instruction"]["signature"]))
        signature[10] ^= 0x01
        document["instruction"]["signature"] = base64.b64encode(bytes(signature)).decode("ascii")

    edit_leaf(directory, index, change)
    reseal(directory, signing)


def commit_unbalanced_entry(
    directory: Path,
    signing: LogSigning,
    index: int,
    participant: str,
    participant_key: Ed25519PrivateKey,
    delta: int = 1,
) -> None:
    """Operator fraud with a real signature: leaf ``index`` (a transaction) gets an
    unbalanced first posting, under an instruction the participant did sign for
    exactly those postings. Resealed; the balances file is left as it was.
    """

    def change(document: dict[str, Any]) -> None:
        posting = document["postings"][0]
        posting["amount"] = str(int(posting["amount"]) + delta)
        payload = bundle.decode_canonical(base64.b64decode(document["instruction"]["payload"]))
        payload["postings"][0]["amount_minor"] = posting["amount"]
        raw = bundle.encode_canonical(payload)
        document["instruction"] = {
            "signer": participant,
            "payload": base64.b64encode(raw).decode("ascii"),
            "signature": base64.b64encode(sign_instruction(participant_key, raw)).decode("ascii"),
        }

    edit_leaf(directory, index, change)
    reseal(directory, signing)


def node_as_leaf(directory: Path, signing: LogSigning, index: int) -> None:
    """Replace leaves ``index`` and ``index + 1`` by one leaf holding their two leaf
    hashes: the bytes of their parent node, presented as a leaf (RFC 9162
    section 2.1.1's prefixes exist to stop this). Checkpoints are kept; the
    manifest is re-signed for the shorter log.
    """
    leaves = read_leaves(directory)
    leaves[index : index + 2] = [leaf_hash(leaves[index]) + leaf_hash(leaves[index + 1])]
    write_leaves(directory, leaves)
    resign_manifest(directory, signing)


# --- Attacks on checkpoints ---------------------------------------------------------------------


def fork_checkpoint(
    directory: Path, signing: LogSigning, position: int, *, replace: bool = False
) -> None:
    """Sign a second root for the size of checkpoint ``position`` (a fork).

    The other root is that of an alternative history (the first leaf changed).
    Inserted after the genuine checkpoint, or ``replace``-ing it; manifest re-signed.
    """
    notes = read_checkpoints(directory)
    checkpoint = parse_checkpoint(note_text(notes[position]))
    leaves = read_leaves(directory)
    alternative = [leaf_hash(b"forked history")] + [
        leaf_hash(leaf) for leaf in leaves[1 : checkpoint.size]
    ]
    forked = sign_checkpoint(
        Checkpoint(checkpoint.origin, checkpoint.size, root_from_leaf_hashes(alternative)),
        signing.signer_for(checkpoint.size),
    )
    if replace:
        notes[position] = forked
    else:
        notes.insert(position + 1, forked)
    write_checkpoints(directory, notes)
    resign_manifest(directory, signing)


def resign_checkpoint(
    directory: Path, signing: LogSigning, position: int, signer: NoteSigner
) -> None:
    """Replace the signature of checkpoint ``position`` by one of ``signer`` only
    (an unknown key, or a log key outside its range); manifest re-signed."""
    notes = read_checkpoints(directory)
    notes[position] = sign_note(note_text(notes[position]), [signer])
    write_checkpoints(directory, notes)
    resign_manifest(directory, signing)


def add_cosignature(
    directory: Path, signing: LogSigning, position: int, signer: NoteSigner
) -> None:
    """Append a signature by another key (say a witness) to checkpoint ``position``.

    Harmless: signed-note verifiers ignore signatures by keys they do not know.
    """
    notes = read_checkpoints(directory)
    text = note_text(notes[position])
    extra = sign_note(text, [signer])
    notes[position] = notes[position] + extra[len(text) + 1 :]
    write_checkpoints(directory, notes)
    resign_manifest(directory, signing)


def trust_log_key(
    directory: Path, signing: LogSigning, signer: NoteSigner, first: int, last: int | None
) -> None:
    """List one more log key in the trust file, valid for tree sizes ``first..last``
    (a retired key, say); manifest re-signed.

    Not an attack by itself: it sets up :func:`resign_checkpoint` with a log
    key outside its range on a bundle exported by a ledger that only ever had
    one log key.
    """
    document = bundle.read_json(directory / bundle.TRUST_FILE)
    document["log_keys"].append(
        {
            "vkey": signer.verifier().vkey(),
            "first_tree_size": str(first),
            "last_tree_size": None if last is None else str(last),
        }
    )
    bundle.write_json(directory / bundle.TRUST_FILE, document)
    resign_manifest(directory, signing)


# --- Attacks on the other files ---------------------------------------------------------------


def misstate_balance(
    directory: Path, signing: LogSigning, debited: str, credited: str, amount: int
) -> None:
    """Add ``amount`` to one account's posted debits and another's posted credits.

    The misstatement balances, so only the replay can notice; manifest re-signed.
    """
    document = bundle.read_json(directory / bundle.BALANCES_FILE)
    for item in document["accounts"]:
        if item["account"] == debited:
            item["debits_posted"] = str(int(item["debits_posted"]) + amount)
        if item["account"] == credited:
            item["credits_posted"] = str(int(item["credits_posted"]) + amount)
    bundle.write_json(directory / bundle.BALANCES_FILE, document)
    resign_manifest(directory, signing)


def wrong_manifest_hash(directory: Path, signing: LogSigning, name: str) -> None:
    """Sign a manifest whose hash of ``name`` is wrong (one hex digit changed)."""
    hashes = bundle.manifest_file_hashes(directory)
    digest = hashes[name]
    hashes[name] = ("1" if digest[0] == "0" else "0") + digest[1:]
    size = len(read_leaves(directory))
    text = bundle.manifest_text(origin_of(directory), size, hashes)
    (directory / bundle.MANIFEST_FILE).write_bytes(sign_note(text, [signing.signer_for(size)]))


def edit_file_without_resigning(directory: Path, name: str) -> None:
    """Change a file after the manifest was signed (an outsider's edit): append a byte."""
    with open(directory / name, "ab") as output:
        output.write(b"\x00")
