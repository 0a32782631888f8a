"""The ledger's epsilons against independent accountants.

References: dp_accounting's PLDAccountant composing the raw events as reserved (at its
own default, finer discretisation 1e-4), and Microsoft's prv_accountant upper bound for
DP-SGD. RDP must never report less than PLD.
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest
from dp_accounting.pld import pld_privacy_accountant
from prv_accountant import PoissonSubsampledGaussianMechanism, PRVAccountant

from privacy_budgets import Ledger
from privacy_budgets.accounting import epsilon, make_accountant
from privacy_budgets.mechanisms import (
    base_counts,
    composed_event,
    dpsgd_event,
    events_from_counts,
    gaussian_event,
    laplace_event,
)

DELTA = 1e-5


def reference_pld(events: list[dpa.DpEvent], delta: float = DELTA) -> float:
    """Raw events, composed in the order given, at dp_accounting's default discretisation."""
    accountant = pld_privacy_accountant.PLDAccountant()
    for event in events:
        accountant.compose(event)
    return accountant.get_epsilon(delta)


def spend_all(ledger: Ledger, events: list[dpa.DpEvent]) -> float:
    for i, event in enumerate(events):
        ledger.commit(ledger.reserve(dataset="d", project="p", event=event, actor="test", purpose=f"release {i}"))
    return ledger.spent(dataset="d", project="p")


@pytest.fixture
def roomy(tmp_path):
    with Ledger.open(tmp_path / "ref.ledger", site_id="ref") as ledger:
        ledger.set_cap(dataset="d", epsilon=100.0, delta=DELTA, actor="t", reason="reference")
        ledger.allocate(dataset="d", project="p", epsilon=100.0, actor="t", reason="reference")
        yield ledger


@pytest.mark.parametrize(
    ("sigma", "q", "steps", "expected"),
    [(1.1, 0.01, 1000, 1.516), (1.5, 0.04, 2250, 6.769)],
)
def test_dpsgd_matches_pld_reference_and_prv_upper_bound(roomy, sigma, q, steps, expected):
    # Spent in rounds, as a federated run would.
    rounds = [dpsgd_event(noise_multiplier=sigma, sampling_rate=q, steps=steps // 5)] * 5
    ours = spend_all(roomy, rounds)
    assert ours == pytest.approx(expected, abs=2e-3)
    assert ours == pytest.approx(reference_pld(rounds), rel=0.01)
    prv = PRVAccountant(
        prvs=[PoissonSubsampledGaussianMechanism(noise_multiplier=sigma, sampling_probability=q)],
        max_self_compositions=[steps],
        eps_error=0.01,
        delta_error=DELTA / 1000,
    )
    _, _, upper = prv.compute_epsilon(delta=DELTA, num_self_compositions=[steps])
    assert ours == pytest.approx(upper, rel=0.01)
    assert roomy.spent(dataset="d", accountant="rdp") >= ours


@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0, 20.0])
def test_gaussian_matches_reference(roomy, sigma):
    events = [gaussian_event(noise_multiplier=sigma)] * 3
    ours = spend_all(roomy, events)
    assert ours == pytest.approx(reference_pld(events), rel=0.01)
    assert roomy.spent(dataset="d", accountant="rdp") >= ours


@pytest.mark.parametrize(("scale", "count"), [(1.0, 1), (4.0, 3), (50.0, 20)])
def test_laplace_matches_reference_and_pure_dp_bound(roomy, scale, count):
    events = [laplace_event(noise_multiplier=scale, count=count)]
    ours = spend_all(roomy, events)
    assert ours == pytest.approx(reference_pld(events), rel=0.01)
    # Laplace(b) with sensitivity 1 is (1/b)-DP; composition cannot cost more than the sum.
    assert ours <= count / scale * (1 + 1e-3)


def test_mixed_sequence_matches_reference(roomy):
    events = [
        dpsgd_event(noise_multiplier=1.2, sampling_rate=0.02, steps=50),
        gaussian_event(noise_multiplier=10.0, count=4),
        laplace_event(noise_multiplier=20.0),
        dpsgd_event(noise_multiplier=1.2, sampling_rate=0.02, steps=50),
        composed_event([gaussian_event(noise_multiplier=15.0), laplace_event(noise_multiplier=40.0)]),
        dpsgd_event(noise_multiplier=2.0, sampling_rate=0.05, steps=30),
    ]
    ours = spend_all(roomy, events)
    assert ours == pytest.approx(reference_pld(events), rel=0.01)
    assert roomy.spent(dataset="d", accountant="rdp") >= ours


def test_ledger_arithmetic_is_bit_identical_to_a_fresh_pld_accountant():
    # Calibration composes with a fresh PLDAccountant in canonical order; the ledger's kept
    # intermediate distributions must give exactly the same float, or the last round of a
    # calibrated run could be refused for a rounding difference.
    counts = base_counts(
        composed_event(
            [
                dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=400),
                gaussian_event(noise_multiplier=7.0, count=3),
                laplace_event(noise_multiplier=30.0, count=2),
            ]
        )
    )
    fresh = make_accountant("pld")
    for event in events_from_counts(counts):
        fresh.compose(event)
    ours = epsilon(events=events_from_counts(counts), delta=DELTA)
    assert ours == fresh.get_epsilon(DELTA)
    counts[next(iter(counts))] += 1  # one more step reuses the kept prefixes
    fresh = make_accountant("pld")
    for event in events_from_counts(counts):
        fresh.compose(event)
    assert epsilon(events=events_from_counts(counts), delta=DELTA) == fresh.get_epsilon(DELTA)


def test_splitting_steps_into_rounds_does_not_change_epsilon():
    whole = epsilon(events=[dpsgd_event(noise_multiplier=1.0, sampling_rate=0.02, steps=300)], delta=DELTA)
    rounds = epsilon(events=[dpsgd_event(noise_multiplier=1.0, sampling_rate=0.02, steps=100)] * 3, delta=DELTA)
    assert whole == rounds
    assert math.isfinite(whole)
