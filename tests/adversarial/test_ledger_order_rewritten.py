"""An insider rewrites the column that orders a ledger's composition (``counts.last_seq``).

It orders a cache's work only, so verification leaves it out of its comparison of derived
tables. Rewriting it reorders the PLD composition, which commutes: every total stays within
rounding, limits are checked the same, and the file still verifies."""

from __future__ import annotations

import sqlite3

import pytest

from privacy_budgets import Ledger
from privacy_budgets.mechanisms import canonical_json, dpsgd_event, gaussian_event

SITE, DATASET, PROJECT, DELTA = "hospital_01", "cohort", "study", 1e-5


def test_reordering_the_counts_changes_no_total_and_no_verdict(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path, site_id=SITE) as ledger:
        ledger.set_cap(dataset=DATASET, epsilon=10.0, delta=DELTA, actor="it", reason="test")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=8.0, actor="board", reason="test")
        for event in (
            dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=80),
            gaussian_event(noise_multiplier=8.0),
            dpsgd_event(noise_multiplier=1.3, sampling_rate=0.02, steps=40),
            gaussian_event(noise_multiplier=8.0),
        ):
            ledger.commit(ledger.reserve(dataset=DATASET, project=PROJECT, event=event, actor="node", purpose="x"))
        before = {p: ledger.spent(dataset=DATASET, project=p) for p in (None, PROJECT)}
        order = [canonical_json(e) for e in ledger.events(dataset=DATASET)]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE counts SET last_seq = 1000000 - rowid * 7")  # the reverse order
    with Ledger.open(path, site_id=SITE) as ledger:
        assert [canonical_json(e) for e in ledger.events(dataset=DATASET)] != order  # it did reorder
        for project, spent in before.items():
            assert ledger.spent(dataset=DATASET, project=project) == pytest.approx(spent, rel=1e-9)
        assert ledger.verify(deep=True).ok
