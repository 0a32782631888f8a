"""Bad queries get clear errors (the rule, the bad value, the fix) before anything runs,
and a site refuses them too, before reading data or spending budget."""

from __future__ import annotations

import json

import pytest
from _analytics_helpers import PROJECT, received

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.analytics.errors import QueryError
from federation.analytics.query import Query
from federation.errors import Refused
from federation.protocol.query_request import QueryRequest
from federation.site.query_answers import answer_query
from federation.site.tasks import serve
from privacy_budgets import Ledger
from workbench.analytics import QueryBuilder

query = QueryBuilder(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)


def test_an_unknown_column_names_the_known_ones():
    with pytest.raises(
        QueryError,
        match=r"Unknown column 'agee' in the mean: the data dictionary "
        r"'synthetic_hospitals' has age, sex, .*Check the spelling",
    ):
        query.mean(column="agee", bounds=(18, 95), epsilon=0.1)
    with pytest.raises(QueryError, match="Unknown column 'ward' in the by"):
        query.count(by="ward", epsilon=0.1)
    with pytest.raises(QueryError, match="Unknown column 'bp' in the filter"):
        query.count(where={"bp": (">", 140)}, epsilon=0.1)


def test_a_mean_without_bounds_says_why_and_suggests_the_public_range():
    with pytest.raises(
        QueryError,
        match=r"A mean of 'age' needs bounds=\(low, high\): values are clipped to "
        r"them .* never read from the data\. The data dictionary gives age the "
        r"public range \[18, 95\]: pass bounds=\(18, 95\)",
    ):
        query.mean(column="age", epsilon=0.1)
    for make in (query.sum, query.variance, query.quantiles):
        with pytest.raises(QueryError, match="needs bounds"):
            make(column="bmi", epsilon=0.1)
    with pytest.raises(QueryError, match="A survival of 'followup_days' needs bounds"):
        query.survival(epsilon=0.1)


@pytest.mark.parametrize("bad", [-0.5, 0, float("nan"), float("inf")])
def test_a_negative_or_zero_epsilon_is_refused(bad):
    with pytest.raises(
        QueryError,
        match=r"epsilon must be a finite number above 0; got .*Privacy loss cannot "
        r"be negative or zero: e\.g\. epsilon=0\.5",
    ):
        query.count(epsilon=bad)


def test_privacy_is_stated_exactly_once():
    with pytest.raises(QueryError, match="exactly one of epsilon= .* or noise_multiplier=.*got neither"):
        query.count()
    with pytest.raises(QueryError, match="got both"):
        query.count(epsilon=0.1, noise_multiplier=5.0)
    with pytest.raises(QueryError, match="noise_multiplier must be a finite number above 0; got -1"):
        query.count(noise_multiplier=-1)


@pytest.mark.parametrize(
    "where, message",
    [
        ({"age": (">", 200)}, r"The filter age > 200 selects nobody: the data dictionary says age lies in \[18, 95\]"),
        (
            {"admission_type": "walk-in"},
            r"The filter admission_type == 'walk-in' selects nobody: 'walk-in' is not a value of admission_type, "
            r"whose values are \{elective, emergency, transfer\}",
        ),
        ([("age", ">", 70), ("age", "<", 60)], r"The filters age > 70 and age < 60 select nobody"),
        ({"heart_rate": ("==", 72.5)}, r"heart_rate == 72.5 selects nobody: .*\[40, 180\] \(whole numbers\)"),
        ([("sex", "==", 1), ("sex", "!=", 1)], r"no value of sex \(\{0, 1\}\) satisfies them all"),
    ],
)
def test_a_filter_that_selects_nobody_is_refused_before_any_site_reads_data(where, message):
    with pytest.raises(QueryError, match=message):
        query.count(where=where, epsilon=0.1)


def test_other_shapes_that_cannot_be_answered():
    with pytest.raises(QueryError, match="by stratifies by a categorical or binary column; 'age' is numeric"):
        query.count(by="age", epsilon=0.1)
    with pytest.raises(QueryError, match=r"A crosstab needs columns=\(first, second\)"):
        query.crosstab(columns=("sex",), epsilon=0.1)
    with pytest.raises(QueryError, match="A mean needs a numeric column; 'admission_type' is categorical"):
        query.mean(column="admission_type", bounds=(0, 1), epsilon=0.1)
    with pytest.raises(QueryError, match=r"bounds must be finite with low < high; got \(95, 18\)"):
        query.mean(column="age", bounds=(95, 18), epsilon=0.1)
    with pytest.raises(QueryError, match="quantile probabilities lie strictly between 0 and 1"):
        query.quantiles(column="age", bounds=(18, 95), probabilities=(0.5, 1.0), epsilon=0.1)
    with pytest.raises(QueryError, match="bin edges run from bounds"):
        query.histogram(column="age", bounds=(18, 95), bins=(20, 50, 95), epsilon=0.1)


def test_a_filter_that_happens_to_select_few_at_a_site_is_answered_with_suppression(hospitals, make_site):
    """Whether possible rows exist at a site is data: the noisy count decides, no error tells.
    (One patient of 95 here; noise of sd 1 keeps the noisy count below 5 but for 3 in 10^5.)"""
    site = make_site(hospitals.sites["hospital_01"])
    assert (hospitals.sites["hospital_01"]["age"] >= 94.5).sum() == 1
    rare = Query(kind="mean", column="bmi", bounds=(15, 55), where={"age": (">=", 94.5)}, noise_multiplier=1.0)
    answer = answer_query(request=QueryRequest(query=rare, project=PROJECT), site=site)
    assert answer.release.stratum_suppressed.all()


def test_a_site_refuses_a_bad_query_before_reading_data_or_spending(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    unchecked = Query(kind="mean", column="agee", bounds=(18, 95), epsilon=0.1)  # never checked here
    with pytest.raises(Refused, match="Unknown column 'agee'") as refused:
        answer_query(request=QueryRequest(query=unchecked, project=PROJECT), site=site)
    assert refused.value.kind == "invalid"
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        assert [e.kind for e in ledger.entries()] == ["genesis", "set_cap", "allocate"]


# --- through the site's one door (real Flower messages, no engine) --------------------


def test_the_site_answers_a_query_message_through_serve(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    request = QueryRequest(query=Query(kind="count", by=("sex",), epsilon=0.2), project=PROJECT)
    reply = serve(kind="query:count", msg=received(request.to_config()), site=site)
    assert "refusal" not in reply.content
    info = reply.content["site"]
    assert info["site-id"] == site.site_id and info["replay"] is False
    assert json.loads(info["receipts"])[0]["query_id"] == request.query.query_id
    assert json.loads(reply.content["answer"]["release"])["kind"] == "count"

    cost = serve(kind="query:cost", msg=received(request.to_config()), site=site)
    assert json.loads(cost.content["cost"]["cost"])["replay"] is True


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"query-kind": "count", "project": PROJECT}, "malformed query: A query request carries query"),
        ({"query-kind": "count", "query": "{not json", "project": PROJECT}, "malformed query: A query travels as JSON"),
    ],
)
def test_a_malformed_query_message_is_refused(hospitals, make_site, config, reason):
    site = make_site(hospitals.sites["hospital_01"])
    reply = serve(kind="query:count", msg=received(config), site=site)
    assert reply.content["refusal"]["kind"] == "invalid"
    assert reply.content["refusal"]["reason"].startswith(reason)


def test_a_message_routed_as_one_kind_cannot_carry_another(hospitals, make_site):
    """A policy that allows counts but not survival curves must not be side-stepped."""
    site = make_site(hospitals.sites["hospital_01"])
    request = QueryRequest(query=Query(kind="survival", bounds=(0, 1825), epsilon=0.2), project=PROJECT)
    config = {**request.to_config(), "query-kind": "count"}
    reply = serve(kind="query:count", msg=received(config), site=site)
    assert reply.content["refusal"]["reason"] == ("the message was routed as query:count but carries a survival query.")
