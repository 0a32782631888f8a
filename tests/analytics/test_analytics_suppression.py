"""Small groups are suppressed (never shown as zero), decided on noisy counts; a floor
on true counts is declared in the ledger; rules come from the site and never go below 3."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _analytics_helpers import PROJECT, released

from federation.analytics.disclosure import DisclosureRuleError, DisclosureRules, rules_for
from federation.analytics.estimates import answer_frame, estimate
from federation.analytics.query import Query
from federation.errors import Refused
from federation.protocol.query_request import QueryRequest
from federation.site.config import disclosure_rules
from federation.site.query_answers import answer_query
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger
from privacy_budgets.statements import statement
from workbench import Workbench

NEARLY_EXACT = 1e-3  # noise of a thousandth of a patient: the noisy count is the true count, rounded


def _with_transfers(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The frame with exactly ``n`` transfer admissions (the others become elective)."""
    frame = frame.copy()
    transfers = np.flatnonzero((frame["admission_type"] == "transfer").to_numpy())
    frame.loc[frame.index[transfers[n:]], "admission_type"] = "elective"
    return frame


def test_a_small_cell_is_suppressed_and_marked_never_zero(hospitals):
    frame = _with_transfers(hospitals.sites["hospital_01"], 2)
    query = Query(kind="histogram", column="admission_type", noise_multiplier=NEARLY_EXACT)
    release = released(query, frame, noise_multiplier=NEARLY_EXACT, rng=np.random.default_rng(1))
    sent = json.loads(release.to_text())
    assert sent["stats"]["n"][0][2] is None  # not sent at all
    assert sent["suppressed"][0] == [False, False, True]
    answer = estimate(query=query.check(dictionary=hospitals.dictionary), release=release)
    transfer = answer[answer["admission_type"] == "transfer"].iloc[0]
    assert transfer["suppressed"] and np.isnan(transfer["estimate"]) and transfer["estimate"] != 0
    assert transfer["note"] == "cell suppressed: noisy count below 5"
    # a share over a total missing a cell would mislead: none is given for that stratum
    assert answer["proportion"].isna().all()
    assert not answer.loc[answer["admission_type"] != "transfer", "suppressed"].any()


def test_a_stratum_that_would_expose_a_small_group_is_not_answered(hospitals):
    frame = _with_transfers(hospitals.sites["hospital_01"], 3)
    query = Query(kind="mean", column="age", bounds=(18, 95), by=("admission_type",), noise_multiplier=NEARLY_EXACT)
    release = released(query, frame, noise_multiplier=NEARLY_EXACT, rng=np.random.default_rng(2))
    sent = json.loads(release.to_text())
    transfer = release.strata.index(("transfer",))
    assert sent["stratum_suppressed"][transfer] is True
    assert sent["stats"]["n"][transfer] == [None] and sent["stats"]["sum"][transfer] == [None]
    answer = estimate(query=query.check(dictionary=hospitals.dictionary), release=release)
    row = answer[answer["admission_type"] == "transfer"].iloc[0]
    assert row["suppressed"] and np.isnan(row["estimate"]) and np.isnan(row["n"])
    assert row["note"] == "stratum suppressed: noisy count below 5"
    others = answer[answer["admission_type"] != "transfer"]
    assert not others["suppressed"].any() and others["estimate"].notna().all()


def test_the_decision_reads_the_noisy_count_not_the_true_one(hospitals):
    """With 4 true transfers and discrete Gaussian noise of parameter 2, the noisy count
    clears 5 in P(X >= 1) = 40% of releases: the decision follows the noise, so it is
    inside DP."""
    frame = _with_transfers(hospitals.sites["hospital_01"], 4)
    query = Query(kind="count", by=("admission_type",), noise_multiplier=2.0)
    rng = np.random.default_rng(3)
    shown = [not released(query, frame, noise_multiplier=2.0, rng=rng).suppressed[2, 0] for _ in range(600)]
    weights = np.exp(-(np.arange(-40, 41) ** 2) / 8.0)
    expected = weights[41:].sum() / weights.sum()  # P(X >= 1) of the discrete Gaussian
    assert expected == pytest.approx(0.40, abs=0.01)
    assert expected - 0.06 < np.mean(shown) < expected + 0.06


def test_a_true_count_floor_suppresses_what_noise_lifted_and_the_ledger_declares_it(hospitals, make_site):
    frame = _with_transfers(hospitals.sites["hospital_01"], 2)
    query = Query(kind="count", by=("admission_type",), noise_multiplier=30.0)
    rules = DisclosureRules(min_cell_size=5, true_count_floor=3)
    rng = np.random.default_rng(4)
    assert all(released(query, frame, noise_multiplier=30.0, rng=rng, rules=rules).suppressed[2, 0] for _ in range(50))

    site = make_site(frame, true_count_floor=3)
    answer = answer_query(request=QueryRequest(query=query, project=PROJECT), site=site)
    assert [r["kind"] for r in answer.receipts] == ["commit", "uncovered"]
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        uncovered = [e for e in ledger.entries() if e.kind == "uncovered"]
        status = ledger.status()
    assert len(uncovered) == 1
    assert uncovered[0].details["query_id"] == query.query_id
    assert uncovered[0].project == PROJECT
    assert statement(uncovered[0]).startswith("Released WITHOUT a differential privacy guarantee")
    assert "fewer than 3 records (true counts)" in statement(uncovered[0])
    assert status.loc[status["project"] == PROJECT, "uncovered_releases"].item() == 1


def test_quantiles_in_a_thin_tail_are_suppressed(hospitals):
    """Edges with fewer than 5 records below (or above) them are not released, so a
    quantile that falls there is not answered; one inside a released bin is."""
    query = Query(
        kind="quantiles",
        column="cholesterol",
        bounds=(0, 1000),
        bins=100,
        probabilities=(0.001, 0.5),
        noise_multiplier=NEARLY_EXACT,
    )
    answer = estimate(
        query=query.check(dictionary=hospitals.dictionary),
        release=released(
            query, hospitals.sites["hospital_01"], noise_multiplier=NEARLY_EXACT, rng=np.random.default_rng(5)
        ),
    )
    tail, median = answer.iloc[0], answer.iloc[1]
    assert tail["suppressed"] and np.isnan(tail["estimate"]) and "tail" in tail["note"]
    assert not median["suppressed"]


def test_a_survival_curve_stops_where_the_risk_set_gets_small(hospitals):
    frame = hospitals.sites["hospital_01"].iloc[:40]
    query = Query(kind="survival", bounds=(0, 1825), bins=20, noise_multiplier=NEARLY_EXACT)
    release = released(
        query,
        frame,
        noise_multiplier=NEARLY_EXACT,
        rng=np.random.default_rng(6),
        rules=DisclosureRules(min_cell_size=30),
    )
    mask = release.suppressed[0]
    assert mask.any() and not mask[0]
    first = int(np.argmax(mask))
    assert mask[first:].all(), "once suppressed, every later bin is"
    assert (release.stats["at_risk"][0, :first] >= 30).all()


def test_a_pooled_cell_is_suppressed_when_a_site_suppressed_its_part(hospitals):
    query = Query(kind="count", by=("admission_type",), noise_multiplier=NEARLY_EXACT)
    small = released(
        query,
        _with_transfers(hospitals.sites["hospital_01"], 1),
        noise_multiplier=NEARLY_EXACT,
        rng=np.random.default_rng(7),
        site_id="hospital_01",
    )
    large = released(
        query,
        hospitals.sites["hospital_02"],
        noise_multiplier=NEARLY_EXACT,
        rng=np.random.default_rng(8),
        site_id="hospital_02",
    )
    frame = answer_frame(query=query.check(dictionary=hospitals.dictionary), releases=[small, large])
    pooled = frame[(frame["site"] == "pooled") & (frame["admission_type"] == "transfer")].iloc[0]
    assert pooled["suppressed"] and np.isnan(pooled["estimate"])
    assert pooled["note"] == "suppressed at hospital_01"
    shown = frame[(frame["site"] == "hospital_02") & (frame["admission_type"] == "transfer")].iloc[0]
    assert not shown["suppressed"]


# --- where the rules come from ----------------------------------------------------------


def test_the_minimum_is_the_sites_and_a_query_may_only_raise_it(tmp_path):
    def site(**rules):
        return SiteConfig(
            site_id="s", data_path=tmp_path / "s.csv", state_dir=tmp_path, dictionary_path=tmp_path, **rules
        )

    assert disclosure_rules(site=site()).min_cell_size == 5  # the policy's default
    assert disclosure_rules(site=site(min_cell_size=10), query_min=3).min_cell_size == 10
    assert disclosure_rules(site=site(min_cell_size=10), query_min=25).min_cell_size == 25
    assert rules_for(site_min=10, site_floor=None, query_min=25).min_cell_size == 25
    with pytest.raises(DisclosureRuleError, match=r"at least 3; got 2\. Set min-cell-size to 3 or more"):
        disclosure_rules(site=site(min_cell_size=2), query_min=50)


def test_a_site_reads_its_rules_from_its_node_config(tmp_path):
    config = {
        "site-id": "h1",
        "data-path": str(tmp_path / "h1.csv"),
        "state-dir": str(tmp_path / "state"),
        "min-cell-size": "10",
        "true-count-floor": 3,
    }
    site = SiteConfig.from_node_config(config)
    assert (site.min_cell_size, site.true_count_floor) == (10, 3)
    assert SiteConfig.from_json(site.to_json()) == site
    default = SiteConfig.from_node_config({k: v for k, v in config.items() if "-count" not in k and "cell" not in k})
    assert (default.min_cell_size, default.true_count_floor) == (None, None)
    with pytest.raises(ValueError, match="min-cell-size must be a whole number; got 'ten'"):
        SiteConfig.from_node_config({**config, "min-cell-size": "ten"})


def test_a_site_configured_below_three_refuses_every_query(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"], min_cell_size=2)
    with pytest.raises(Refused, match="misconfigured: A site's minimum cell size is a whole number of at least 3"):
        answer_query(request=QueryRequest(query=Query(kind="count", epsilon=0.1), project=PROJECT), site=site)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        assert ledger.spent(dataset=site.dataset) == 0.0


def test_a_simulation_refuses_rules_below_the_limit_before_anything_runs(tmp_path):
    with pytest.raises(DisclosureRuleError, match="got 1"):
        Workbench.simulate(sites=2, rows=50, workdir=tmp_path, min_cell_size={"hospital_02": 1})
