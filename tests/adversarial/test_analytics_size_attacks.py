"""A coordinator picks sizes that make the site spend memory and time, or slice its data
thin: too many bins, strata or quantile probabilities. The site's [analytics] limits
refuse them before any data is read and before any privacy loss is computed, with the
rule, the value and the fix. (Issue 13, item 2, analytics side.)"""

from __future__ import annotations

import numpy as np
import pytest
from _site_under_attack import (
    ask,
    ask_client_app,
    assert_tells_no_data,
    hospitals,  # noqa: F401 (a fixture)
    raw_query,
    refusal_of,
    site,  # noqa: F401 (a fixture)
)

from federation.site import query_answers

UNTOUCHED = ["genesis", "set_cap", "allocate"]


def _edges(low: float, high: float, bins: int) -> list[float]:
    """Public bin edges, as Query.to_json sends them."""
    return [float(e) for e in np.linspace(low, high, bins + 1)]


@pytest.fixture
def nothing_computed(monkeypatch):
    """Fails the test if the site reads its data or calibrates / plans any noise."""
    touched = []
    for name in ("load_site_data", "noise_multiplier", "plan_noise"):
        monkeypatch.setattr(query_answers, name, lambda *a, _name=name, **k: touched.append(_name) or 1 / 0)
    yield touched
    assert touched == [], f"the site did {touched} for a request it should have refused first"


ATTACKS = {
    "bins": (
        raw_query("histogram", column="age", bounds=[18, 95], bins=_edges(18, 95, 300), epsilon=0.2),
        "a grid of at most 200 bins (max_bins",
        "this query has 300",
    ),
    "survival bins": (
        raw_query("survival", bounds=[0, 1825], bins=_edges(0, 1825, 250), epsilon=0.2),
        "a grid of at most 200 bins (max_bins",
        "this query has 250",
    ),
    "probabilities": (
        raw_query(
            "quantiles",
            column="cholesterol",
            bounds=[100, 400],
            probabilities=[i / 40 for i in range(1, 40)],
            epsilon=0.2,
        ),
        "at most 20 quantile probabilities (max_probabilities",
        "this query asks for 39",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_oversized_queries_are_refused_before_data_or_privacy_loss_work(site, nothing_computed, name):
    config, rule, value = ATTACKS[name]
    for kind in (f"query:{config['query-kind']}", "query:cost"):
        refused = refusal_of(ask(site, config, kind=kind))
        assert refused["kind"] == "invalid"
        assert rule in refused["reason"] and value in refused["reason"] and "Fix:" in refused["reason"]
        assert_tells_no_data(refused["reason"], site)
    assert site.ledger_kinds() == UNTOUCHED


def test_too_many_strata_are_refused_with_the_sites_own_limit(site, nothing_computed):
    site.set_policy("max_strata", "10")
    config = raw_query("count", by=["admission_type", "sex", "smoker", "diabetes"], epsilon=0.2)
    refused = refusal_of(ask_client_app(site, config))
    assert refused["kind"] == "invalid"
    assert (
        "at most 10 strata" in refused["reason"]
        and "makes 24 (by admission_type, sex, smoker, diabetes)" in (refused["reason"])
    )
    assert site.ledger_kinds() == UNTOUCHED


def test_a_site_may_tighten_every_limit_in_its_node_toml(site, nothing_computed):
    site.set_policy("max_bins", "12")
    site.set_policy("max_query_epsilon", "0.5")
    site.set_policy("min_noise_multiplier", "4")
    for config, words in (
        (
            raw_query("histogram", column="age", bounds=[18, 95], bins=_edges(18, 95, 13), epsilon=0.2),
            "at most 12 bins",
        ),
        (raw_query("count", epsilon=0.6), "at most epsilon 0.5"),
        (raw_query("count", noise_multiplier=3.9), "noise multiplier is at least 4"),
    ):
        refused = refusal_of(ask(site, config))
        assert refused["kind"] == "invalid" and words in refused["reason"]
    assert site.ledger_kinds() == UNTOUCHED


def test_a_site_policy_above_the_hard_bin_limit_is_refused_when_read(site):
    from federation.site.config import NodeConfigError, load_node_config

    site.set_policy("max_bins", "501")
    with pytest.raises(NodeConfigError, match=r"\[analytics\] max_bins must be at most 500"):
        load_node_config(site.toml)


def test_a_malformed_query_is_a_policy_refusal_not_a_crash(site, nothing_computed):
    refused = refusal_of(ask(site, raw_query("histogram", column="age", bounds=[18, 95], bins=300, epsilon=0.2)))
    assert refused["kind"] == "invalid" and "bins travels as a list" in refused["reason"]


def test_within_the_limits_the_query_is_answered(site):
    config = raw_query("histogram", column="age", bounds=[18, 95], bins=_edges(18, 95, 200), epsilon=0.2)
    assert "refusal" not in ask(site, config).content
    assert site.ledger_kinds()[-2:] == ["reserve", "commit"]
