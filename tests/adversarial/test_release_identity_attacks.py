"""A curious coordinator chooses every release's identity (its query id, its run id).
The site's per-request checks now ask SQLite for the entries of that identity
(``Ledger.entries(query_id=, run_id=)``), so an identity shaped like SQL or a wildcard must
match itself only: it can neither make a charged release look new (a replay charged and
served twice) nor make a new one look charged."""

from __future__ import annotations

import pytest

from federation.site.charged_path import already_charged, uncovered_left
from privacy_budgets import Ledger
from privacy_budgets.mechanisms import gaussian_event

HOSTILE = ("x' OR '1'='1", "%", "*", "q1' --", "q1%", "Q1", "q1 ")


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite", site_id="site") as ledger:
        ledger.set_cap(dataset="d", epsilon=10.0, delta=1e-5, actor="it", reason="test")
        ledger.allocate(dataset="d", project="p", epsilon=10.0, actor="board", reason="test")
        r = ledger.reserve(
            dataset="d",
            project="p",
            event=gaussian_event(noise_multiplier=50.0),
            actor="node",
            purpose="count",
            query_id="q1",
            run_id="run1",
        )
        ledger.commit(r)
        ledger.record_uncovered(dataset="d", project="p", what="row count", actor="node", purpose="x", run_id="run1")
        yield ledger


def test_a_hostile_release_identity_matches_only_itself(ledger):
    assert already_charged(ledger=ledger, dataset="d", query_id="q1")  # the replay is caught
    for hostile in HOSTILE:
        assert not already_charged(ledger=ledger, dataset="d", query_id=hostile), hostile
        assert ledger.entries(dataset="d", query_id=hostile) == []


def test_a_hostile_run_id_cannot_borrow_or_reset_a_runs_uncovered_releases(ledger):
    assert uncovered_left(ledger=ledger, dataset="d", run_id="run1", allowed=2) == 1
    for hostile in ("run1' OR '1'='1", "%", "run%", "RUN1"):
        assert uncovered_left(ledger=ledger, dataset="d", run_id=hostile, allowed=2) == 2, hostile
