"""DP range finding: coarse public-grid edges, robust to noise, honest about cost."""

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent, SelfComposedDpEvent
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.pld.privacy_loss_distribution import from_discrete_gaussian_mechanism

from federation.analytics.ranges import GRID, noisy_range, range_event, range_noise, union_ranges
from privacy_budgets.mechanisms import DiscreteGaussianDpEvent


def _seeded(rng: np.random.Generator):
    """A reproducible stand-in for the secure sampler (the product's noise is OpenDP's)."""

    def sample(counts, *, mechanism, scale):
        assert mechanism == "gaussian"
        return counts + np.rint(rng.normal(0.0, scale, size=counts.shape)).astype(np.int64)

    return sample


def test_the_noise_costs_the_requested_epsilon_for_all_columns_together():
    std = range_noise(epsilon=0.2, delta=1e-5, n_columns=4)
    event = range_event(noise_std=std, n_columns=4)
    # one discrete Gaussian histogram per column, each of sensitivity 1
    assert event == SelfComposedDpEvent(event=DiscreteGaussianDpEvent(sigma=std, sensitivity=1), count=4)
    # independently: dp_accounting's own discrete Gaussian PLD, composed four times
    one = from_discrete_gaussian_mechanism(sigma=std, sensitivity=1, value_discretization_interval=1e-4)
    assert one.self_compose(4).get_epsilon_for_delta(1e-5) == pytest.approx(0.2, rel=0.01)
    # and about what a continuous Gaussian of sensitivity sqrt(4) = 2 would cost
    accountant = PLDAccountant()
    accountant.compose(GaussianDpEvent(std / 2))
    assert accountant.get_epsilon(1e-5) == pytest.approx(0.2, rel=0.05)


def test_ranges_are_grid_edges_that_cover_the_bulk_of_the_data():
    rng = np.random.default_rng(0)
    std = range_noise(epsilon=0.1, delta=1e-5, n_columns=6)
    for _ in range(50):
        low, high = noisy_range(values=rng.normal(60, 12, 4000), noise_std=std, sampler=_seeded(rng))
        assert low in GRID and high in GRID
        assert low <= 50 and 100 <= high <= 200


def test_an_empty_far_bin_pushed_over_the_threshold_does_not_stretch_the_range():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(300):
        low, high = noisy_range(values=rng.normal(60, 12, 6000), noise_std=75.0, sampler=_seeded(rng))
        hits += (low, high) != (20.0, 100.0)
    assert hits == 0


def test_too_few_records_give_no_range_rather_than_a_guess():
    rng = np.random.default_rng(2)
    assert noisy_range(values=rng.normal(60, 12, 30), noise_std=75.0, sampler=_seeded(rng)) is None


def test_sites_ranges_combine_to_their_union():
    assert union_ranges([{"age": [20.0, 100.0], "bmi": None}, {"age": [10.0, 50.0], "bmi": [10.0, 50.0]}]) == {
        "age": (10.0, 100.0),
        "bmi": (10.0, 50.0),
    }
