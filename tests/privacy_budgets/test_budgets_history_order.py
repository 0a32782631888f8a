"""The ledger composes a dataset's history in the order its mechanisms last appeared, so
one more round of the newest study reuses the kept composition of everything before it
(privacy_budgets/composition.py), even when that study reuses an old calibration. Its
epsilon is a fresh PLD accountant's in that order, bit for bit, and the sorted order's to
within rounding: composition commutes."""

from __future__ import annotations

import sqlite3

import pytest
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from privacy_budgets import Ledger
from privacy_budgets.accounting import (
    _epsilon_cached,
    calibrate_dpsgd,
    calibrate_noise,
    epsilon_of_counts,
    make_accountant,
)
from privacy_budgets.composition import clear_caches
from privacy_budgets.mechanisms import base_counts, composed_event, dpsgd_event, gaussian_event

DATASET, PROJECT, DELTA = "d", "p", 1e-5
STUDIES = 30


def study_round(study: int):
    # Later studies' mechanisms sort BEFORE earlier ones (smaller noise, smaller sigma).
    return composed_event(
        [
            dpsgd_event(noise_multiplier=3.0 - 0.05 * study, sampling_rate=0.01, steps=10),
            gaussian_event(noise_multiplier=90.0 - study),
        ]
    )


def _cold() -> None:
    """Forget every kept composition: an earlier test's identical history would answer from memory."""
    clear_caches()
    _epsilon_cached.cache_clear()


@pytest.fixture
def history(tmp_path):
    _cold()
    ledger = Ledger.open(tmp_path / "ledger.sqlite", site_id="site")
    ledger.set_cap(dataset=DATASET, epsilon=1e6, delta=DELTA, actor="it", reason="test")
    ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=1e6, actor="board", reason="test")
    for study in range(STUDIES):
        for _ in range(2):
            ledger.commit(
                ledger.reserve(dataset=DATASET, project=PROJECT, event=study_round(study), actor="t", purpose="x")
            )
    yield ledger
    ledger.close()


@pytest.fixture
def composed(monkeypatch) -> list[int]:
    """One item for each real PLD composition made while the test runs."""
    calls: list[int] = []
    real = pld_lib.PrivacyLossDistribution.compose
    monkeypatch.setattr(
        pld_lib.PrivacyLossDistribution,
        "compose",
        lambda self, other, **kw: calls.append(1) or real(self, other, **kw),
    )
    return calls


def test_the_history_reads_in_the_order_each_mechanism_last_appeared(history):
    events = history.events(dataset=DATASET)
    assert len(events) == 2 * STUDIES
    noises = [e.event.event.noise_multiplier for e in events if hasattr(e.event, "event")]
    assert noises == sorted(noises, reverse=True)  # study 0's first, though it sorts last
    fresh = make_accountant("pld")
    for event in events:
        fresh.compose(event)
    spent = history.spent(dataset=DATASET)
    assert spent == fresh.get_epsilon(DELTA)  # the ledger's arithmetic, bit for bit
    in_sorted_order = make_accountant("pld")
    for event in sorted(events, key=repr):
        in_sorted_order.compose(event)
    assert spent == pytest.approx(in_sorted_order.get_epsilon(DELTA), rel=1e-9)


def test_one_more_round_recomposes_only_the_newest_leaves(history, composed):
    # The fixture's process built the history, as a node's long-lived process does.
    history.commit(
        history.reserve(dataset=DATASET, project=PROJECT, event=study_round(STUDIES - 1), actor="t", purpose="x")
    )
    # the dataset's and the project's totals: at most the two changed leaves each, at reserve
    # and again at commit; never the 2 x 30 leaves of the whole history
    assert 0 < len(composed) <= 8, len(composed)


@pytest.fixture
def sites(tmp_path):
    """Four sites' ledgers open in one process, each with a history of its own (no mechanism
    shared), and each site's next round."""
    _cold()
    ledgers = []
    for site in range(4):
        ledger = Ledger.open(tmp_path / f"site{site}.sqlite", site_id=f"site{site}")
        ledger.set_cap(dataset=DATASET, epsilon=1e6, delta=DELTA, actor="it", reason="test")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=1e6, actor="board", reason="test")
        for study in range(STUDIES):
            event = composed_event(
                [
                    dpsgd_event(noise_multiplier=3.0 - 0.05 * study - 0.001 * site, sampling_rate=0.01, steps=10),
                    gaussian_event(noise_multiplier=90.0 - study - 0.1 * site),
                ]
            )
            ledger.commit(ledger.reserve(dataset=DATASET, project=PROJECT, event=event, actor="t", purpose="x"))
        ledgers.append((ledger, event))
    yield ledgers
    for ledger, _ in ledgers:
        ledger.close()


def test_a_process_serving_several_sites_keeps_each_sites_history_composed(sites, composed):
    # A simulation's actor answers for several sites in turn, each with a history of its own;
    # one site's composition must not push out the others' (the old cache kept every prefix,
    # so each site's 60 leaves evicted the last site's, and every round recomposed them all).
    for turn in range(3):  # one more round at each site in turn; the first turn may compose from the start
        for ledger, event in sites:
            composed.clear()
            ledger.commit(ledger.reserve(dataset=DATASET, project=PROJECT, event=event, actor="t", purpose="x"))
            if turn > 0:
                assert 0 < len(composed) <= 8, len(composed)


def _calibrate_new_study(target: float) -> tuple[float, float]:
    """A new study's noise, as a site calibrates it: its DP-SGD, then its noisy evaluation."""
    training = calibrate_dpsgd(target_epsilon=target, delta=DELTA, sampling_rate=0.02, steps=30)
    evaluation, _ = calibrate_noise(
        cost=lambda m: epsilon_of_counts(counts=base_counts(gaussian_event(noise_multiplier=m)), delta=DELTA),
        target_epsilon=target / 4,
        minimum=0.5,
        maximum=500.0,
    )
    return training.noise_multiplier, evaluation


def test_calibrating_a_new_study_at_each_site_keeps_their_histories_composed(sites, composed):
    # Each site calibrates a new study's noise before its round, as a tuning candidate's first
    # round does: the bisections' probes are one-offs and must not push the histories out.
    targets = [1.0 + 0.1 * turn + 0.01 * site for turn in range(3) for site in range(len(sites))]
    calibrated = []
    for turn in range(3):
        for site, (ledger, event) in enumerate(sites):
            calibrated.append(_calibrate_new_study(targets[turn * len(sites) + site]))
            composed.clear()
            ledger.commit(ledger.reserve(dataset=DATASET, project=PROJECT, event=event, actor="t", purpose="x"))
            if turn > 0:
                assert 0 < len(composed) <= 8, len(composed)
    _cold()  # what is kept changes, never a result
    assert [_calibrate_new_study(target) for target in targets] == calibrated


def test_a_study_reusing_an_old_calibration_moves_it_last_once(history, composed):
    # A tuning candidate repeated on another seed calibrates the same noise as an earlier
    # one, so its mechanisms already sit mid-history. Its first round moves them to the end
    # (composing from the start, once); later rounds recompose only the last leaves.
    old = study_round(3)
    for round_ in range(4):
        composed.clear()
        history.commit(history.reserve(dataset=DATASET, project=PROJECT, event=old, actor="t", purpose="x"))
        if round_ > 0:
            assert 0 < len(composed) <= 8, (round_, len(composed))
    events = history.events(dataset=DATASET)
    last_two = {text for event in events[-2:] for text in base_counts(event)}
    assert last_two == set(base_counts(old))  # study 3's two leaves, now last
    fresh = make_accountant("pld")
    for event in events:
        fresh.compose(event)
    assert history.spent(dataset=DATASET) == fresh.get_epsilon(DELTA)
    assert history.verify(deep=True).ok


def test_a_ledger_from_before_last_seq_reads_and_upgrades_in_place(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path, site_id="site")
    ledger.set_cap(dataset=DATASET, epsilon=1e6, delta=DELTA, actor="it", reason="test")
    ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=1e6, actor="board", reason="test")
    for study in (0, 1, 0):
        ledger.commit(
            ledger.reserve(dataset=DATASET, project=PROJECT, event=study_round(study), actor="t", purpose="x")
        )
    spent = ledger.spent(dataset=DATASET)
    ledger.close()
    with sqlite3.connect(path) as conn:  # the counts table as an earlier release wrote it
        conn.execute("ALTER TABLE counts DROP COLUMN last_seq")
    assert Ledger.verify_file(path, deep=True).ok  # read-only: first-appearance order
    ledger = Ledger.open(path, site_id="site")
    assert ledger.spent(dataset=DATASET) == pytest.approx(spent, rel=1e-9)
    ledger.commit(ledger.reserve(dataset=DATASET, project=PROJECT, event=study_round(1), actor="t", purpose="x"))
    assert ledger.verify(deep=True).ok
    ledger.close()
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(counts)")]
    assert columns[-1] == "last_seq"
