"""Leaf bytes: the canonical record of one journal entry.

A leaf is the RFC 8785 encoding of a JSON object with ``schema``, ``index``,
``kind`` and ``committed_at`` plus the kind's fields. Amounts are decimal
integer strings (JSON numbers cannot carry 64 bits exactly). A participant's
instruction is embedded as base64 of the exact bytes that were signed, so the
signature can be checked against the leaf alone.

These bytes are written once, hashed into the Merkle log, exported, and
verified; nothing is re-serialized for verification.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.canonical import encode_trusted
from ledger.records import EntryKind, Posting, SignedInstruction

LEAF_SCHEMA_VERSION = 1
_EPOCH = datetime.fromtimestamp(0, UTC)


@functools.lru_cache(maxsize=64)
def format_time(microseconds: int) -> str:
    """RFC 3339 UTC with exactly six fractional digits, e.g. ``2026-11-28T16:00:00.000000Z``."""
    moment = _EPOCH + timedelta(microseconds=microseconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def postings_json(postings: Iterable[Posting]) -> list[dict[str, str]]:
    return [
        {
            "account": posting.account_id,
            "currency": posting.currency,
            "side": posting.side.value,
            "amount": str(posting.amount_minor),
        }
        for posting in postings
    ]


def instruction_json(instruction: SignedInstruction | None) -> dict[str, str] | None:
    if instruction is None:
        return None
    return {
        "signer": instruction.signer,
        "payload": base64.b64encode(instruction.payload).decode("ascii"),
        "signature": base64.b64encode(instruction.signature).decode("ascii"),
    }


def encode_leaf(
    index: int,
    kind: EntryKind,
    committed_at_us: int,
    body: Mapping[str, Any],
    instruction: SignedInstruction | None,
) -> bytes:
    """Canonical leaf bytes for one entry; ``body`` holds the kind's own fields."""
    document: dict[str, Any] = dict(body)
    document.update(
        {
            "schema": LEAF_SCHEMA_VERSION,
            "index": index,
            "kind": kind.value,
            "committed_at": format_time(committed_at_us),
            "instruction": instruction_json(instruction),
        }
    )
    return encode_trusted(document)
