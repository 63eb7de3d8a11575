"""Sanctions screening throughput against the vendored OFAC SDN list.

Screens 10,000 names (``--names``): made-up US and Pakistani people and
companies, one in ten a misspelt listed name, all from a seeded generator, so
each run screens the same names. Prints the load time, names per second and
hits; the last line printed is one JSON object with the figures.

    .venv/bin/python bench/screening_bench.py
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_description
from settlement.compliance.screening import DEFAULT_THRESHOLD, SanctionsList

DEFAULT_SEED = 20261128

FIRST_NAMES = (
    "Muhammad", "Ahmed", "Ali", "Imran", "Bilal", "Usman", "Faisal", "Hamza", "Ayesha",
    "Fatima", "Sana", "Zainab", "Hina", "James", "Robert", "Michael", "David", "Sarah",
    "Emily", "Jennifer", "Maria", "Daniel", "Laura", "Kevin",
)  # fmt: skip
LAST_NAMES = (
    "Khan", "Qureshi", "Malik", "Sheikh", "Chaudhry", "Butt", "Akhtar", "Siddiqui", "Raza",
    "Abbasi", "Smith", "Johnson", "Williams", "Brown", "Miller", "Garcia", "Davis", "Wilson",
    "Anderson", "Taylor", "Moore", "Clark",
)  # fmt: skip
COMPANY_WORDS = (
    "Indus", "Karakoram", "Mehran", "Ravi", "Chenab", "Frontier", "Summit", "Pioneer",
    "Liberty", "Harbor", "Prairie", "Granite", "Copper", "Cotton", "Textile", "Mining",
    "Minerals", "Logistics", "Foods", "Pharma", "Steel", "Energy", "Exports", "Traders",
)  # fmt: skip
COMPANY_SUFFIXES = ("(Pvt.) Ltd.", "Limited", "LLC", "Inc.", "Corporation", "Co.", "")


def misspell(generator: random.Random, name: str) -> str:
    """One random edit of a name: drop, double or swap a letter, or reverse the words."""
    letters = list(name)
    position = generator.randrange(len(letters))
    edit = generator.randrange(4)
    if edit == 0 and len(letters) > 3:
        del letters[position]
    elif edit == 1:
        letters.insert(position, letters[position])
    elif edit == 2 and position + 1 < len(letters):
        letters[position], letters[position + 1] = letters[position + 1], letters[position]
    else:
        return " ".join(reversed(name.replace(",", " ").split()))
    return "".join(letters)


def synthetic_names(count: int, seed: int, listed: Sequence[str] = ()) -> list[str]:
    """``count`` names from a generator seeded with ``seed``; one in ten from ``listed``."""
    generator = random.Random(seed)
    names = []
    for _ in range(count):
        kind = generator.random()
        if listed and kind < 0.1:
            names.append(misspell(generator, generator.choice(listed))[:140])
        elif kind < 0.55:
            names.append(f"{generator.choice(FIRST_NAMES)} {generator.choice(LAST_NAMES)}")
        else:
            words = generator.sample(COMPANY_WORDS, 2)
            suffix = generator.choice(COMPANY_SUFFIXES)
            names.append(f"{words[0]} {words[1]} {suffix}".strip())
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    arguments = parser.parse_args()

    started = time.perf_counter()
    sanctions = SanctionsList.load(threshold=arguments.threshold)
    load_s = time.perf_counter() - started
    listed = [entity.name for entity in sanctions.entities.values()]
    names = synthetic_names(arguments.names, arguments.seed, listed)
    print(f"list: {len(sanctions)} entries, {sanctions.name_count} names, loaded in {load_s:.2f} s")

    started = time.perf_counter()
    results = sanctions.screen_many(names)
    elapsed_s = time.perf_counter() - started
    hits = sum(result.hit for result in results)
    names_per_s = len(names) / elapsed_s
    print(
        f"screened {len(names)} names in {elapsed_s:.2f} s: {names_per_s:,.0f} names/s, "
        f"{hits} hits at threshold {arguments.threshold} (seed {arguments.seed})"
    )
    print(
        json.dumps(
            {
                "benchmark": "screening",
                "names_per_s": round(names_per_s, 1),
                "names": len(names),
                "seconds": round(elapsed_s, 3),
                "hits": hits,
                "threshold": arguments.threshold,
                "seed": arguments.seed,
                "load_s": round(load_s, 3),
                "list_digest": sanctions.digest,
                "machine": machine_description(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
