"""Each query is charged at the site as the DpEvent of the noise it added (discrete
mechanisms on the integers); the ledger's epsilon for a sequence of queries equals an
independent composition with dp_accounting's PLD library, and stays below a zCDP bound."""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest
from _analytics_helpers import DELTA, PROJECT
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.analytics.cache import ReleaseCache
from federation.analytics.cells import COMPONENTS, statistics
from federation.analytics.query import Query
from federation.errors import Refused
from federation.protocol.query_request import QueryRequest
from federation.site.query_answers import answer_query
from privacy_budgets import Ledger
from privacy_budgets.mechanisms import DiscreteGaussianDpEvent, event_from_json

# (query, how many noisy statistics it releases: its components)
SEQUENCE = [
    (Query(kind="count", by=("admission_type",), epsilon=0.2), 1),
    (Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.3), 2),
    (Query(kind="variance", column="bmi", bounds=(15, 55), epsilon=0.3), 3),
    (Query(kind="sum", column="cholesterol", bounds=(100, 400), noise_multiplier=20.0), 2),
    (Query(kind="histogram", column="admission_type", epsilon=0.5, mechanism="laplace"), 1),
    (Query(kind="crosstab", columns=("sex", "diabetes"), noise_multiplier=8.0, mechanism="laplace"), 1),
    (Query(kind="quantiles", column="age", bounds=(18, 95), epsilon=0.25), 1),
    (Query(kind="survival", bounds=(0, 1825), bins=12, epsilon=0.4), 1),
]


def _independent_pld(query: Query, release, multiplier: float) -> pld_lib.PrivacyLossDistribution:
    """From the theory and what the release states it drew, not from the ledger's code:
    one discrete mechanism per component, noise multiplier x its whole sensitivity, built
    with dp_accounting's PLD library directly and composed in the query's own order."""
    parts = {}
    for name, (component, real) in statistics(query).items():
        step, scale = release.grid[name], release.noise_scale[name]
        assert math.log2(step).is_integer(), "a grid step is a power of two"
        sensitivity = 1 if real is None else math.ceil(real / step)
        assert scale == multiplier * sensitivity  # the noise is scaled to the whole sensitivity
        if query.mechanism == "laplace":
            parts[component] = pld_lib.from_discrete_laplace_mechanism(
                parameter=1 / scale, sensitivity=sensitivity, value_discretization_interval=1e-3
            )
        else:
            parts[component] = pld_lib.from_discrete_gaussian_mechanism(
                sigma=scale, sensitivity=sensitivity, value_discretization_interval=1e-3
            )
    composed = parts[0]
    for component in sorted(parts)[1:]:
        composed = composed.compose(parts[component])
    return composed


def _zcdp_bound(query: Query, release, multiplier: float) -> float:
    """A looser, independent bound: each discrete Gaussian is (1 / (2 m^2))-zCDP
    (Canonne, Kamath and Steinke 2020), a discrete Laplace (1 / m)-DP hence (1 / (2 m^2))-zCDP;
    rho adds up, and rho-zCDP gives epsilon = rho + 2 sqrt(rho log(1 / delta))."""
    rho = COMPONENTS[query.kind] / (2 * multiplier**2)
    return rho + 2 * math.sqrt(rho * math.log(1 / DELTA))


# The ledger composes the same PLDs in its canonical order from the identity; a different
# order rounds differently. The two agree to the discretisation's error.
PLD_RTOL = 1e-3


def test_the_ledger_total_equals_an_independent_composition(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_02"])
    independent = pld_lib.identity(value_discretization_interval=1e-3)
    bound = 0.0
    for query, components in SEQUENCE:
        answer = answer_query(request=QueryRequest(query=query, project=PROJECT), site=site)
        assert not answer.replay and COMPONENTS[query.kind] == components
        checked = query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
        alone = _independent_pld(checked, answer.release, answer.noise_multiplier)
        independent = independent.compose(alone)
        bound += _zcdp_bound(checked, answer.release, answer.noise_multiplier)
        assert answer.epsilon == pytest.approx(alone.get_epsilon_for_delta(DELTA), rel=PLD_RTOL)
        if query.epsilon is not None:  # calibrated at the site: at most what was asked, and close to it
            ceiling = query.epsilon
            assert answer.epsilon <= ceiling * (1 + 1e-9)
            assert answer.epsilon >= 0.99 * ceiling
            if query.mechanism == "laplace":  # pure DP: scale about components / epsilon
                assert answer.noise_multiplier == pytest.approx(components / ceiling, rel=0.01)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        spent = ledger.spent(dataset=site.dataset, project=PROJECT)
        assert ledger.verify(deep=True).ok
    assert spent == pytest.approx(independent.get_epsilon_for_delta(DELTA), rel=PLD_RTOL)
    assert spent < bound  # PLD is the tighter of the two


def test_each_charge_names_the_query_and_the_mechanism_that_ran(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    query = Query(kind="mean", column="age", bounds=(18, 95), where={"sex": 1}, epsilon=0.3)
    answer = answer_query(request=QueryRequest(query=query, project=PROJECT, actor="analyst", run_id="r1"), site=site)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        commit = [e for e in ledger.entries() if e.kind == "commit"][-1]
    assert commit.query_id == query.query_id and commit.run_id == "r1" and commit.actor == "analyst"
    assert commit.purpose.startswith("analytics: mean of age (clipped to [18, 95]) where sex == 1")
    m, sum_grid = answer.noise_multiplier, answer.release.grid["sum"]
    sensitivity = math.ceil(38.5 / sum_grid)
    # The discrete mechanisms that ran, never the continuous Gaussian (which would under-charge).
    assert event_from_json(commit.mechanism) == dpa.ComposedDpEvent(
        [
            DiscreteGaussianDpEvent(sigma=m, sensitivity=1),
            DiscreteGaussianDpEvent(sigma=m * sensitivity, sensitivity=sensitivity),
        ]
    )
    assert answer.receipts[0]["entry_hash"] == commit.entry_hash


def test_noise_scales_with_the_sensitivity_each_statistic_has(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    query = Query(kind="variance", column="age", bounds=(18, 95), noise_multiplier=3.0)
    answer = answer_query(request=QueryRequest(query=query, project=PROJECT), site=site)
    half = (95 - 18) / 2
    grid = answer.release.grid
    # noise of 3 x the whole sensitivity in steps of the grid: 3 x the real sensitivity,
    # rounded up to the grid (a discrete Gaussian's parameter bounds its deviation)
    expected = {"n": 3.0, "sum": 3.0 * math.ceil(half / grid["sum"]) * grid["sum"]}
    expected["sumsq"] = 3.0 * math.ceil(half**2 / grid["sumsq"]) * grid["sumsq"]
    assert answer.release.noise_std == pytest.approx(expected)
    assert expected["sum"] == pytest.approx(3.0 * half, rel=2 / 512)
    laplace = answer_query(
        request=QueryRequest(query=Query(kind="count", noise_multiplier=3.0, mechanism="laplace"), project=PROJECT),
        site=site,
    )
    p = math.exp(-1 / 3)  # discrete Laplace of scale 3: variance 2p / (1 - p)^2
    assert laplace.release.noise_std == pytest.approx({"n": math.sqrt(2 * p) / (1 - p)})


def test_a_query_beyond_the_allocation_is_refused_and_releases_nothing(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"], allocation=0.5)
    answer_query(request=QueryRequest(query=Query(kind="count", epsilon=0.4), project=PROJECT), site=site)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        before = ledger.spent(dataset=site.dataset, project=PROJECT), len(ledger.entries())
    request = QueryRequest(query=Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.4), project=PROJECT)
    with pytest.raises(Refused, match="would exceed the project allocation") as refused:
        answer_query(request=request, site=site)
    assert refused.value.kind == "budget"
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        assert (ledger.spent(dataset=site.dataset, project=PROJECT), len(ledger.entries())) == before
    with ReleaseCache(site.analytics_cache_dir) as cache:
        assert len(cache._cache) == 2  # the data version and the one answer released


def test_a_project_without_an_allocation_is_refused(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"], allocation=0)
    with pytest.raises(Refused, match="has no allocation") as refused:
        answer_query(request=QueryRequest(query=Query(kind="count", epsilon=0.1), project=PROJECT), site=site)
    assert refused.value.kind == "budget"
