"""Several real processes on one ledger, and writers killed with SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import _ledger_workers as workers
import pytest
from conftest import DATASET, DELTA, PROJECT, SITE

from privacy_budgets import BudgetExceeded, Ledger
from privacy_budgets.accounting import epsilon
from privacy_budgets.mechanisms import gaussian_event

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
N_FIT = 150  # spends that fit under the cap
ATTEMPTS = 60  # per process: 4 x 60 = 240 attempts, 90 of them refused


def cost_of(n: int) -> float:
    return epsilon(events=[gaussian_event(**workers.CHEAP, count=n)], delta=DELTA)


def make_ledger(path: Path, cap: float) -> None:
    with Ledger.open(path, site_id=SITE) as ledger:
        ledger.set_cap(dataset=DATASET, epsilon=cap, delta=DELTA, actor="site", reason="test")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=cap * 2, actor="board", reason="test")


def test_four_processes_hit_the_cap_exactly(tmp_path):
    path = tmp_path / "shared.ledger"
    # The cap sits between the cost of 150 and 151 spends: exactly 150 must fit.
    cap = (cost_of(N_FIT) + cost_of(N_FIT + 1)) / 2
    make_ledger(path, cap)
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(workers.spend_until_refused, [(str(path), w, ATTEMPTS) for w in range(4)])
    committed = sum(c for c, _ in results)
    refused = sum(r for _, r in results)
    assert (committed, refused) == (N_FIT, 4 * ATTEMPTS - N_FIT)
    with Ledger.open(path, site_id=SITE, create=False) as ledger:
        entries = ledger.entries()
        kinds = Counter(e.kind for e in entries)
        assert kinds == {"genesis": 1, "set_cap": 1, "allocate": 1, "reserve": N_FIT, "commit": N_FIT}
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        purposes = [e.purpose for e in entries if e.kind == "commit"]
        assert len(set(purposes)) == N_FIT  # none lost, none doubled
        assert ledger.spent(dataset=DATASET) == pytest.approx(cost_of(N_FIT))
        assert ledger.spent(dataset=DATASET) <= cap
        assert ledger.open_reservations() == []
        report = ledger.verify()
        assert report.ok, report.problem


def test_processes_creating_the_same_ledger_agree(tmp_path):
    path = tmp_path / "new.ledger"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        fingerprints = pool.starmap(workers.create_at_once, [(str(path), w) for w in range(3)])
    assert len(set(fingerprints)) == 1  # one key, whoever won the race
    report = Ledger.verify_file(path)
    assert report.ok, report.problem
    with Ledger.open(path, site_id=SITE, create=False) as ledger:
        kinds = [e.kind for e in ledger.entries()]
    assert kinds == ["genesis", "uncovered", "uncovered", "uncovered"]


def run_worker(action: str, path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    return subprocess.Popen(
        [sys.executable, str(HERE / "_ledger_workers.py"), action, str(path)], env=env, stderr=subprocess.PIPE
    )


def test_writer_killed_inside_a_transaction(tmp_path):
    path = tmp_path / "crash.ledger"
    make_ledger(path, cap=cost_of(3) * 1.0001)  # room for three spends
    process = run_worker("die_inside_transaction", path)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    report = Ledger.verify_file(path)
    assert report.ok, report.problem  # the half-written entry and its counts rolled back
    with Ledger.open(path, site_id=SITE, create=False) as ledger:
        assert [e.kind for e in ledger.entries()] == ["genesis", "set_cap", "allocate", "reserve", "commit", "reserve"]
        (orphan,) = ledger.open_reservations()
        assert orphan.purpose == "left open by the crash"
        assert ledger.spent(dataset=DATASET) == pytest.approx(cost_of(2))  # it counts as spent
        ledger.commit(
            ledger.reserve(
                dataset=DATASET, project=PROJECT, actor="node", purpose="third", event=gaussian_event(**workers.CHEAP)
            )
        )
        with pytest.raises(BudgetExceeded):  # the orphan still holds its share of the cap
            ledger.reserve(
                dataset=DATASET, project=PROJECT, actor="node", purpose="fourth", event=gaussian_event(**workers.CHEAP)
            )
        ledger.abort(orphan, reason="the process that reserved it died", actor="site-admin")
        ledger.reserve(
            dataset=DATASET, project=PROJECT, actor="node", purpose="fourth", event=gaussian_event(**workers.CHEAP)
        )
        assert ledger.verify(deep=True).ok


def test_writer_killed_while_looping(tmp_path):
    path = tmp_path / "loop.ledger"
    make_ledger(path, cap=50.0)
    process = run_worker("spend_forever", path)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if _n_entries(path) >= 40:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    report = Ledger.verify_file(path, deep=True)
    assert report.ok, report.problem
    assert report.entries_checked >= 40
    with Ledger.open(path, site_id=SITE, create=False) as ledger:
        entries = ledger.entries()
        reserves = {e.reservation_id for e in entries if e.kind == "reserve"}
        commits = {e.reservation_id for e in entries if e.kind == "commit"}
        open_ids = {r.id for r in ledger.open_reservations()}
        assert commits | open_ids == reserves and len(open_ids) <= 1
        assert ledger.spent(dataset=DATASET) == pytest.approx(
            epsilon(events=[gaussian_event(noise_multiplier=500.0, count=len(reserves))], delta=DELTA)
        )


def _n_entries(path: Path) -> int:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
