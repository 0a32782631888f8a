"""Which private variants survive empty Poisson batches, which a small site does meet.

At 20 000 rows an empty batch never happens (probability e^-64 at batch 64), so the
timed runs cannot show it; this probe trains on 20 rows at expected batch 1, where
about a third of the batches are empty.
"""

from __future__ import annotations

import logging

from benchmarks.dp_overhead.variants import VARIANTS
from benchmarks.dp_overhead.workloads import build_workload

PROBE_ROWS = 20
PROBE_EPOCHS = 3  # 60 steps: the chance that none is empty is about 1e-12


def empty_batch_probe(*, workload: str) -> dict[str, str]:
    """'ok' or the error, for each private variant."""
    small = build_workload(name=workload, rows=PROBE_ROWS)
    outcome = {}
    # Opacus logs each empty first batch; here that is the point, not news.
    logging.getLogger("opacus.data_loader").setLevel(logging.ERROR)
    for variant in VARIANTS:
        if not variant.private:
            continue
        try:
            epoch = variant.prepare(small, 1)
            for _ in range(PROBE_EPOCHS):
                epoch()
            outcome[variant.name] = "ok"
        except Exception as err:  # noqa: BLE001 - a failure is the finding
            outcome[variant.name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return outcome
