"""Each query is charged at the site as the DpEvent of the noise it added; the ledger's
epsilon for a sequence of queries equals an independent dp_accounting composition."""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest
from _analytics_helpers import DELTA, PROJECT
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

from federation.analytics.cache import ReleaseCache
from federation.analytics.query import Query
from federation.errors import Refused
from federation.protocol.query_request import QueryRequest
from federation.site.query_answers import answer_query
from privacy_budgets import Ledger
from privacy_budgets.mechanisms import event_from_json

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


def _independent_event(query: Query, multiplier: float, components: int) -> dpa.DpEvent:
    """From the theory, not from the code under test: `components` noisy statistics, each
    with noise multiplier x its own sensitivity."""
    leaf = dpa.LaplaceDpEvent(multiplier) if query.mechanism == "laplace" else dpa.GaussianDpEvent(multiplier)
    return dpa.ComposedDpEvent([leaf] * components)


# Composing k Gaussians one by one rounds the PLD k times; the ledger folds them into one
# Gaussian of multiplier m / sqrt(k) (exact). The two agree to the discretisation's error.
PLD_RTOL = 1e-4


def test_the_ledger_total_equals_an_independent_composition(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_02"])
    independent, rdp = PLDAccountant(value_discretization_interval=1e-3), RdpAccountant()
    for query, components in SEQUENCE:
        answer = answer_query(request=QueryRequest(query=query, project=PROJECT), site=site)
        assert not answer.replay
        event = _independent_event(query, answer.noise_multiplier, components)
        independent.compose(event)
        rdp.compose(event)
        alone = PLDAccountant(value_discretization_interval=1e-3).compose(event).get_epsilon(DELTA)
        assert answer.epsilon == pytest.approx(alone, rel=PLD_RTOL)
        if query.epsilon is not None:  # calibrated at the site: at most what was asked, and close to it
            ceiling = query.epsilon
            assert answer.epsilon <= ceiling * (1 + 1e-9)
            if query.mechanism == "gaussian":
                assert answer.epsilon >= 0.999 * ceiling
            else:  # Laplace: pure epsilon-DP with scale components / epsilon
                assert answer.noise_multiplier == pytest.approx(components / ceiling)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        spent = ledger.spent(dataset=site.dataset, project=PROJECT)
        spent_rdp = ledger.spent(dataset=site.dataset, project=PROJECT, accountant="rdp")
        assert ledger.verify(deep=True).ok
    assert spent == pytest.approx(independent.get_epsilon(DELTA), rel=PLD_RTOL)
    assert spent_rdp == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-6)
    assert spent < spent_rdp  # PLD is the tighter of the two


def test_each_charge_names_the_query_and_the_mechanism_that_ran(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    query = Query(kind="mean", column="age", bounds=(18, 95), where={"sex": 1}, epsilon=0.3)
    answer = answer_query(request=QueryRequest(query=query, project=PROJECT, actor="analyst", run_id="r1"), site=site)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        commit = [e for e in ledger.entries() if e.kind == "commit"][-1]
    assert commit.query_id == query.query_id and commit.run_id == "r1" and commit.actor == "analyst"
    assert commit.purpose.startswith("analytics: mean of age (clipped to [18, 95]) where sex == 1")
    assert event_from_json(commit.mechanism) == dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(answer.noise_multiplier), 2)
    assert answer.receipts[0]["entry_hash"] == commit.entry_hash


def test_noise_scales_with_the_sensitivity_each_statistic_has(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    query = Query(kind="variance", column="age", bounds=(18, 95), noise_multiplier=3.0)
    answer = answer_query(request=QueryRequest(query=query, project=PROJECT), site=site)
    half = (95 - 18) / 2
    assert answer.release.noise_std == pytest.approx({"n": 3.0, "sum": 3.0 * half, "sumsq": 3.0 * half**2})
    laplace = answer_query(
        request=QueryRequest(query=Query(kind="count", noise_multiplier=3.0, mechanism="laplace"), project=PROJECT),
        site=site,
    )
    assert laplace.release.noise_std == pytest.approx({"n": 3.0 * math.sqrt(2)})


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
