"""Private selection (Papernot & Steinke 2022) as one ledger entry: its epsilon is
dp_accounting's RDP bound for ``RepeatAndSelectDpEvent``, recomputed here with the RDP
accountant directly; the ledger composes it as the PLD of its proven (epsilon, delta)
pair, recomputed with dp_accounting's PLD library directly; its delta comes out of the
dataset's."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.dp_event import RepeatAndSelectDpEvent
from dp_accounting.pld import common as pld_common
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.rdp import rdp_privacy_accountant

from privacy_budgets import Ledger
from privacy_budgets.composition import PLD_VALUE_DISCRETIZATION
from privacy_budgets.errors import InvalidBudget, InvalidMechanism, PrivacyBudgetError
from privacy_budgets.mechanisms import (
    PrivacyParametersDpEvent,
    canonical_json,
    discrete_gaussian_event,
    dpsgd_event,
    event_from_json,
    event_to_json,
    privacy_parameters_event,
)
from privacy_budgets.selection import (
    GEOMETRIC,
    POISSON,
    calibrate_selection,
    draw_repetitions,
    rdp_curve,
    selection_epsilon,
    selection_event,
)
from privacy_budgets.statements import release_kind, what_released

DELTA = 1e-5


def rdp_epsilon(event: dpa.DpEvent, delta: float) -> float:
    accountant = rdp_privacy_accountant.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize("mean,shape", [(4, GEOMETRIC), (8, GEOMETRIC), (5, POISSON)])
def test_selection_epsilon_is_dp_accountings_rdp_bound(mean, shape):
    run = dpsgd_event(noise_multiplier=2.0, sampling_rate=0.1, steps=100)
    expected = rdp_epsilon(RepeatAndSelectDpEvent(event=run, mean=float(mean), shape=float(shape)), DELTA / 10)
    assert selection_epsilon(event=run, mean=mean, shape=shape, delta=DELTA / 10) == pytest.approx(expected, rel=1e-12)
    # More than one run's cost, and far less than mean runs composed.
    assert expected > rdp_epsilon(run, DELTA / 10)
    composed = rdp_epsilon(dpa.SelfComposedDpEvent(event=run, count=int(mean) * 3), DELTA / 10)
    assert expected < composed


def test_a_discrete_gaussian_run_is_its_zcdp_curve():
    """Canonne, Kamath & Steinke (2020), Theorem 4: rho = d^2 / (2 sigma^2); RDP alpha*rho."""
    event = discrete_gaussian_event(sigma=4.0, sensitivity=2)
    curve = rdp_curve(event)
    orders = rdp_privacy_accountant.RdpAccountant().orders
    np.testing.assert_allclose(curve, orders * (4 / (2 * 16.0)), rtol=1e-12)


def test_a_proven_pair_cannot_be_a_run_of_a_selection():
    with pytest.raises(InvalidMechanism, match="no Renyi curve"):
        selection_epsilon(event=privacy_parameters_event(epsilon=1.0, delta=1e-7), mean=4, shape=GEOMETRIC, delta=1e-6)


@pytest.mark.parametrize("mean,shape", [(0.5, GEOMETRIC), (4, 2.0), (math.inf, POISSON), (True, GEOMETRIC)])
def test_repetitions_outside_what_the_accountant_assumes_are_refused(mean, shape):
    with pytest.raises(InvalidBudget):
        selection_epsilon(event=discrete_gaussian_event(sigma=3.0), mean=mean, shape=shape, delta=1e-6)


def test_the_pair_serialises_and_reads_back_and_is_described():
    event = privacy_parameters_event(epsilon=0.75, delta=1e-6)
    assert isinstance(event, PrivacyParametersDpEvent)
    assert event_from_json(event_to_json(event)) == event
    assert canonical_json(event) == (
        '{"event":{"delta":1e-06,"epsilon":0.75,"type":"PrivacyParametersDpEvent"},"format":"dp_accounting/0.6"}'
    )
    assert "private selection" in what_released(event)
    for bad in (dict(epsilon=-1.0, delta=1e-6), dict(epsilon=1.0, delta=1.0), dict(epsilon=math.nan, delta=0.0)):
        with pytest.raises(InvalidMechanism):
            privacy_parameters_event(**bad)


@pytest.fixture
def roomy(tmp_path):
    with Ledger.open(tmp_path / "selection.ledger", site_id="ref") as ledger:
        ledger.set_cap(dataset="d", epsilon=100.0, delta=DELTA, actor="t", reason="reference")
        ledger.allocate(dataset="d", project="p", epsilon=100.0, actor="t", reason="reference")
        yield ledger


def _pld_of_pair(epsilon: float, delta: float) -> pld_lib.PrivacyLossDistribution:
    return pld_lib.from_privacy_parameters(
        pld_common.DifferentialPrivacyParameters(epsilon=epsilon, delta=delta),
        value_discretization_interval=PLD_VALUE_DISCRETIZATION,
    )


def test_the_ledger_charges_a_selection_as_the_pld_of_its_pair(roomy):
    run = dpsgd_event(noise_multiplier=1.5, sampling_rate=0.05, steps=200)
    selection = selection_event(event=run, mean=4, shape=GEOMETRIC, delta=DELTA / 10)
    pair_epsilon = selection.epsilon
    assert pair_epsilon == pytest.approx(
        rdp_epsilon(RepeatAndSelectDpEvent(event=run, mean=4.0, shape=1.0), DELTA / 10), rel=1e-12
    )
    entry = roomy.reserve(dataset="d", project="p", event=selection, actor="site", purpose="local tuning")
    roomy.commit(entry)
    alone = roomy.spent(dataset="d", project="p")
    expected = _pld_of_pair(pair_epsilon, DELTA / 10).get_epsilon_for_delta(DELTA)
    assert alone == pytest.approx(expected, rel=1e-9)
    # At a larger delta than the pair's, never more than its epsilon (and the discretisation's
    # pessimistic rounding up, at most one value interval).
    assert pair_epsilon - 0.05 < alone <= pair_epsilon + PLD_VALUE_DISCRETIZATION
    assert release_kind(roomy.entries(dataset="d")[-1]) == "a private selection (proven epsilon, delta)"

    # Composed with a later training exactly as the PLD library composes them.
    later = dpsgd_event(noise_multiplier=1.2, sampling_rate=0.05, steps=100)
    roomy.commit(roomy.reserve(dataset="d", project="p", event=later, actor="site", purpose="final training"))
    direct = _pld_of_pair(pair_epsilon, DELTA / 10).compose(
        pld_lib.from_gaussian_mechanism(
            standard_deviation=1.2,
            sampling_prob=0.05,
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
            neighboring_relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE,
        ).self_compose(100)
    )
    assert roomy.spent(dataset="d", project="p") == pytest.approx(direct.get_epsilon_for_delta(DELTA), rel=1e-6)


def test_a_pairs_delta_is_taken_out_of_the_datasets(roomy):
    """The pair's delta is infinite loss in the PLD: the dataset's other releases keep
    only what is left of its delta, and a pair at the dataset's delta is refused."""
    # Above the dataset's delta the history's epsilon is infinite: every cap refuses it.
    with pytest.raises(PrivacyBudgetError, match="inf"):
        roomy.reserve(
            dataset="d",
            project="p",
            event=privacy_parameters_event(epsilon=0.5, delta=2 * DELTA),
            actor="s",
            purpose="x",
        )
    # Below it, the pair's epsilon at the dataset's delta is what the PLD says for the
    # rest of the delta (D - d, about): the same pair at a smaller delta costs less.
    small = _pld_of_pair(0.5, DELTA / 10).get_epsilon_for_delta(DELTA)
    large = _pld_of_pair(0.5, DELTA * 0.9).get_epsilon_for_delta(DELTA)
    assert small <= 0.5 + PLD_VALUE_DISCRETIZATION and large <= 0.5 + PLD_VALUE_DISCRETIZATION
    roomy.commit(
        roomy.reserve(
            dataset="d",
            project="p",
            event=privacy_parameters_event(epsilon=0.5, delta=DELTA * 0.9),
            actor="s",
            purpose="x",
        )
    )
    assert roomy.spent(dataset="d", project="p") == pytest.approx(large, rel=1e-9)
    # With 0.9 of the delta gone, a later small release costs far more than it would alone.
    later = dpsgd_event(noise_multiplier=5.0, sampling_rate=0.01, steps=10)
    roomy.commit(roomy.reserve(dataset="d", project="p", event=later, actor="s", purpose="y"))
    direct = _pld_of_pair(0.5, DELTA * 0.9).compose(
        pld_lib.from_gaussian_mechanism(
            standard_deviation=5.0,
            sampling_prob=0.01,
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
            neighboring_relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE,
        ).self_compose(10)
    )
    assert roomy.spent(dataset="d", project="p") == pytest.approx(direct.get_epsilon_for_delta(DELTA), rel=1e-6)


def test_calibrated_selection_meets_its_target_and_every_run_is_dominated():
    """Candidates with different sampling rates: the first is the reference at the
    calibrated noise, each other's RDP curve lies under it at every order (recomputed)."""
    shapes = ((0.05, 60), (0.08, 40), (0.05, 90))  # (sampling rate, steps): batch sizes and epochs
    runs = [lambda noise, q=q, n=n: dpsgd_event(noise_multiplier=noise, sampling_rate=q, steps=n) for q, n in shapes]
    plan = calibrate_selection(
        runs=runs, target_epsilon=2.0, delta=DELTA / 10, mean=3, shape=GEOMETRIC, minimum=0.5, maximum=50.0
    )
    assert plan.epsilon <= 2.0 * (1 + 1e-9)
    direct = rdp_epsilon(
        RepeatAndSelectDpEvent(event=runs[0](plan.noise_multipliers[0]), mean=3.0, shape=1.0), DELTA / 10
    )
    assert plan.epsilon == pytest.approx(direct, rel=1e-12)
    assert plan.epsilon > 1.9  # the target is met, not undershot far
    accountant = rdp_privacy_accountant.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(runs[0](plan.noise_multipliers[0]))
    limit = accountant.rdp
    for run, noise in zip(runs[1:], plan.noise_multipliers[1:], strict=True):
        other = rdp_privacy_accountant.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
        other.compose(run(noise))
        finite = np.isfinite(limit)
        assert np.all(other.rdp[finite] <= limit[finite] * (1 + 1e-12))
        assert noise > plan.noise_multipliers[0]  # more sampling or more steps need more noise
    assert plan.event() == privacy_parameters_event(epsilon=plan.epsilon, delta=DELTA / 10)


def test_repetitions_are_drawn_as_the_accountant_assumes():
    rng = np.random.default_rng(3)
    geometric = [draw_repetitions(mean=4, shape=GEOMETRIC, rng=rng) for _ in range(4000)]
    poisson = [draw_repetitions(mean=4, shape=POISSON, rng=rng) for _ in range(4000)]
    assert min(geometric) >= 1 and abs(np.mean(geometric) - 4) < 0.25
    assert min(poisson) >= 0 and abs(np.mean(poisson) - 4) < 0.2
