"""A curious coordinator tries to remove the noise: degenerate bounds, subnormal or tiny
noise, huge epsilons. Each is refused before anything is charged or computed, or costs its
honest epsilon; released values stay whole numbers on their grid; no refusal tells a value
of the data. (Issue 13, item 5.)"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from _site_under_attack import (
    PROJECT,
    ask,
    ask_client_app,
    assert_tells_no_data,
    hospitals,  # noqa: F401 (a fixture)
    raw_query,
    refusal_of,
    request,
    site,  # noqa: F401 (a fixture)
)

from federation.analytics.cells import exact_cells
from federation.analytics.disclosure import DisclosureRules
from federation.analytics.errors import NoiseError, QueryError
from federation.analytics.noise import NoisePlan, StatisticNoise, plan_noise
from federation.analytics.query import Query
from federation.analytics.release import Release, make_release
from federation.site import query_answers
from privacy_budgets.mechanisms import event_from_json

UNTOUCHED = ["genesis", "set_cap", "allocate"]


@pytest.fixture
def data_never_read(monkeypatch):
    """Fails the test if the site reads its data file for an analytics answer."""
    reads = []
    monkeypatch.setattr(query_answers, "load_site_data", lambda **kwargs: reads.append(kwargs) or 1 / 0)
    yield reads
    assert reads == [], "the site read its data for a request it should have refused first"


@pytest.mark.parametrize(
    "bounds",
    [
        (0, 5e-324),  # the attack of the issue: sensitivity rounds to 0, noise to 0
        (0, 1e-310),  # subnormal width
        (40, 40 + 1e-12),  # a sliver: below the precision the grid and the noise need
        (1e300, 2e300),  # outside the column's public range [15, 55] altogether
        (55 - 1e-9, 200),  # overlaps the range on a sliver
    ],
)
def test_degenerate_bounds_are_refused_before_anything_is_read_or_charged(site, data_never_read, bounds):
    for kind in ("sum", "mean", "variance"):
        started = time.perf_counter()
        reply = ask(site, raw_query(kind, column="bmi", bounds=list(bounds), epsilon=0.5))
        refused = refusal_of(reply)
        assert refused["kind"] == "invalid"
        assert "bounds" in refused["reason"] and "Fix" in refused["reason"]
        assert_tells_no_data(refused["reason"], site)
        assert time.perf_counter() - started < 2.0
    assert site.ledger_kinds() == UNTOUCHED
    cost = refusal_of(ask(site, raw_query("mean", column="bmi", bounds=list(bounds), epsilon=0.5), kind="query:cost"))
    assert cost["kind"] == "invalid"


@pytest.mark.parametrize("multiplier", [5e-324, 1e-310, 0.0, -1.0, float("nan")])
def test_subnormal_or_zero_noise_is_refused(site, data_never_read, multiplier):
    reply = ask(site, raw_query("count", noise_multiplier=multiplier))
    refused = refusal_of(reply)
    assert refused["kind"] == "invalid" and "noise_multiplier must be a finite number above 0" in refused["reason"]
    assert site.ledger_kinds() == UNTOUCHED


def test_a_tiny_noise_multiplier_is_refused_by_the_sites_floor_before_any_pld_work(site, data_never_read):
    """A noise multiplier of 1e-6 once built a privacy-loss distribution of gigabytes
    before any cap was checked; now the site's floor refuses it at once (query:cost too)."""
    for kind in ("query:count", "query:cost"):
        started = time.perf_counter()
        refused = refusal_of(ask(site, raw_query("count", noise_multiplier=1e-6), kind=kind))
        assert time.perf_counter() - started < 2.0
        assert refused["kind"] == "invalid"
        assert "noise multiplier is at least 0.5 (min_noise_multiplier" in refused["reason"]
        assert "this query states noise_multiplier 1e-06" in refused["reason"]
    assert site.ledger_kinds() == UNTOUCHED


def test_a_huge_epsilon_is_refused_by_the_sites_ceiling(site, data_never_read):
    for kind in ("query:count", "query:cost"):
        started = time.perf_counter()
        refused = refusal_of(ask(site, raw_query("count", epsilon=1e6), kind=kind))
        assert time.perf_counter() - started < 2.0
        assert refused["kind"] == "invalid"
        assert (
            "at most epsilon 5 (max_query_epsilon" in refused["reason"]
            and "asks for epsilon 1e+06" in refused["reason"]
        )
    assert site.ledger_kinds() == UNTOUCHED


def test_narrow_but_sound_bounds_are_answered_and_cost_their_honest_epsilon(site):
    """Bounds of one year are a legitimate (if odd) question: answered with noise on a
    fine grid, charged at the epsilon asked, recorded as the discrete mechanisms that ran."""
    query = Query(kind="sum", column="age", bounds=(60, 61), epsilon=0.5)
    reply = ask_client_app(site, request(query))
    assert "refusal" not in reply.content
    entries = site.requests()
    assert entries[-1]["epsilon_charged"] == pytest.approx(0.5, rel=1e-3)
    assert site.spent() == pytest.approx(0.5, rel=1e-3)
    from privacy_budgets import Ledger

    with Ledger.open(site.site.ledger_path, site_id=site.site.site_id) as ledger:
        commit = [e for e in ledger.entries() if e.kind == "commit"][-1]
    kinds = {type(e).__name__ for e in event_from_json(commit.mechanism).events}
    assert kinds == {"DiscreteGaussianDpEvent"}
    release = Release.from_json(str(reply.content["answer"]["release"]))
    units = release.stats["sum"] / release.grid["sum"]
    assert np.array_equal(units[~np.isnan(units)], np.round(units[~np.isnan(units)]))
    assert release.noise_std["sum"] > 0


def test_the_release_refuses_degenerate_noise_itself_whatever_validation_let_through(hospitals):
    """Defence in depth: make_release checks every scale where the noise is drawn, and
    never calls the sampler with a scale of 0, a subnormal one or a degenerate grid."""
    from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY as dictionary

    frame = hospitals.sites["hospital_01"]
    query = Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.5).check(dictionary=dictionary)
    good = plan_noise(query=query, noise_multiplier=5.0)
    exact = exact_cells(query=query, frame=frame, dictionary=dictionary, grids=good.statistics)
    calls = []

    def sampler(values, *, mechanism, scale):
        calls.append(scale)
        return values

    for scale, step in ((0.0, 1.0), (5e-324, 1.0), (math.inf, 1.0), (2.0, 5e-324), (1e-300, 1e-10)):
        broken = NoisePlan(
            mechanism="gaussian",
            noise_multiplier=5.0,
            statistics={
                "n": StatisticNoise(component=0, sensitivity=1, step=1.0, scale=5.0),
                "sum": StatisticNoise(component=1, sensitivity=77, step=step, scale=scale),
            },
        )
        with pytest.raises(NoiseError):
            make_release(
                query=query,
                exact=exact,
                plan=broken,
                rules=DisclosureRules(min_cell_size=5),
                site_id="s",
                sampler=sampler,
            )
    assert all(s == 5.0 for s in calls)  # only the sound count's scale ever reached a sampler
    with pytest.raises(NoiseError):
        plan_noise(query=query, noise_multiplier=5e-324)


def test_the_notebook_api_refuses_degenerate_bounds_with_the_rule_and_the_fix(tmp_path):
    from workbench import Workbench

    wb = Workbench.simulate(sites=2, rows=200, seed=3, workdir=tmp_path)
    with pytest.raises(QueryError, match=r"bounds must be at least 1e-09 x max\(1, \|low\|, \|high\|\) wide") as err:
        wb.query.sum(column="bmi", bounds=(0, 5e-324), epsilon=0.5)
    assert "width 4.94066e-324" in str(err.value) and "Fix: give the column's public range" in str(err.value)
    with pytest.raises(QueryError, match="noise_multiplier must be a finite number above 0"):
        wb.query.count(noise_multiplier=5e-324)
    wb.allocate(project=PROJECT, epsilon=1.0)
    with pytest.raises(QueryError, match="must overlap the public range of 'bmi'"):
        wb.query_cost([wb.query.mean(column="bmi", bounds=(1e300, 2e300), epsilon=0.5)], project=PROJECT)
