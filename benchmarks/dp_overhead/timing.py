"""Interleaved timing: every repeat runs every variant once, in a rotated order.

The machine is shared and noisy, so a variant is never timed in a block of its own:
slow spells hit all variants of a repeat alike, and each variant's ratio is taken
against the baseline of the same repeat (then the median over repeats).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.dp_overhead.variants import Variant
from benchmarks.dp_overhead.workloads import Workload

# A configuration whose baseline epochs differ by more than this (slowest / fastest) was
# disturbed by other work on the machine: run.py measures it again, once, and the report
# flags it if it is still disturbed.
STABLE_SPREAD = 1.5


@dataclass(frozen=True)
class Timing:
    variant: str
    private: bool
    epoch_ms: float  # median over repeats
    setup_ms: float  # median over repeats
    ratio: float  # median over repeats of epoch / baseline epoch of the same repeat
    ratio_low: float
    ratio_high: float
    repeats: int
    spread: float  # slowest / fastest epoch over repeats: how much the machine interfered


def _one(variant: Variant, workload: Workload, batch_size: int) -> tuple[float, float]:
    gc.collect()
    start = time.perf_counter()
    epoch = variant.prepare(workload, batch_size)
    ready = time.perf_counter()
    epoch()
    return ready - start, time.perf_counter() - ready


def time_interleaved(
    *,
    variants: Sequence[Variant],
    baseline: str,
    workload: Workload,
    batch_size: int,
    repeats: int,
    tick: Callable[[], None] = lambda: None,
) -> tuple[list[Timing], dict[str, str]]:
    """Median timings of the variants that run, and the error of each that does not."""
    failures: dict[str, str] = {}
    running: list[Variant] = []
    for variant in variants:  # warm-up, untimed; it also finds the variants that fail here
        try:
            _one(variant, workload, batch_size)
            running.append(variant)
        except Exception as err:  # noqa: BLE001 - a failing mode is a result to report
            failures[variant.name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        tick()
    if baseline not in {v.name for v in running}:
        raise RuntimeError(f"the baseline {baseline!r} failed: {failures.get(baseline)}")

    setup: dict[str, list[float]] = {v.name: [] for v in running}
    epoch: dict[str, list[float]] = {v.name: [] for v in running}
    for r in range(repeats):
        shift = r % len(running)
        for variant in running[shift:] + running[:shift]:
            s, e = _one(variant, workload, batch_size)
            setup[variant.name].append(s)
            epoch[variant.name].append(e)
            tick()

    timings = []
    for variant in running:
        ratios = [e / b for e, b in zip(epoch[variant.name], epoch[baseline], strict=False)]
        timings.append(
            Timing(
                variant=variant.name,
                private=variant.private,
                epoch_ms=1e3 * statistics.median(epoch[variant.name]),
                setup_ms=1e3 * statistics.median(setup[variant.name]),
                ratio=statistics.median(ratios),
                ratio_low=min(ratios),
                ratio_high=max(ratios),
                repeats=repeats,
                spread=max(epoch[variant.name]) / min(epoch[variant.name]),
            )
        )
    return timings, failures
