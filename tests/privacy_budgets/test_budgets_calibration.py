"""Calibration never fails obscurely: an explicit bracket, the least noise when it fits,
the project's own refusal when prior spending leaves no room."""

from __future__ import annotations

import dp_accounting as dpa
import pytest
from conftest import DATASET, DELTA, PROJECT
from dp_accounting.pld import pld_privacy_accountant
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy_budgets import Ledger
from privacy_budgets.accounting import (
    MAX_NOISE_MULTIPLIER,
    MIN_NOISE_MULTIPLIER,
    PLD_VALUE_DISCRETIZATION,
    calibrate_dpsgd,
    calibrate_noise,
)
from privacy_budgets.errors import AccountingFault, InvalidBudget, NoNoiseFits, ProjectBudgetSpent
from privacy_budgets.mechanisms import dpsgd_event, gaussian_event
from privacy_budgets.planning import calibrate_for_project


def independent_epsilon(events: list[dpa.DpEvent]) -> float:
    """dp_accounting's own PLD accountant, composing the events as given."""
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=PLD_VALUE_DISCRETIZATION)
    for event in events:
        accountant.compose(event)
    return accountant.get_epsilon(DELTA)


def test_a_generous_target_gets_the_least_noise_and_says_so():
    # The second cause of the day-one traceback: the bracket's lower end already fits.
    calibration = calibrate_dpsgd(target_epsilon=200, delta=DELTA, sampling_rate=0.01, steps=5)
    assert calibration.at_minimum
    assert calibration.noise_multiplier == MIN_NOISE_MULTIPLIER
    assert calibration.epsilon < 200
    assert "least noise allowed" in calibration.note() and "less than its target" in calibration.note()


@settings(max_examples=12, deadline=None)
@given(
    target=st.floats(min_value=0.2, max_value=8.0),
    q=st.floats(min_value=0.005, max_value=0.2),
    steps=st.integers(min_value=1, max_value=300),
    prior_sigma=st.one_of(st.none(), st.floats(min_value=2.0, max_value=20.0)),
)
def test_calibrated_noise_never_overshoots_and_is_the_least_that_fits(target, q, steps, prior_sigma):
    prior = [] if prior_sigma is None else [gaussian_event(noise_multiplier=prior_sigma)]
    try:
        calibration = calibrate_dpsgd(
            target_epsilon=target, delta=DELTA, sampling_rate=q, steps=steps, prior_events=prior
        )
    except NoNoiseFits as err:
        assert err.prior_epsilon is not None
        assert (
            independent_epsilon(
                [*prior, dpsgd_event(noise_multiplier=MAX_NOISE_MULTIPLIER, sampling_rate=q, steps=steps)]
            )
            > target
        )
        return
    run = dpsgd_event(noise_multiplier=calibration.noise_multiplier, sampling_rate=q, steps=steps)
    assert independent_epsilon([*prior, run]) <= target + 1e-9
    if not calibration.at_minimum:
        # 0.2% less noise would overshoot: the search found (about) the least noise that fits.
        less = dpsgd_event(noise_multiplier=calibration.noise_multiplier * 0.998, sampling_rate=q, steps=steps)
        assert independent_epsilon([*prior, less]) > target


def test_prior_spending_with_no_room_left_is_the_projects_refusal(ledger: Ledger):
    # Spend most of the project's allocation, then ask for a study whose total leaves a sliver.
    spend = ledger.reserve(
        dataset=DATASET,
        project=PROJECT,
        event=gaussian_event(noise_multiplier=4.4),
        actor="coordinator",
        purpose="an earlier study",
    )
    ledger.commit(spend)
    spent = ledger.spent(dataset=DATASET, project=PROJECT)
    assert 0.5 < spent < 1.0
    with pytest.raises(ProjectBudgetSpent) as caught:
        calibrate_for_project(
            ledger=ledger, dataset=DATASET, project=PROJECT, target_epsilon=spent + 1e-6, sampling_rate=0.05, steps=200
        )
    message = str(caught.value)
    assert "\n" not in message, "one paragraph"
    assert f"project '{PROJECT}' has already spent epsilon {spent:.3g} at site {ledger.site_id}" in message
    assert "its allocation there is 1.00" in message
    assert "Fix: run the study as a new project" in message
    assert "NoBracketInterval" not in message


def test_a_spent_project_is_refused_without_revealing_the_cap_or_other_projects(ledger: Ledger):
    ledger.allocate(dataset=DATASET, project="another-study", epsilon=1.5, actor="ethics-board", reason="r")
    for project, sigma in (("another-study", 3.0), (PROJECT, 5.0)):
        spend = ledger.reserve(
            dataset=DATASET,
            project=project,
            event=gaussian_event(noise_multiplier=sigma),
            actor="coordinator",
            purpose="earlier",
        )
        ledger.commit(spend)
    spent = ledger.spent(dataset=DATASET, project=PROJECT)
    with pytest.raises(ProjectBudgetSpent) as caught:
        calibrate_for_project(
            ledger=ledger, dataset=DATASET, project=PROJECT, target_epsilon=spent / 2, sampling_rate=0.05, steps=10
        )
    message = str(caught.value)
    assert "another-study" not in message
    assert "3.00" not in message and "cap" not in message  # the dataset's cap (3.0) stays at the site
    assert f"{ledger.spent(dataset=DATASET):.3g}" not in message  # nor the dataset's total


def test_reserved_spending_counts_where_the_site_says_so(ledger: Ledger):
    ledger.reserve(
        dataset=DATASET,
        project=PROJECT,
        event=gaussian_event(noise_multiplier=4.4),
        actor="coordinator",
        purpose="a round in flight",
    )
    free = calibrate_for_project(
        ledger=ledger, dataset=DATASET, project=PROJECT, target_epsilon=0.5, sampling_rate=0.05, steps=20
    )
    assert free.prior_epsilon == 0.0
    with pytest.raises(ProjectBudgetSpent):
        calibrate_for_project(
            ledger=ledger,
            dataset=DATASET,
            project=PROJECT,
            target_epsilon=0.5,
            sampling_rate=0.05,
            steps=20,
            include_reserved=True,
        )


def test_the_bracket_itself_is_checked():
    with pytest.raises(InvalidBudget, match="0 < minimum < maximum"):
        calibrate_noise(cost=lambda m: 1 / m, target_epsilon=1.0, minimum=2.0, maximum=1.0)
    with pytest.raises(NoNoiseFits, match="noise multiplier 10"):
        calibrate_noise(cost=lambda m: 1 / m, target_epsilon=0.01, minimum=0.1, maximum=10.0)


def test_a_failure_inside_the_accountant_is_an_internal_fault_with_its_context():
    def broken(multiplier: float) -> float:
        raise ValueError("discretisation overflow")

    with pytest.raises(AccountingFault) as caught:
        calibrate_noise(cost=broken, target_epsilon=1.0, minimum=0.5, maximum=50.0)
    message = str(caught.value)
    assert "noise multiplier 50" in message and "target epsilon 1" in message
    assert "ValueError: discretisation overflow" in message and "bug of the workbench" in message
