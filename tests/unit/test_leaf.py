"""ledger.leaf: the hot-path encodings equal the general RFC 8785 encoding."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.leaf import (
    LEAF_SCHEMA_VERSION,
    encode_leaf,
    format_time,
    instruction_json,
    postings_json,
    postings_text,
)
from ledger.money import CURRENCIES, INT64_MAX
from ledger.records import EntryKind, Posting, Side, SignedInstruction

# Account ids are printable ASCII without spaces, quotes and backslashes included.
ACCOUNT_IDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
POSTINGS = st.lists(
    st.builds(
        Posting,
        ACCOUNT_IDS,
        st.sampled_from(Side),
        st.integers(1, INT64_MAX),
        st.sampled_from(sorted(CURRENCIES)),
    ),
    max_size=6,
)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
VALUES = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXT


@settings(max_examples=300, print_blob=True)
@given(POSTINGS)
def test_postings_text_is_rfc8785(postings: list[Posting]) -> None:
    assert postings_text(postings).encode("utf-8") == rfc8785.dumps(postings_json(postings))


@settings(max_examples=300, print_blob=True)
@given(
    st.integers(0, 2**40),
    st.sampled_from(EntryKind),
    st.integers(0, 2**52),
    st.dictionaries(st.sampled_from(["id", "code", "reference", "pending"]), VALUES),
    POSTINGS,
    st.none() | st.builds(SignedInstruction, ACCOUNT_IDS, st.binary(), st.binary()),
)
def test_leaf_is_rfc8785_of_its_document(
    index: int,
    kind: EntryKind,
    committed_at_us: int,
    body: dict[str, Any],
    postings: list[Posting],
    instruction: SignedInstruction | None,
) -> None:
    body = {**body, "postings": postings_json(postings)}
    document = {
        **body,
        "schema": LEAF_SCHEMA_VERSION,
        "index": index,
        "kind": kind.value,
        "committed_at": format_time(committed_at_us),
        "instruction": instruction_json(instruction),
    }
    assert encode_leaf(index, kind, committed_at_us, body, instruction) == rfc8785.dumps(document)
