"""The site's noise: drawn by OpenDP on the integers, of the scale the ledger records, never
degenerate; every released value is a whole number of its grid's steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _analytics_helpers import PROJECT, no_noise

from federation.analytics import secure_noise
from federation.analytics.errors import NoiseError
from federation.analytics.noise import GRID_NOISE_STEPS, noise_std, plan_noise, secure_noisy_sum
from federation.analytics.query import Query
from federation.analytics.secure_noise import add_secure_noise, noise_event, secure_noisy_counts
from federation.protocol.query_request import QueryRequest
from federation.site.query_answers import answer_query
from privacy_budgets.mechanisms import DiscreteGaussianDpEvent

DRAWS = 4000  # about 0.2 s of OpenDP sampling; the checks below are loose at this size


def _exact_discrete_gaussian_std(sigma: float) -> float:
    x = np.arange(-int(15 * sigma) - 2, int(15 * sigma) + 3)
    w = np.exp(-(x**2) / (2 * sigma**2))
    return float(np.sqrt((w * x**2).sum() / w.sum()))


@pytest.mark.parametrize(("mechanism", "scale"), [("gaussian", 3.0), ("gaussian", 40.0), ("laplace", 2.0)])
def test_the_samplers_spread_matches_its_scale(mechanism, scale):
    noisy = add_secure_noise(np.full(DRAWS, 1000, dtype=np.int64), mechanism=mechanism, scale=scale)
    noise = noisy - 1000
    assert noise.dtype == np.int64
    expected = (
        _exact_discrete_gaussian_std(scale) if mechanism == "gaussian" else noise_std(mechanism=mechanism, scale=scale)
    )
    assert noise.std() == pytest.approx(expected, rel=0.08)
    assert abs(noise.mean()) < 4 * expected / math.sqrt(DRAWS)
    if mechanism == "gaussian":  # the share at 0 is the discrete Gaussian's, 1 / sum exp(-x^2 / 2 s^2)
        x = np.arange(-200, 201)
        p0 = 1 / np.exp(-(x**2) / (2 * scale**2)).sum()
        assert (noise == 0).mean() == pytest.approx(p0, abs=4 * math.sqrt(p0 * (1 - p0) / DRAWS))
    else:
        p = math.exp(-1 / scale)  # discrete Laplace: P(0) = (1 - p) / (1 + p)
        p0 = (1 - p) / (1 + p)
        assert (noise == 0).mean() == pytest.approx(p0, abs=4 * math.sqrt(p0 * (1 - p0) / DRAWS))


@pytest.mark.parametrize("scale", [0.0, -2.0, 5e-324, 1e-310, math.inf, math.nan, 2.0**60])
def test_a_degenerate_scale_draws_nothing(scale):
    for mechanism in ("gaussian", "laplace"):
        with pytest.raises(NoiseError, match="noise scale"):
            add_secure_noise(np.array([5, 6]), mechanism=mechanism, scale=scale)
        with pytest.raises(NoiseError):
            secure_noisy_counts(np.array([5, 6]), noise_multiplier=scale, mechanism=mechanism)


def test_only_whole_numbers_get_noise():
    with pytest.raises(NoiseError, match="whole numbers"):
        add_secure_noise(np.array([1.5, 2.0]), mechanism="gaussian", scale=3.0)
    with pytest.raises(NoiseError, match="beyond"):
        add_secure_noise(np.array([2**60]), mechanism="gaussian", scale=3.0)


def test_noisy_counts_come_with_the_exact_event_of_their_release():
    noisy, event = secure_noisy_counts(np.array([[120, 7], [0, 3]]), noise_multiplier=4.0)
    assert noisy.shape == (2, 2) and noisy.dtype == np.int64
    assert event == DiscreteGaussianDpEvent(sigma=4.0, sensitivity=1)
    _, laplace = secure_noisy_counts(np.array([1]), noise_multiplier=4.0, mechanism="laplace")
    assert laplace == noise_event(mechanism="laplace", scale=4.0)


def test_a_noisy_clipped_sum_comes_with_the_exact_event_of_its_release():
    """For a study's noisy loss sum: values clipped, added on the grid, one discrete event."""
    values = np.array([0.2, 0.7, 3.5, 1.0, -2.0])  # clipped to [0, 2]: 0.2 + 0.7 + 2 + 1 + 0
    step = 2.0 ** math.ceil(math.log2(2.0 * 5.0 / GRID_NOISE_STEPS))  # the grid's rule: 2^-6 here
    exact, event = secure_noisy_sum(values, low=0.0, high=2.0, noise_multiplier=5.0, sampler=no_noise)
    assert exact == pytest.approx(3.9, abs=len(values) * step / 2)  # each value within half a step
    assert isinstance(event, DiscreteGaussianDpEvent) and event.sigma == 5.0 * event.sensitivity
    assert event.sensitivity == 2.0 / step  # the whole sensitivity covers the largest value
    noisy, again = secure_noisy_sum(values, low=0.0, high=2.0, noise_multiplier=5.0)
    assert again == event and (noisy / step).is_integer()
    with pytest.raises(NoiseError):
        secure_noisy_sum(values, low=0.0, high=2.0, noise_multiplier=5e-324)


def test_opendps_own_privacy_map_agrees_with_what_the_ledger_records():
    """OpenDP parameterises its integer samplers as the ledger reads them: the discrete
    Gaussian of scale s is (d^2 / 2 s^2)-zCDP, the discrete Laplace of scale s (d / s)-DP."""
    gaussian = secure_noise._measurement("gaussian", 6.0)
    assert gaussian.map(3) == pytest.approx(9 / (2 * 36))
    laplace = secure_noise._measurement("laplace", 6.0)
    assert laplace.map(3) == pytest.approx(3 / 6)


def test_every_released_value_is_a_whole_number_of_its_grid(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_02"])
    for query in (
        Query(kind="mean", column="bmi", bounds=(15, 55), by=("sex",), epsilon=0.4),
        Query(kind="variance", column="systolic_bp", bounds=(80, 220), epsilon=0.5),
        Query(kind="sum", column="cholesterol", bounds=(100, 400), epsilon=0.3, mechanism="laplace"),
        Query(kind="histogram", column="age", bounds=(18, 95), bins=7, epsilon=0.3),
        Query(kind="survival", bounds=(0, 1825), bins=6, epsilon=0.5),
    ):
        answer = answer_query(request=QueryRequest(query=query, project=PROJECT), site=site)
        release = answer.release
        for name, values in release.stats.items():
            step = release.grid.get(name, 1.0)  # derived counts (at risk, below) are sums of counts
            units = values[~np.isnan(values)] / step
            assert np.array_equal(units, np.round(units)), (query.kind, name)
        for name, step in release.grid.items():
            assert math.log2(step).is_integer()  # a power of two: whole multiples are exact floats
            scale = release.noise_scale[name]
            assert scale == pytest.approx(answer.noise_multiplier * round(scale / answer.noise_multiplier))
            if step != 1.0:  # a real sum: its noise spans between half the grid's target and the target
                assert GRID_NOISE_STEPS / 2 < scale <= GRID_NOISE_STEPS + answer.noise_multiplier


def test_the_grid_is_a_power_of_two_below_the_noise():
    query = Query(kind="mean", column="age", bounds=(18, 95), noise_multiplier=10.0)
    plan = plan_noise(query=query, noise_multiplier=10.0)
    total = plan.statistics["sum"]
    assert total.step == 0.5 and total.sensitivity == 77 and total.scale == 770.0
    # one value's rounding (half a step) is below 1/1000 of the noise's deviation
    assert total.step / 2 < total.scale * total.step / 1000
