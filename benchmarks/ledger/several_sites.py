"""Several sites' ledgers in one process: the reserve of one more round at each site in
turn, as a simulation's actor answers for several hospitals.

Each site's dataset has seen many studies (``many_studies.study_round``, shifted per site
so no two sites share a mechanism). The composition cache keeps the last few prefixes of
each history it composes (``privacy_budgets.composition.TAIL_KEPT``); the baseline, in the
same process on the same ledgers, keeps every prefix, as it did before: one site's long
history then pushes the others' out of the cache, and every turn recomposes a whole history.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from benchmarks.ledger.sections import section
from privacy_budgets import Ledger, composition
from privacy_budgets.mechanisms import composed_event, discrete_gaussian_event, dpsgd_event

DATASET, PROJECT, DELTA = "hospital", "studies", 1e-5
SITES = 4


def site_round(site: int, study: int):
    return composed_event(
        [
            dpsgd_event(noise_multiplier=1.0 + 0.013 * study + 0.0007 * site, sampling_rate=0.01, steps=10),
            discrete_gaussian_event(sigma=40.0 + 0.7 * study + 0.01 * site, sensitivity=1),
        ]
    )


def _turns(ledgers: list[Ledger], *, study: int, turns: int) -> list[float]:
    """Seconds of each reserve, one site after another, ``turns`` times round."""
    timed = []
    for _ in range(turns):
        for site, ledger in enumerate(ledgers):
            event = site_round(site, study)
            start = time.perf_counter()
            reservation = ledger.reserve(dataset=DATASET, project=PROJECT, event=event, actor="bench", purpose="x")
            timed.append(time.perf_counter() - start)
            ledger.commit(reservation)
    return timed


def measure(*, folder: Path, studies: int, turns: int) -> dict:
    ledgers = []
    for site in range(SITES):
        ledger = Ledger.open(folder / f"site{site}.ledger", site_id=f"site{site}")
        ledger.set_cap(dataset=DATASET, epsilon=1e6, delta=DELTA, actor="site", reason="bench")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=1e6, actor="board", reason="bench")
        for study in range(studies):
            ledger.commit(
                ledger.reserve(
                    dataset=DATASET, project=PROJECT, event=site_round(site, study), actor="bench", purpose="x"
                )
            )
        ledgers.append(ledger)
    distinct = len(ledgers[0].events(dataset=DATASET))
    try:
        composition.clear_caches()
        _turns(ledgers, study=studies, turns=1)  # each site's first turn composes its history once
        tail = _turns(ledgers, study=studies, turns=turns)
        kept = composition.TAIL_KEPT
        composition.TAIL_KEPT = 10**9  # every prefix kept: the cache before
        try:
            composition.clear_caches()
            _turns(ledgers, study=studies + 1, turns=1)
            every = _turns(ledgers, study=studies + 1, turns=turns)
        finally:
            composition.TAIL_KEPT = kept
    finally:
        for ledger in ledgers:
            ledger.close()
    return {
        "sites": SITES,
        "studies": studies,
        "distinct": distinct,
        "tail_ms": statistics.median(tail) * 1e3,
        "every_ms": statistics.median(every) * 1e3,
        "reserves": len(tail),
    }


def render(row: dict) -> list[str]:
    return section(
        title="Several sites in one process",
        text=(
            f"{row['sites']} sites' ledgers open in one process, each dataset after {row['studies']} studies "
            f"({row['distinct']} distinct mechanisms, none shared between sites); one more round at each site in "
            f"turn, median of {row['reserves']} reserves after each site's first. The cache keeps the last "
            f"{composition.TAIL_KEPT} prefixes of each history; the baseline (same process, same ledgers) keeps "
            "every prefix, as before. `python -m benchmarks.ledger.bench_ledger`."
        ),
        columns=[
            "sites",
            "distinct mechanisms per site",
            "reserve, last prefixes kept (ms)",
            "every prefix kept (ms)",
            "ratio",
        ],
        rows=[
            [
                str(row["sites"]),
                str(row["distinct"]),
                f"{row['tail_ms']:.1f}",
                f"{row['every_ms']:.1f}",
                f"{row['every_ms'] / max(row['tail_ms'], 1e-9):.1f}x",
            ]
        ],
    )
