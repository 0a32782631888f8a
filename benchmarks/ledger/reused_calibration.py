"""A study that reuses an old calibration: the reserve of its rounds once it has moved its
mechanisms to the end of the history.

A tuning search that repeats a configuration on another seed calibrates the same noise as
an earlier candidate, so its mechanisms already sit in the middle of the dataset's history.
The ledger composes in the order each mechanism last appeared
(``privacy_budgets.composition``): the first round moves them to the end, and later rounds
change only the last leaves. The baseline, in the same process on the same multisets, is
the order of first appearance the ledger used before: the reused mechanisms stay where they
first appeared, and every round recomposes every leaf after them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from benchmarks.ledger.many_studies import DELTA, _multiset, _open, _spend, study_round
from benchmarks.ledger.sections import section
from privacy_budgets.composition import clear_caches, pld_epsilon
from privacy_budgets.mechanisms import base_counts


def measure(*, folder: Path, studies: int, rounds: int) -> dict:
    """Median warm reserve of rounds 2 onwards of a study reusing study ``studies // 2``'s
    calibration, beside composing the same multisets in first-appearance order."""
    reused = studies // 2
    with _open(folder / "reused.ledger") as ledger:
        for study in range(studies):
            for r in range(2):
                _spend(ledger, study_round(study), f"study {study} round {r + 1}")
        first_seen = list(_multiset(ledger))  # no mechanism repeated yet: first = last appearance
        distinct = len(first_seen)
        timed, keys = [], []
        for r in range(rounds):
            timed.append(_spend(ledger, study_round(reused), f"repeat of study {reused} round {r + 1}"))
            after = _multiset(ledger)
            keys.append(tuple((text, after[text]) for text in first_seen))
        clear_caches()  # the baseline's own warm-up: its first round
        baseline = []
        for key in keys:
            start = time.perf_counter()
            pld_epsilon(key, delta=DELTA)
            baseline.append(time.perf_counter() - start)
    return {
        "studies": studies,
        "distinct": distinct,
        "position": first_seen.index(next(iter(base_counts(study_round(reused))))) + 1,
        "rounds": rounds,
        "last_ms": statistics.median(timed[1:]) * 1e3,
        "first_round_ms": timed[0] * 1e3,
        "first_ms": statistics.median(baseline[1:]) * 1e3,
    }


def render(row: dict) -> list[str]:
    return section(
        title="A study reusing an old calibration",
        text=(
            f"A dataset after {row['studies']} studies ({row['distinct']} distinct mechanisms), then {row['rounds']} "
            f"rounds of a study that reuses the calibration of the study whose mechanisms sit at position "
            f"{row['position']} of the history, as a tuning candidate repeated on another seed does. The timed "
            "figure is the warm reserve of its rounds 2 onwards (median, through the ledger; its first round, "
            f"which moves the mechanisms to the end, took {row['first_round_ms']:.0f} ms), beside composing the "
            "same multisets in the order of first appearance the ledger used before (same process, same PLD "
            "arithmetic, its own warm-up round). `python -m benchmarks.ledger.bench_ledger`."
        ),
        columns=[
            "distinct mechanisms",
            "reused at position",
            "reserve, last appearance (ms)",
            "compose, first appearance (ms)",
            "ratio",
        ],
        rows=[
            [
                str(row["distinct"]),
                str(row["position"]),
                f"{row['last_ms']:.1f}",
                f"{row['first_ms']:.1f}",
                f"{row['first_ms'] / max(row['last_ms'], 1e-9):.1f}x",
            ]
        ],
    )
