"""Sanctions screening of party names against OFAC's SDN list.

The list is read from OFAC's published legacy CSV files (``sdn.csv``: ent_num,
SDN_Name, SDN_Type, Program, Title, Call_Sign, Vess_type, Tonnage, GRT,
Vess_flag, Vess_owner, Remarks; ``alt.csv``: ent_num, alt_num, alt_type,
alt_name, alt_remarks; ``-0-`` means empty). Aliases (aka, fka, nka) are names
of their entity like its primary name.

**Normalisation** (:func:`normalize_name`), applied to listed names and to the
screened name alike: Unicode NFKD with diacritics stripped and a few letters
that do not decompose mapped (Ø to o, Ł to l, ...), case folded; apostrophes
removed (QUR'AN = QURAN, 'ALI = ALI); any other punctuation becomes a space;
runs of single letters joined (S.A. = SA, J.P. = JP); legal forms (LTD,
LIMITED, LLC, INC, CO, CORP, PVT, PRIVATE, SA, GMBH, ... and S DE RL, SA DE CV)
and the words THE, OF, AND dropped, unless nothing would be left; OFAC's
"LAST, First" written "first last" for individuals.

**Score** of a screened name against a listed name, both as token lists:
``min(whole, coverage)``, where ``whole`` is the Jaro-Winkler similarity
(rapidfuzz, prefix weight 0.1) of the names as written, or of their tokens
sorted, whichever is higher (so word order does not matter), and ``coverage``
is the token-level similarity: each token of one name is paired with its most
similar token in the other (Jaro-Winkler), averaged weighted by token length,
in both directions, taking the lower. Whole-string Jaro-Winkler alone rewards
long shared words: "HABIB BANK" scores 0.92 against the listed "HUALI BANK",
"KARACHI ELECTRIC" 0.93 against "KALA ELECTRIC COMPANY"; their ``coverage``
(0.867 and 0.898) holds them under the threshold, while a transliterated name
keeps its score ("MUHAMMAD TURKI HABIB" against "HABIB, Mohammed Turki":
whole 0.927, coverage 0.933).

**Threshold**: :data:`DEFAULT_THRESHOLD` = 0.90. Measured on the vendored list
(tests/unit/test_screening.py): spelling, transliteration and word-order
variants of listed names (Mohammed/Muhammad, Tayyiba/Taiba, Tehrik/Tehreek,
Mellat/Melat) score 0.91 or more; the names of ordinary US and Pakistani
banks and companies in this corridor score under 0.90 against every listed
name, except a few that are a letter or two from a listed name ("SINDH BANK"
0.92 against "SINA BANK", "SONERI BANK" 0.93 against "ONER-BANK"), which a
reviewer clears. A hit is a reason for a person to review the payment, not a
verdict: the threshold leans to recall, and a common personal name (e.g.
"Ahmed Khan") is expected to hit and be cleared with the date of birth and
address that the SDN entry's remarks give.

**Speed**: comparing a name with all ~16,500 listed names costs ~6 ms; the
prefilter brings it under 0.5 ms without changing any result, by skipping the
names that cannot reach the threshold. Jaro similarity is at most
``(c/|a| + c/|b| + 1) / 3``, where ``c`` counts the characters two strings
share (as multisets); Winkler's bonus adds at most ``4 * 0.1 * (1 - J)``, and
nothing when the first characters differ. So a listed name is compared only if
it shares enough characters for its length: many when its first character
differs from the screened name's, fewer when it is the same. One index of every
listed name serves the first bound, one per first character the second; each
keeps, per (character, occurrence) pair, a bitset of the names holding it, and
a bit-sliced counter over those bitsets finds the candidates (~15 per name).
``screen(..., prefilter=False)`` compares every listed name; the tests check
that both give the same results.
"""

from __future__ import annotations

import bisect
import csv
import functools
import hashlib
import importlib.resources
import io
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from settlement.compliance.parties import NameMustBeValid, validate_name
from settlement.errors import InvalidArgument, SettlementError

DEFAULT_THRESHOLD = 0.90
"""Score from which a listed name is a hit; see the module docstring for why."""

PREFIX_WEIGHT = 0.1
"""Winkler's prefix scale (rapidfuzz's default); the prefilter's bound depends on it."""

PREFIX_LENGTH_MAX = 4
"""Winkler's bonus counts at most 4 common leading characters (rapidfuzz does the same)."""

LIST_FILE_BYTES_MAX = 64 * 1024 * 1024
"""OFAC's sdn.csv is ~1.5 MB; a file 40 times larger is not the list."""

LIST_ROWS_MAX = 250_000
"""The SDN list has ~7,400 entries and ~9,700 aliases; room for 25 times as many."""

LISTED_NAME_LENGTH_MAX = 350
"""The longest listed name is 147 characters (an alias); 350 refuses a garbled row."""

FINDINGS_MAX = 20
"""A malformed file reports at most this many findings: enough to see the pattern."""

SDN_FIELD_COUNT = 12
ALT_FIELD_COUNT = 5
EMPTY_FIELD = "-0-"
"""OFAC's marker of an empty field (written ``-0- ``, with a trailing space)."""

END_OF_FILE_MARK = "\x1a"
"""OFAC has ended its CSV files with a DOS end-of-file byte; it is not a row."""

SDN_TYPES: Mapping[str | None, str] = MappingProxyType(
    {None: "entity", "individual": "individual", "vessel": "vessel", "aircraft": "aircraft"}
)
"""SDN_Type as written in sdn.csv -> the type a match reports (empty means an entity)."""

ALT_TYPES = frozenset({"aka", "fka", "nka"})
"""Also known as, formerly known as, now known as."""

LEGAL_FORMS = frozenset(
    {
        "ltd", "limited", "llc", "llp", "lp", "inc", "incorporated", "co", "corp", "as",
        "corporation", "company", "plc", "pvt", "private", "pte", "pty", "sa", "sas",
        "sarl", "srl", "spa", "ltda", "gmbh", "ag", "kg", "bv", "nv", "cv", "rl",
        "jsc", "ojsc", "cjsc", "pjsc", "ooo", "oao", "zao", "fze", "fzco", "fzc",
    }
)  # fmt: skip
"""Legal-form words: they say what kind of company, not which one."""

LEGAL_FORM_PHRASES: tuple[tuple[str, ...], ...] = (
    ("s", "de", "rl", "de", "cv"),
    ("sa", "de", "cv"),
    ("s", "de", "rl"),
    ("de", "cv"),
    ("de", "rl"),
)
"""Legal forms of several words (Mexican and Latin American companies), longest first."""

STOP_WORDS = frozenset({"the", "of", "and"})

_NOT_DECOMPOSED = str.maketrans(
    {"ø": "o", "đ": "d", "ł": "l", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}
)
"""Latin letters that NFKD leaves whole (after case folding)."""

_APOSTROPHES = re.compile("['\u2018\u2019\u02bc\u02bb`]")
_SEPARATORS = re.compile(r"[\W_]+")


class SanctionsListMalformed(SettlementError):
    """A sanctions list file is not in OFAC's CSV format: the list is refused whole.

    ``findings`` lists each problem with its file and line (at most
    :data:`FINDINGS_MAX`). Screening against part of a list would let
    listed parties through, so nothing is loaded.
    """

    code: ClassVar[str] = "sanctions_list_must_be_well_formed"
    kind: ClassVar[str] = "internal"

    def __init__(self, findings: Sequence[str]) -> None:
        self.findings = tuple(findings)
        super().__init__(
            f"sanctions list refused, {len(self.findings)} finding(s): " + "; ".join(self.findings)
        )


class ThresholdMustBeInRange(InvalidArgument):
    """A screening threshold is a number in (0, 1]."""

    code = "threshold_must_be_in_range"


@dataclass(frozen=True)
class Alias:
    """A row of alt.csv: another name of an entity."""

    alt_num: int
    alt_type: str
    """``aka``, ``fka`` or ``nka``."""
    name: str


@dataclass(frozen=True)
class ListedEntity:
    """A row of sdn.csv with its aliases."""

    ent_num: int
    name: str
    sdn_type: str
    """``individual``, ``entity``, ``vessel`` or ``aircraft``."""
    programs: tuple[str, ...]
    """Sanctions programs, e.g. ``("FTO", "SDGT")``."""
    remarks: str | None
    aliases: tuple[Alias, ...]


@dataclass(frozen=True)
class Match:
    """A listed entity one of whose names reached the threshold."""

    ent_num: int
    listed_name: str
    """The entity's primary name (SDN_Name)."""
    matched_name: str
    """The name that matched: the primary name or an alias."""
    score: float
    program: str
    """The entity's programs, joined by "; "."""
    sdn_type: str
    alias_type: str | None
    """``aka``, ``fka`` or ``nka`` when an alias matched; None for the primary name."""


@dataclass(frozen=True)
class ScreeningResult:
    """The outcome of screening one name, with what an auditor needs to redo it."""

    name: str
    normalized_name: str
    hit: bool
    best_score: float
    """The highest score among ``matches``; 0.0 when nothing reached the threshold
    (names that cannot reach it are not scored)."""
    matches: tuple[Match, ...]
    """One per entity, highest score first, then by ent_num."""
    threshold: float
    list_digest: str
    """:attr:`SanctionsList.digest` of the list screened against."""


def normalize_name(name: str, *, individual: bool = False) -> tuple[str, ...]:
    """The tokens a name is compared by (see the module docstring).

    ``individual`` reads OFAC's "LAST, First" order (``"DELOS REYES, Feliciano,
    Jr."`` -> ``feliciano delos reyes jr``); it is not applied to a screened
    name, whose word order the score ignores anyway.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(character for character in text if not unicodedata.combining(character))
    text = text.casefold().translate(_NOT_DECOMPOSED)
    if individual and "," in text:
        last, _, rest = text.partition(",")
        given, _, suffix = rest.partition(",")
        text = f"{given} {last} {suffix}"
    text = _APOSTROPHES.sub("", text)
    tokens = _join_initials(_SEPARATORS.sub(" ", text).split())
    significant = _drop_phrases(tokens)
    significant = [token for token in significant if token not in LEGAL_FORMS]
    significant = [token for token in significant if token not in STOP_WORDS]
    return tuple(significant or tokens)


def _join_initials(tokens: list[str]) -> list[str]:
    joined: list[str] = []
    previous_single = False
    for token in tokens:
        single = len(token) == 1
        if single and previous_single:
            joined[-1] += token
        else:
            joined.append(token)
        previous_single = single
    return joined


def _drop_phrases(tokens: list[str]) -> list[str]:
    kept: list[str] = []
    index = 0
    while index < len(tokens):
        for phrase in LEGAL_FORM_PHRASES:
            if tuple(tokens[index : index + len(phrase)]) == phrase:
                index += len(phrase)
                break
        else:
            kept.append(tokens[index])
            index += 1
    return kept


def _similarity(left: str, right: str) -> float:
    return float(JaroWinkler.normalized_similarity(left, right, prefix_weight=PREFIX_WEIGHT))


def token_coverage(left: Sequence[str], right: Sequence[str]) -> float:
    """Token-level similarity of two token lists, in [0, 1] (see the module docstring)."""
    table = [[_similarity(token, other) for other in right] for token in left]
    left_weight = sum(len(token) for token in left)
    right_weight = sum(len(token) for token in right)
    left_to_right = sum(len(token) * max(row) for token, row in zip(left, table, strict=True))
    right_to_left = sum(
        len(token) * max(row[column] for row in table) for column, token in enumerate(right)
    )
    return min(left_to_right / left_weight, right_to_left / right_weight)


def _check_threshold(threshold: float) -> float:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 < threshold <= 1
    ):
        raise ThresholdMustBeInRange(f"threshold: expected a number in (0, 1], got {threshold!r}")
    return float(threshold)


def _elements(text: str) -> list[tuple[str, int]]:
    """The multiset of characters as a set: ("a", 1), ("a", 2), ... for each "a"."""
    seen: dict[str, int] = {}
    elements = []
    for character in text:
        seen[character] = seen.get(character, 0) + 1
        elements.append((character, seen[character]))
    return elements


class _CharacterIndex:
    """Names ordered by length, with a bitset per (character, occurrence) element.

    Bit ``i`` of every bitset is the ``i``-th name in length order, so the
    names of lengths L1..L2 are one contiguous range of bits.
    """

    def __init__(self, keys: Sequence[tuple[str, int]]) -> None:
        ordered = sorted(keys, key=lambda key: len(key[0]))
        self.ids = [name_id for _, name_id in ordered]
        self.start: dict[int, int] = {}
        self.end: dict[int, int] = {}
        positions: dict[tuple[str, int], list[int]] = {}
        for position, (text, _) in enumerate(ordered):
            self.start.setdefault(len(text), position)
            self.end[len(text)] = position + 1
            for element in _elements(text):
                positions.setdefault(element, []).append(position)
        self.lengths = sorted(self.start)
        byte_count = (len(ordered) + 7) // 8
        self.postings: dict[tuple[str, int], int] = {}
        for element, held_by in positions.items():
            bits = bytearray(byte_count)
            for position in held_by:
                bits[position >> 3] |= 1 << (position & 7)
            self.postings[element] = int.from_bytes(bits, "little")

    def candidates(self, text: str, elements: Sequence[tuple[str, int]], share: float) -> list[int]:
        """Ids of the names sharing at least ``share * |a| * |b| / (|a| + |b|)`` characters.

        ``elements`` are those of ``text`` (:func:`_elements`); ``|a|`` is the
        length of ``text``, ``|b|`` of the name; characters are counted as
        multisets. The needed count can be met only by lengths ``|b|`` in
        ``[(share - 1) |a|, |a| / (share - 1)]``.
        """
        length = len(text)
        lowest = bisect.bisect_left(self.lengths, (share - 1) * length - 1)
        highest = (
            len(self.lengths)
            if share <= 1
            else bisect.bisect_right(self.lengths, length / (share - 1) + 1)
        )
        # Bands of consecutive lengths allowing the same number of misses (characters of
        # the text the name lacks): (first position, end position, misses allowed).
        bands: list[tuple[int, int, int]] = []
        for other_length in self.lengths[lowest:highest]:
            needed = math.ceil(share * length * other_length / (length + other_length) - 1e-9)
            if needed > min(length, other_length):
                continue
            allowed = length - max(needed, 0)
            start = self.start[other_length]
            end = self.end[other_length]
            if bands and bands[-1][2] == allowed and bands[-1][1] == start:
                bands[-1] = (bands[-1][0], end, allowed)
            else:
                bands.append((start, end, allowed))
        if not bands:
            return []
        low = bands[0][0]
        high = bands[-1][1]
        width_mask = (1 << (high - low)) - 1
        misses_max = max(allowed for _, _, allowed in bands)
        # Bit-sliced counter of misses per name, saturating past misses_max.
        plane_count = (misses_max + 1).bit_length()
        planes = [0] * plane_count
        overflow = 0
        for element in elements:
            carry = width_mask ^ ((self.postings.get(element, 0) >> low) & width_mask)
            for plane in range(plane_count):
                next_carry = planes[plane] & carry
                planes[plane] ^= carry
                carry = next_carry
                if not carry:
                    break
            overflow |= carry
        at_most: dict[int, int] = {}
        selected = 0
        for start, end, allowed in bands:
            if allowed not in at_most:
                greater = 0
                equal = width_mask
                for plane in range(plane_count - 1, -1, -1):
                    if allowed >> plane & 1:
                        equal &= planes[plane]
                    else:
                        greater |= equal & planes[plane]
                        equal &= ~planes[plane]
                at_most[allowed] = ~(greater | overflow)
            selected |= at_most[allowed] & (((1 << (end - low)) - 1) ^ ((1 << (start - low)) - 1))
        bits = bin(selected & width_mask)[:1:-1]
        found: list[int] = []
        position = bits.find("1")
        while position >= 0:
            found.append(self.ids[position + low])
            position = bits.find("1", position + 1)
        return found


class _NameIndex:
    """The listed names, and the character indexes of the prefilter.

    Jaro-Winkler ``>= t`` needs Jaro ``>= t`` when the first characters
    differ, and Jaro ``>= (t - 4p) / (1 - 4p)`` when they are equal (Winkler's
    bonus is at most ``4p (1 - J)``). Jaro ``J <= (c/|a| + c/|b| + 1) / 3``,
    so the characters in common ``c`` must be at least
    ``(3J - 1) |a| |b| / (|a| + |b|)``. One index holds every name, for the
    first bound; one per first character, of the name as written and of its
    sorted tokens, for the weaker second bound, on far fewer names.
    """

    def __init__(self, names: Sequence[tuple[tuple[str, ...], int, Alias | None]]) -> None:
        self.tokens = [tokens for tokens, _, _ in names]
        self.owner = [owner for _, owner, _ in names]
        self.alias = [alias for _, _, alias in names]
        self.plain = [" ".join(tokens) for tokens in self.tokens]
        self.sorted = [" ".join(sorted(tokens)) for tokens in self.tokens]
        self.every = _CharacterIndex([(plain, name_id) for name_id, plain in enumerate(self.plain)])
        self.by_plain_first = self._by_first(self.plain)
        self.by_sorted_first = self._by_first(self.sorted)

    def _by_first(self, keys: list[str]) -> dict[str, _CharacterIndex]:
        groups: dict[str, list[tuple[str, int]]] = {}
        for name_id, key in enumerate(keys):
            # The multiset of characters is the plain form's, whatever the order.
            groups.setdefault(key[0], []).append((self.plain[name_id], name_id))
        return {first: _CharacterIndex(group) for first, group in groups.items()}

    def candidates(self, plain: str, sorted_key: str, threshold: float) -> list[int]:
        """Ids of the names whose Jaro-Winkler score with the query may reach ``threshold``."""
        bonus_max = PREFIX_LENGTH_MAX * PREFIX_WEIGHT
        share_other_first = 3 * threshold - 1
        share_same_first = 3 * (threshold - bonus_max) / (1 - bonus_max) - 1
        elements = _elements(plain)
        found = set(self.every.candidates(plain, elements, share_other_first))
        for index in (self.by_plain_first.get(plain[0]), self.by_sorted_first.get(sorted_key[0])):
            if index is not None:
                found.update(index.candidates(plain, elements, share_same_first))
        return sorted(found)


class SanctionsList:
    """A loaded SDN list, ready to screen names. Immutable; safe to share between threads."""

    def __init__(
        self,
        entities: Mapping[int, ListedEntity],
        *,
        digest: str,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.entities: Mapping[int, ListedEntity] = MappingProxyType(dict(entities))
        self.digest = digest
        self.threshold = _check_threshold(threshold)
        names: list[tuple[tuple[str, ...], int, Alias | None]] = []
        for entity in self.entities.values():
            individual = entity.sdn_type == "individual"
            seen: set[tuple[str, ...]] = set()
            for name, alias in [(entity.name, None), *((a.name, a) for a in entity.aliases)]:
                tokens = normalize_name(name, individual=individual)
                # A name equal to one already indexed for the entity adds nothing.
                if tokens and tokens not in seen:
                    seen.add(tokens)
                    names.append((tokens, entity.ent_num, alias))
        self._index = _NameIndex(names)

    def __len__(self) -> int:
        return len(self.entities)

    @property
    def name_count(self) -> int:
        """Distinct normalised names indexed (primary names and aliases)."""
        return len(self._index.plain)

    @classmethod
    def load(
        cls,
        sdn_path: str | PathLike[str] | None = None,
        alt_path: str | PathLike[str] | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> SanctionsList:
        """Load OFAC's sdn.csv and alt.csv: the vendored copy, or the files given.

        Raises :class:`SanctionsListMalformed` when either file is not in
        OFAC's format, and :class:`OSError` when one cannot be read.
        """
        if (sdn_path is None) != (alt_path is None):
            raise ValueError("give both sdn_path and alt_path, or neither for the vendored copy")
        if sdn_path is None or alt_path is None:
            data = importlib.resources.files("settlement.compliance") / "data"
            return cls.parse(
                (data / "sdn.csv").read_bytes(),
                (data / "alt.csv").read_bytes(),
                threshold=threshold,
            )
        return cls.parse(
            _read_limited(Path(sdn_path)),
            _read_limited(Path(alt_path)),
            threshold=threshold,
            sdn_source=str(sdn_path),
            alt_source=str(alt_path),
        )

    @classmethod
    def parse(
        cls,
        sdn_data: bytes,
        alt_data: bytes,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        sdn_source: str = "sdn.csv",
        alt_source: str = "alt.csv",
    ) -> SanctionsList:
        """Build a list from the bytes of sdn.csv and alt.csv (see :meth:`load`)."""
        findings = _Findings()
        entities = _parse_sdn(sdn_data, sdn_source, findings)
        # An alias of an entry refused above would be reported again as unknown: noise.
        known = None if findings.items else entities
        aliases = _parse_alt(alt_data, alt_source, known, sdn_source, findings)
        if not entities and not findings.items:
            findings.add(f"{sdn_source}: no entries")
        if findings.items:
            raise SanctionsListMalformed(findings.items)
        complete = {
            ent_num: ListedEntity(
                ent_num=entity.ent_num,
                name=entity.name,
                sdn_type=entity.sdn_type,
                programs=entity.programs,
                remarks=entity.remarks,
                aliases=tuple(aliases.get(ent_num, ())),
            )
            for ent_num, entity in entities.items()
        }
        sdn_digest = hashlib.sha256(sdn_data).digest()
        alt_digest = hashlib.sha256(alt_data).digest()
        digest = "sha256:" + hashlib.sha256(sdn_digest + alt_digest).hexdigest()
        return cls(complete, digest=digest, threshold=threshold)

    def screen(
        self,
        name: str,
        *,
        threshold: float | None = None,
        field: str = "name",
        prefilter: bool = True,
    ) -> ScreeningResult:
        """Screen one name; ``threshold`` overrides the list's for this call.

        ``prefilter=False`` scores every listed name (slower, same result).
        Raises :class:`~settlement.compliance.parties.NameMustBeValid` for a
        name that is empty, longer than 140 characters or without a letter or
        digit, and :class:`ThresholdMustBeInRange`.
        """
        cutoff = self.threshold if threshold is None else _check_threshold(threshold)
        validate_name(name, field=field)
        tokens = normalize_name(name)
        if not tokens:
            raise NameMustBeValid(field, "a name with a letter or digit", name)
        index = self._index
        plain = " ".join(tokens)
        sorted_key = " ".join(sorted(tokens))
        if prefilter:
            positions = index.candidates(plain, sorted_key, cutoff)
        else:
            positions = list(range(len(index.plain)))
        whole: dict[int, float] = {}
        for query, keys in ((plain, index.plain), (sorted_key, index.sorted)):
            scored = process.extract(
                query,
                [keys[position] for position in positions],
                scorer=JaroWinkler.normalized_similarity,
                scorer_kwargs={"prefix_weight": PREFIX_WEIGHT},
                score_cutoff=cutoff,
                limit=None,
            )
            for _, score, offset in scored:
                position = positions[offset]
                whole[position] = max(whole.get(position, 0.0), float(score))
        best: dict[int, tuple[float, int, Alias | None]] = {}
        for position, whole_score in whole.items():
            score = min(whole_score, token_coverage(tokens, index.tokens[position]))
            if score < cutoff:
                continue
            owner = index.owner[position]
            alias = index.alias[position]
            # Per entity, the best score; on a tie the primary name, then the lowest alt_num.
            rank = -1 if alias is None else alias.alt_num
            current = best.get(owner)
            if current is None or (score, -rank) > (current[0], -current[1]):
                best[owner] = (score, rank, alias)
        matches = []
        for owner, (score, _, alias) in best.items():
            entity = self.entities[owner]
            matches.append(
                Match(
                    ent_num=owner,
                    listed_name=entity.name,
                    matched_name=entity.name if alias is None else alias.name,
                    score=score,
                    program="; ".join(entity.programs),
                    sdn_type=entity.sdn_type,
                    alias_type=None if alias is None else alias.alt_type,
                )
            )
        matches.sort(key=lambda match: (-match.score, match.ent_num))
        return ScreeningResult(
            name=name,
            normalized_name=plain,
            hit=bool(matches),
            best_score=matches[0].score if matches else 0.0,
            matches=tuple(matches),
            threshold=cutoff,
            list_digest=self.digest,
        )

    def screen_many(
        self, names: Iterable[str], *, threshold: float | None = None
    ) -> list[ScreeningResult]:
        """Screen each name, in order (for rescreening every party when the list changes)."""
        return [self.screen(name, threshold=threshold) for name in names]


@functools.cache
def default_list() -> SanctionsList:
    """The vendored list, loaded once per process."""
    return SanctionsList.load()


def screen(name: str, *, threshold: float | None = None) -> ScreeningResult:
    """Screen a name against the vendored list (:func:`default_list`)."""
    return default_list().screen(name, threshold=threshold)


# --- Reading OFAC's CSV files ---------------------------------------------


class _Findings:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.full = False

    def add(self, finding: str) -> None:
        if len(self.items) < FINDINGS_MAX:
            self.items.append(finding)
        elif not self.full:
            self.full = True
            self.items.append(f"more findings not shown (limit {FINDINGS_MAX})")


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(LIST_FILE_BYTES_MAX + 1)
    if len(data) > LIST_FILE_BYTES_MAX:
        raise SanctionsListMalformed(
            [f"{path}: expected at most {LIST_FILE_BYTES_MAX} bytes, got more"]
        )
    return data


def _rows(data: bytes, source: str, findings: _Findings) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row, or findings when the file cannot be read."""
    if len(data) > LIST_FILE_BYTES_MAX:
        findings.add(f"{source}: expected at most {LIST_FILE_BYTES_MAX} bytes, got {len(data)}")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        findings.add(f"{source}: byte {error.start}: expected UTF-8 text ({error.reason})")
        return
    text = text.rstrip("\r\n")
    if text.endswith(END_OF_FILE_MARK):
        text = text[: -len(END_OF_FILE_MARK)]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    count = 0
    try:
        for row in reader:
            if not row:
                continue
            count += 1
            if count > LIST_ROWS_MAX:
                findings.add(f"{source}: expected at most {LIST_ROWS_MAX} rows, got more")
                return
            yield reader.line_num, row
    except csv.Error as error:
        findings.add(f"{source} line {reader.line_num}: expected CSV ({error})")


def _value(field: str) -> str | None:
    stripped = field.strip()
    return None if stripped in ("", EMPTY_FIELD) else stripped


def _positive_integer(field: str) -> int | None:
    stripped = field.strip()
    if stripped.isascii() and stripped.isdigit() and int(stripped) > 0:
        return int(stripped)
    return None


def _parse_sdn(data: bytes, source: str, findings: _Findings) -> dict[int, ListedEntity]:
    entities: dict[int, ListedEntity] = {}
    lines: dict[int, int] = {}
    for line, row in _rows(data, source, findings):
        where = f"{source} line {line}"
        if len(row) != SDN_FIELD_COUNT:
            findings.add(f"{where}: expected {SDN_FIELD_COUNT} fields, got {len(row)}")
            continue
        ent_num = _positive_integer(row[0])
        name = _value(row[1])
        sdn_type = _value(row[2])
        if ent_num is None:
            findings.add(f"{where}: expected ent_num a positive integer, got {row[0]!r}")
            continue
        if ent_num in lines:
            findings.add(f"{where}: ent_num {ent_num} is already on line {lines[ent_num]}")
            continue
        if name is None or len(name) > LISTED_NAME_LENGTH_MAX:
            findings.add(
                f"{where}: expected SDN_Name of 1 to {LISTED_NAME_LENGTH_MAX} characters, "
                f"got {row[1][:40]!r}"
            )
            continue
        type_key = None if sdn_type is None else sdn_type.lower()
        if type_key not in SDN_TYPES:
            findings.add(
                f"{where}: expected SDN_Type individual, vessel, aircraft or -0-, got {row[2]!r}"
            )
            continue
        program = _value(row[3])
        # Several programs are written "FTO] [SDGT" (the brackets of "[FTO] [SDGT]" inside).
        programs = (
            ()
            if program is None
            else tuple(part.strip(" []") for part in program.split("]") if part.strip(" []"))
        )
        lines[ent_num] = line
        entities[ent_num] = ListedEntity(
            ent_num=ent_num,
            name=name,
            sdn_type=SDN_TYPES[type_key],
            programs=programs,
            remarks=_value(row[11]),
            aliases=(),
        )
    return entities


def _parse_alt(
    data: bytes,
    source: str,
    entities: Mapping[int, ListedEntity] | None,
    sdn_source: str,
    findings: _Findings,
) -> dict[int, list[Alias]]:
    """Aliases by ent_num; ``entities`` None skips checking that each ent_num is listed."""
    aliases: dict[int, list[Alias]] = {}
    lines: dict[int, int] = {}
    for line, row in _rows(data, source, findings):
        where = f"{source} line {line}"
        if len(row) != ALT_FIELD_COUNT:
            findings.add(f"{where}: expected {ALT_FIELD_COUNT} fields, got {len(row)}")
            continue
        ent_num = _positive_integer(row[0])
        alt_num = _positive_integer(row[1])
        alt_type = (_value(row[2]) or "").lower()
        name = _value(row[3])
        if ent_num is None:
            findings.add(f"{where}: expected ent_num a positive integer, got {row[0]!r}")
            continue
        if entities is not None and ent_num not in entities:
            findings.add(f"{where}: expected an ent_num of {sdn_source}, got {ent_num}")
            continue
        if alt_num is None:
            findings.add(f"{where}: expected alt_num a positive integer, got {row[1]!r}")
            continue
        if alt_num in lines:
            findings.add(f"{where}: alt_num {alt_num} is already on line {lines[alt_num]}")
            continue
        if alt_type not in ALT_TYPES:
            findings.add(f"{where}: expected alt_type aka, fka or nka, got {row[2]!r}")
            continue
        if name is None or len(name) > LISTED_NAME_LENGTH_MAX:
            findings.add(
                f"{where}: expected alt_name of 1 to {LISTED_NAME_LENGTH_MAX} characters, "
                f"got {row[3][:40]!r}"
            )
            continue
        lines[alt_num] = line
        aliases.setdefault(ent_num, []).append(Alias(alt_num=alt_num, alt_type=alt_type, name=name))
    return aliases


__all__ = [
    "DEFAULT_THRESHOLD",
    "Alias",
    "ListedEntity",
    "Match",
    "SanctionsList",
    "SanctionsListMalformed",
    "ScreeningResult",
    "ThresholdMustBeInRange",
    "default_list",
    "normalize_name",
    "screen",
    "token_coverage",
]
