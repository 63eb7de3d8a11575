"""Build small, valid export bundles for tests, with real keys and signatures.

Independent of the store and of ``ledger.verify``: leaves come from
``ledger.leaf.encode_leaf`` with the bodies ``ledger.batch`` emits, instructions
are signed with ``ledger.signing.sign_instruction`` in the shape common.proto
prescribes, checkpoints with ``ledger.checkpoint.sign_checkpoint``, and the
closing balances come from a small replay of its own. ``standard_bundle``
holds one leaf of every kind, a participant key rotation and a log key
rotation; the tamper helpers in ``bundle_tamper`` start from it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger import bundle
from ledger.canonical import encode
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.leaf import encode_leaf, format_time, postings_json
from ledger.merkle import leaf_hash, root_from_leaf_hashes
from ledger.note import NoteSigner, sign_note
from ledger.records import EntryKind, Posting, Side, SignedInstruction
from ledger.signing import sign_instruction

ORIGIN = "settlement.example/log"
START_US = 1_795_000_000_000_000  # 2026-11-18, microseconds since the epoch
TIMEOUT_SECONDS = 3600


def private_key(fill: int) -> Ed25519PrivateKey:
    """A deterministic key, so bundles (and their hashes) are reproducible."""
    return Ed25519PrivateKey.from_private_bytes(bytes([fill]) * 32)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class LogSigning:
    """The log's keys and the tree sizes each may sign (inclusive; None: no end).

    Held by the builder and by an attacker who controls the operator's keys.
    """

    keys: tuple[tuple[NoteSigner, int, int | None], ...]

    @classmethod
    def single(cls, signer: NoteSigner) -> LogSigning:
        return cls(((signer, 0, None),))

    def signer_for(self, tree_size: int) -> NoteSigner:
        for signer, first, last in self.keys:
            if first <= tree_size and (last is None or tree_size <= last):
                return signer
        raise ValueError(f"no log key covers tree size {tree_size}")

    def trust_log_keys(self) -> tuple[bundle.LogKey, ...]:
        return tuple(
            bundle.LogKey(signer.verifier(), first, last) for signer, first, last in self.keys
        )


def sign_manifest(directory: Path, signing: LogSigning, origin: str, tree_size: int) -> None:
    """Hash the other files and write a manifest signed by the key valid at ``tree_size``."""
    text = bundle.manifest_text(origin, tree_size, bundle.manifest_file_hashes(directory))
    note = sign_note(text, [signing.signer_for(tree_size)])
    (directory / bundle.MANIFEST_FILE).write_bytes(note)


def side_name(side: Side) -> str:
    return "SIDE_DEBIT" if side is Side.DEBIT else "SIDE_CREDIT"


Leg = tuple[str, Side, int, str]
"""(account, side, amount, currency), in the order ``Posting`` takes them."""


@dataclass
class BundleBuilder:
    """Appends leaves as the ledger would and writes them as a bundle.

    Every method returns the index of the leaf it appended. Participants sign
    with the key the builder registered for them last; the first registration
    is unsigned (the operator's bootstrap), as the ledger allows.
    """

    signing: LogSigning
    origin: str = ORIGIN
    now_us: int = START_US
    leaves: list[bytes] = field(default_factory=list)
    checkpoint_sizes: list[int] = field(default_factory=list)
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    participant_keys: list[bundle.ParticipantKey] = field(default_factory=list)
    totals: dict[str, list[int]] = field(default_factory=dict)
    currencies: dict[str, str] = field(default_factory=dict)
    pending: dict[str, tuple[Posting, ...]] = field(default_factory=dict)
    posted: dict[str, tuple[Posting, ...]] = field(default_factory=dict)

    # -- plumbing ------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.leaves)

    def _append(
        self,
        kind: EntryKind,
        body: dict[str, Any],
        instruction: SignedInstruction | None,
        committed_at_us: int | None = None,
    ) -> int:
        index = self.size
        if committed_at_us is None:
            self.now_us += 1_000
            committed_at_us = self.now_us
        self.leaves.append(encode_leaf(index, kind, committed_at_us, body, instruction))
        return index

    def sign(self, signer: str | None, payload: dict[str, Any]) -> SignedInstruction | None:
        """A participant's instruction over the canonical payload (None: unsigned)."""
        if signer is None:
            return None
        raw = encode(payload)
        return SignedInstruction(signer, raw, sign_instruction(self.keys[signer], raw))

    def _move(self, postings: Sequence[Posting], slot: int, sign: int) -> None:
        for posting in postings:
            total = slot if posting.side is Side.DEBIT else slot + 1
            self.totals[posting.account_id][total] += sign * posting.amount_minor

    # -- entries -----------------------------------------------------------------

    def register_key(self, signer: str, key: Ed25519PrivateKey, *, signed_by: str | None) -> int:
        """A ``signing_key`` leaf: the new key signs from the next index on."""
        encoded = base64.b64encode(public_bytes(key)).decode("ascii")
        payload = {
            "instruction_id": f"{signer}:key:{self.size}",
            "instruction_type": "settlement.v1.RotateSigningKeyInstruction",
            "participant_id": signed_by,
            "public_key": encoded,
        }
        instruction = self.sign(signed_by, payload)
        index = self._append(
            EntryKind.SIGNING_KEY,
            {"signer": signer, "public_key": encoded, "first_index": str(self.size + 1)},
            instruction,
        )
        for position, existing in enumerate(self.participant_keys):
            if existing.signer == signer and existing.last_index is None:
                self.participant_keys[position] = bundle.ParticipantKey(
                    signer, existing.public_key, existing.first_index, index
                )
        self.participant_keys.append(
            bundle.ParticipantKey(signer, public_bytes(key), index + 1, None)
        )
        self.keys[signer] = key
        return index

    def account(self, account_id: str, currency: str, owner: str, *, signer: str | None) -> int:
        account_json: dict[str, Any] = {
            "id": account_id,
            "owner": owner,
            "currency": currency,
            "normal_side": "debit",
            "flags": [],
            "debit_limit": None,
            "metadata": {},
        }
        payload = {
            "instruction_id": f"{signer}:account:{account_id}",
            "participant_id": signer,
            "instruction_type": "settlement.v1.CreateAccountInstruction",
            "account_id": account_id,
            "owner_participant_id": owner,
            "currency": currency,
            "normal_side": "SIDE_DEBIT",
        }
        index = self._append(
            EntryKind.ACCOUNT, {"account": account_json}, self.sign(signer, payload)
        )
        self.totals[account_id] = [0, 0, 0, 0]
        self.currencies[account_id] = currency
        return index

    def transaction(
        self,
        transaction_id: str,
        legs: Sequence[Leg],
        *,
        signer: str | None,
        pending: bool = False,
        instruction: SignedInstruction | None = None,
        committed_at_us: int | None = None,
    ) -> int:
        """A ``transaction`` leaf; its instruction is a TransactionInstruction unless given."""
        postings = tuple(Posting(*leg) for leg in legs)
        legs_json = postings_json(postings)
        if instruction is None:
            payload: dict[str, Any] = {
                "instruction_id": transaction_id,
                "participant_id": signer,
                "instruction_type": "settlement.v1.TransactionInstruction",
                "postings": [
                    {
                        "account_id": posting.account_id,
                        "amount_minor": str(posting.amount_minor),
                        "currency": posting.currency,
                        "side": side_name(posting.side),
                    }
                    for posting in postings
                ],
            }
            if pending:
                payload["pending"] = True
                payload["timeout_seconds"] = TIMEOUT_SECONDS
            instruction = self.sign(signer, payload)
        committed = self.now_us + 1_000 if committed_at_us is None else committed_at_us
        body = {
            "id": transaction_id,
            "code": "",
            "reference": "",
            "metadata": {},
            "pending": pending,
            "timeout_at": format_time(committed + TIMEOUT_SECONDS * 1_000_000) if pending else None,
            "postings": legs_json,
        }
        index = self._append(EntryKind.TRANSACTION, body, instruction, committed_at_us)
        if pending:
            self.pending[transaction_id] = postings
            self._move(postings, 2, 1)
        else:
            self.posted[transaction_id] = postings
            self._move(postings, 0, 1)
        return index

    def post_pending(
        self, post_id: str, pending_id: str, *, signer: str | None, amount: int | None = None
    ) -> int:
        releases = self.pending.pop(pending_id)
        posted = releases
        if amount is not None:
            posted = tuple(Posting(p.account_id, p.side, amount, p.currency) for p in releases)
        payload: dict[str, Any] = {
            "instruction_id": post_id,
            "participant_id": signer,
            "instruction_type": "settlement.v1.PostPendingInstruction",
            "pending_transaction_id": pending_id,
        }
        if amount is not None:
            payload["amount_minor"] = str(amount)
        body = {
            "id": post_id,
            "pending_id": pending_id,
            "code": "",
            "reference": "",
            "metadata": {},
            "postings": postings_json(posted),
            "releases": postings_json(releases),
        }
        index = self._append(EntryKind.POST_PENDING, body, self.sign(signer, payload))
        self._move(posted, 0, 1)
        self._move(releases, 2, -1)
        self.posted[post_id] = posted
        return index

    def void_pending(self, void_id: str, pending_id: str, *, signer: str | None) -> int:
        releases = self.pending.pop(pending_id)
        payload = {
            "instruction_id": void_id,
            "participant_id": signer,
            "instruction_type": "settlement.v1.VoidPendingInstruction",
            "pending_transaction_id": pending_id,
        }
        body = {
            "id": void_id,
            "pending_id": pending_id,
            "code": "",
            "reference": "",
            "metadata": {},
            "releases": postings_json(releases),
        }
        index = self._append(EntryKind.VOID_PENDING, body, self.sign(signer, payload))
        self._move(releases, 2, -1)
        return index

    def expire_pending(self, pending_id: str) -> int:
        releases = self.pending.pop(pending_id)
        body = {"pending_id": pending_id, "releases": postings_json(releases)}
        index = self._append(EntryKind.EXPIRE_PENDING, body, None)
        self._move(releases, 2, -1)
        return index

    def reversal(self, reversal_id: str, original_id: str, *, signer: str | None) -> int:
        mirrored = tuple(
            Posting(
                p.account_id,
                Side.CREDIT if p.side is Side.DEBIT else Side.DEBIT,
                p.amount_minor,
                p.currency,
            )
            for p in self.posted[original_id]
        )
        payload = {
            "instruction_id": reversal_id,
            "participant_id": signer,
            "instruction_type": "settlement.v1.ReverseTransactionInstruction",
            "original_transaction_id": original_id,
        }
        body = {
            "id": reversal_id,
            "reverses_id": original_id,
            "code": "",
            "reference": "",
            "metadata": {},
            "postings": postings_json(mirrored),
        }
        index = self._append(EntryKind.REVERSAL, body, self.sign(signer, payload))
        self._move(mirrored, 0, 1)
        self.posted[reversal_id] = mirrored
        return index

    def account_status(self, account_id: str, status: str, *, signer: str | None) -> int:
        payload = {"instruction_id": f"status:{self.size}", "participant_id": signer}
        body = {"account_id": account_id, "status": status}
        return self._append(EntryKind.ACCOUNT_STATUS, body, self.sign(signer, payload))

    def debit_limit(self, account_id: str, limit: int | None, *, signer: str | None) -> int:
        payload = {"instruction_id": f"limit:{self.size}", "participant_id": signer}
        body = {"account_id": account_id, "debit_limit": None if limit is None else str(limit)}
        return self._append(EntryKind.DEBIT_LIMIT, body, self.sign(signer, payload))

    def event(self, event_id: str, event_type: str, *, signer: str | None) -> int:
        payload = {"instruction_id": event_id, "participant_id": signer}
        body = {"id": event_id, "event_type": event_type, "body": {"status": "accepted"}}
        return self._append(EntryKind.EVENT, body, self.sign(signer, payload))

    def checkpoint(self) -> None:
        """Issue a checkpoint at the current size."""
        self.checkpoint_sizes.append(self.size)

    # -- output ---------------------------------------------------------------------

    def checkpoint_note(self, size: int, signer: NoteSigner | None = None) -> bytes:
        """A signed checkpoint of the first ``size`` leaves (by the key valid at that size)."""
        root = root_from_leaf_hashes([leaf_hash(leaf) for leaf in self.leaves[:size]])
        return sign_checkpoint(
            Checkpoint(self.origin, size, root), signer or self.signing.signer_for(size)
        )

    def balances(self) -> bundle.Balances:
        return bundle.Balances(
            tree_size=self.size,
            accounts=tuple(
                bundle.AccountBalance(account, self.currencies[account], *self.totals[account])
                for account in sorted(self.totals)
            ),
        )

    def trust(self) -> bundle.Trust:
        return bundle.Trust(
            origin=self.origin,
            log_keys=self.signing.trust_log_keys(),
            participant_keys=tuple(self.participant_keys),
        )

    def write(self, directory: Path) -> Path:
        """Write the five files of the bundle into ``directory`` (created if needed)."""
        directory.mkdir(parents=True, exist_ok=True)
        bundle.write_framed(directory / bundle.LEAVES_FILE, self.leaves)
        bundle.write_framed(
            directory / bundle.CHECKPOINTS_FILE,
            (self.checkpoint_note(size) for size in self.checkpoint_sizes),
        )
        bundle.write_json(directory / bundle.TRUST_FILE, bundle.trust_document(self.trust()))
        bundle.write_json(
            directory / bundle.BALANCES_FILE, bundle.balances_document(self.balances())
        )
        sign_manifest(directory, self.signing, self.origin, self.size)
        return directory


# --- The standard bundle ----------------------------------------------------------------

LOG_KEY_OLD = NoteSigner(ORIGIN, private_key(1))
"""Signs tree sizes 0..13 (its range ends at the rotation)."""
LOG_KEY_NEW = NoteSigner(ORIGIN, private_key(2))
"""Signs tree sizes from 14 on."""
LOG_ROTATION_SIZE = 14
STANDARD_SIGNING = LogSigning(
    ((LOG_KEY_OLD, 0, LOG_ROTATION_SIZE - 1), (LOG_KEY_NEW, LOG_ROTATION_SIZE, None))
)
UNKNOWN_LOG_KEY = NoteSigner(ORIGIN, private_key(9))
"""Named like the log but in no trust file."""
WITNESS_KEY = NoteSigner("witness.example/w1", private_key(8))

HUB = "HUBOPS"
BANK_A = "BANKA"
BANK_B = "BANKB"
HUB_KEY = private_key(11)
BANK_A_KEY = private_key(12)
BANK_A_KEY_ROTATED = private_key(13)
BANK_B_KEY = private_key(14)


@dataclass(frozen=True)
class StandardIndexes:
    """Where the standard bundle keeps each kind of leaf."""

    transfer: int = 7  # T1: USD A1 -> B1, 100 (reversed at 15)
    cross_currency: int = 8  # T2: USD and PKR legs
    pending_posted: int = 9  # P1, posted in part at 10
    post_pending: int = 10
    pending_voided: int = 11  # P2, voided at 12
    void_pending: int = 12
    pending_expired: int = 13  # P3, expired at 14
    expire_pending: int = 14
    reversal: int = 15
    account_status: int = 16
    debit_limit: int = 17
    event: int = 18
    rotation: int = 19  # BANKA's second key, from 20
    after_rotation: int = 20
    size: int = 21


STANDARD = StandardIndexes()
STANDARD_CHECKPOINT_SIZES = (7, 13, 21)


def standard_builder() -> BundleBuilder:
    """21 leaves of every kind; checkpoints at 7, 13 (old log key) and 21 (new log key)."""
    builder = BundleBuilder(STANDARD_SIGNING)
    builder.register_key(HUB, HUB_KEY, signed_by=None)  # 0: bootstrap, unsigned
    builder.register_key(BANK_A, BANK_A_KEY, signed_by=HUB)  # 1
    builder.register_key(BANK_B, BANK_B_KEY, signed_by=HUB)  # 2
    builder.account("A1", "USD", BANK_A, signer=HUB)  # 3
    builder.account("B1", "USD", BANK_B, signer=HUB)  # 4
    builder.account("A2", "PKR", BANK_A, signer=HUB)  # 5
    builder.account("B2", "PKR", BANK_B, signer=HUB)  # 6
    builder.checkpoint()  # size 7
    builder.transaction(
        "T1", [("A1", Side.DEBIT, 100, "USD"), ("B1", Side.CREDIT, 100, "USD")], signer=BANK_A
    )
    builder.transaction(
        "T2",
        [
            ("A1", Side.DEBIT, 50, "USD"),
            ("B1", Side.CREDIT, 50, "USD"),
            ("B2", Side.DEBIT, 14_000, "PKR"),
            ("A2", Side.CREDIT, 14_000, "PKR"),
        ],
        signer=BANK_A,
    )
    builder.transaction(
        "P1",
        [("A1", Side.DEBIT, 30, "USD"), ("B1", Side.CREDIT, 30, "USD")],
        signer=BANK_A,
        pending=True,
    )
    builder.post_pending("POST1", "P1", signer=BANK_A, amount=20)
    builder.transaction(
        "P2",
        [("B1", Side.DEBIT, 40, "USD"), ("A1", Side.CREDIT, 40, "USD")],
        signer=BANK_B,
        pending=True,
    )
    builder.void_pending("VOID1", "P2", signer=BANK_B)
    builder.checkpoint()  # size 13
    builder.transaction(
        "P3",
        [("A1", Side.DEBIT, 5, "USD"), ("B1", Side.CREDIT, 5, "USD")],
        signer=BANK_A,
        pending=True,
    )
    builder.expire_pending("P3")
    builder.reversal("R1", "T1", signer=BANK_A)
    builder.account_status("B2", "frozen", signer=HUB)
    builder.debit_limit("A1", 1_000, signer=HUB)
    builder.event("EV1", "payment_accepted", signer=BANK_B)
    builder.register_key(BANK_A, BANK_A_KEY_ROTATED, signed_by=BANK_A)  # 19
    builder.transaction(
        "T3", [("A1", Side.DEBIT, 7, "USD"), ("B1", Side.CREDIT, 7, "USD")], signer=BANK_A
    )
    builder.checkpoint()  # size 21
    if (
        builder.size != STANDARD.size
        or tuple(builder.checkpoint_sizes) != STANDARD_CHECKPOINT_SIZES
    ):
        raise AssertionError("the standard bundle's layout changed; update StandardIndexes")
    return builder
