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

from ledger.canonical import encode_trusted_text, join_members
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


def postings_text(postings: Iterable[Posting]) -> str:
    """RFC 8785 text of :func:`postings_json`, written directly.

    Encoding the postings was most of a transaction's encoding cost; the
    member names are written here in their canonical order (a unit test holds
    this against the general encoder) and every value goes through it.
    """
    return (
        "["
        + ",".join(
            [
                f'{{"account":{encode_trusted_text(posting.account_id)},'
                f'"amount":{encode_trusted_text(str(posting.amount_minor))},'
                f'"currency":{encode_trusted_text(posting.currency)},'
                f'"side":{encode_trusted_text(posting.side.value)}}}'
                for posting in postings
            ]
        )
        + "]"
    )


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
    members = {name: encode_trusted_text(value) for name, value in body.items()}
    return encode_leaf_members(index, kind, committed_at_us, members, instruction)


def encode_leaf_members(
    index: int,
    kind: EntryKind,
    committed_at_us: int,
    members: Mapping[str, str],
    instruction: SignedInstruction | None,
) -> bytes:
    """:func:`encode_leaf` for a body whose values are canonical JSON text already."""
    document = dict(members)
    document["schema"] = _SCHEMA_TEXT
    document["index"] = str(index)
    document["kind"] = _KIND_TEXT[kind]
    document["committed_at"] = _time_text(committed_at_us)
    document["instruction"] = (
        "null" if instruction is None else encode_trusted_text(instruction_json(instruction))
    )
    return join_members(document)


# The envelope's values repeat from leaf to leaf: encoded once.
_SCHEMA_TEXT = encode_trusted_text(LEAF_SCHEMA_VERSION)
_KIND_TEXT = {kind: encode_trusted_text(kind.value) for kind in EntryKind}


@functools.lru_cache(maxsize=64)
def _time_text(microseconds: int) -> str:
    return encode_trusted_text(format_time(microseconds))
