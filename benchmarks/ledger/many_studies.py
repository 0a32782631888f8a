"""A dataset that has seen many studies: the reserve of one more round as the number of
distinct mechanisms in its history grows.

Every study calibrates its own noise, so each brings mechanisms of its own (its DP-SGD
setting, its noisy evaluation): after a year a hospital's dataset holds hundreds. The
ledger composes its history in the order each mechanism last appeared
(``privacy_budgets.composition``), so a round of the newest study changes only the last
leaves and reuses the kept prefix of everything before. The baseline, in the same process
on the same multisets, is the sorted order the ledger used before: a new mechanism lands
anywhere in it, and every check recomposes what follows.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

from benchmarks.ledger.sections import section
from privacy_budgets import Ledger
from privacy_budgets.composition import clear_caches, pld_epsilon
from privacy_budgets.mechanisms import base_counts, composed_event, discrete_gaussian_event, dpsgd_event

DATASET, PROJECT, DELTA = "hospital_01", "studies", 1e-5


def study_round(study: int):
    """One round of study ``study``: its own DP-SGD noise and its own evaluation noise."""
    return composed_event(
        [
            dpsgd_event(noise_multiplier=1.0 + 0.013 * study, sampling_rate=0.01, steps=10),
            discrete_gaussian_event(sigma=40.0 + 0.7 * study, sensitivity=1),
        ]
    )


def _open(path: Path) -> Ledger:
    ledger = Ledger.open(path, site_id="bench_site")
    ledger.set_cap(dataset=DATASET, epsilon=1e6, delta=DELTA, actor="site", reason="bench")
    ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=1e6, actor="board", reason="bench")
    return ledger


def _spend(ledger: Ledger, event, purpose: str) -> float:
    start = time.perf_counter()
    reservation = ledger.reserve(dataset=DATASET, project=PROJECT, event=event, actor="bench", purpose=purpose)
    seconds = time.perf_counter() - start
    ledger.commit(reservation)
    return seconds


def measure(*, folder: Path, studies: tuple[int, ...], rounds: int) -> list[dict]:
    """Per size: the median warm reserve (history order, through the ledger) and the
    median warm composition of the same multisets in sorted order (rounds 2 onwards)."""
    rows = []
    with _open(folder / "studies.ledger") as ledger:
        done = 0
        for target in studies:
            while done < target:
                for r in range(rounds):
                    _spend(ledger, study_round(done), f"study {done} round {r + 1}")
                done += 1
            distinct = len(ledger.events(dataset=DATASET))
            timed, keys = [], []
            for r in range(rounds):
                event = study_round(done)
                after = Counter(dict(_multiset(ledger)))
                after.update(base_counts(event))
                keys.append(tuple((text, n) for text, n in after.items() if n > 0))
                timed.append(_spend(ledger, event, f"timed study {done} round {r + 1}"))
            done += 1
            clear_caches()  # the baseline's own warm-up: its first round, not the history order's prefixes
            baseline = []
            for key in keys:
                start = time.perf_counter()
                pld_epsilon(tuple(sorted(key)), delta=DELTA)
                baseline.append(time.perf_counter() - start)
            rows.append(
                {
                    "studies": target,
                    "distinct": distinct,
                    "history_ms": statistics.median(timed[1:]) * 1e3,
                    "sorted_ms": statistics.median(baseline[1:]) * 1e3,
                }
            )
            print(
                f"{target:>4} studies ({distinct} mechanisms): reserve {rows[-1]['history_ms']:.1f} ms in history "
                f"order, {rows[-1]['sorted_ms']:.1f} ms composing in sorted order",
                flush=True,
            )
            clear_caches()
            ledger.spent(dataset=DATASET)  # the history order's prefixes back, as a node keeps them
    return rows


def _multiset(ledger: Ledger) -> Counter:
    counts: Counter = Counter()
    for event in ledger.events(dataset=DATASET):
        counts.update(base_counts(event))
    return counts


def render(rows: list[dict], *, rounds: int) -> list[str]:
    return section(
        title="A dataset after many studies",
        text=(
            f"Each study brings its own DP-SGD noise and its own noisy evaluation ({rounds} rounds of both); "
            "the timed figure is the reserve of one more round of a new study (median of rounds 2 onwards, "
            "warm, through the ledger), beside composing the same multisets in the sorted order the ledger "
            "used before (same process, same PLD arithmetic, its own warm-up round). "
            "`python -m benchmarks.ledger.bench_ledger`."
        ),
        columns=[
            "studies",
            "distinct mechanisms",
            "reserve, history order (ms)",
            "compose, sorted order (ms)",
            "ratio",
        ],
        rows=[
            [
                str(r["studies"]),
                str(r["distinct"]),
                f"{r['history_ms']:.1f}",
                f"{r['sorted_ms']:.1f}",
                f"{r['sorted_ms'] / max(r['history_ms'], 1e-9):.1f}x",
            ]
            for r in rows
        ],
    )
