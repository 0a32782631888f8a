"""A released answer is replayed for free on the same data; changed data is answered
afresh and charged; a cost can be asked without spending anything."""

from __future__ import annotations

import pytest
from _analytics_helpers import PROJECT

from federation.analytics.query import Query
from federation.protocol.query_request import QueryRequest
from federation.site.query_answers import answer_query, query_cost
from privacy_budgets import Ledger

MEAN = Query(kind="mean", column="age", bounds=(18, 95), by=("sex",), epsilon=0.4)


def _ledger_state(site):
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        return ledger.spent(dataset=site.dataset, project=PROJECT), len(ledger.entries()), ledger.verify().ok


def test_a_replayed_query_costs_nothing_and_returns_identical_values(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    request = QueryRequest(query=MEAN, project=PROJECT)
    first = answer_query(request=request, site=site)
    spent, entries, _ = _ledger_state(site)
    assert not first.replay and first.epsilon == pytest.approx(0.4, rel=1e-4)

    again = answer_query(request=QueryRequest(query=MEAN, project=PROJECT, run_id="another-run"), site=site)
    assert again.replay and again.epsilon == 0.0
    assert again.release_text == first.release_text
    assert again.receipts == first.receipts  # the proof that it was paid for, once
    assert _ledger_state(site) == (spent, entries, True)


def test_changed_data_is_answered_afresh_and_charged(hospitals, make_site):
    frame = hospitals.sites["hospital_01"]
    site = make_site(frame)
    request = QueryRequest(query=MEAN, project=PROJECT)
    first = answer_query(request=request, site=site)
    spent_once, entries_once, _ = _ledger_state(site)
    priced_before = query_cost(request=request, site=site)

    frame.iloc[:-1].to_parquet(site.data_path, index=False)  # one patient left the data set
    # A price reads no data: it cannot tell that the data changed (nor tell the asker).
    cost = query_cost(request=request, site=site)
    assert cost == priced_before
    assert cost["replay"] and cost["epsilon"] == 0.0 and cost["epsilon_if_fresh"] == pytest.approx(0.4, rel=1e-4)
    fresh = answer_query(request=request, site=site)
    assert not fresh.replay and fresh.epsilon == pytest.approx(0.4, rel=1e-4)
    assert fresh.release_text != first.release_text
    spent, entries, ok = _ledger_state(site)
    assert ok and spent > spent_once and entries == entries_once + 2  # reserve + commit

    # and the new answer is the one replayed from now on
    assert answer_query(request=request, site=site).release_text == fresh.release_text


def test_another_project_is_not_handed_this_projects_answer(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    answer_query(request=QueryRequest(query=MEAN, project=PROJECT), site=site)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        ledger.allocate(dataset=site.dataset, project="other", epsilon=1.0, actor="board", reason="test")
    other = answer_query(request=QueryRequest(query=MEAN, project="other"), site=site)
    assert not other.replay and other.epsilon > 0


def test_a_different_question_is_not_a_replay(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"])
    answer_query(request=QueryRequest(query=MEAN, project=PROJECT), site=site)
    for changed in (
        Query(kind="mean", column="age", bounds=(18, 95), by=("sex",), epsilon=0.5),
        Query(kind="mean", column="age", bounds=(20, 95), by=("sex",), epsilon=0.4),
        Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.4),
    ):
        assert not answer_query(request=QueryRequest(query=changed, project=PROJECT), site=site).replay
    # a label, or asking to show the per-site rows, is for display only: the same question
    labelled = MEAN.with_label("mean age by sex")
    assert answer_query(request=QueryRequest(query=labelled, project=PROJECT), site=site).replay
    shown_per_site = Query(kind="mean", column="age", bounds=(18, 95), by=("site", "sex"), epsilon=0.4)
    assert shown_per_site.per_site and shown_per_site.query_id == MEAN.query_id
    assert answer_query(request=QueryRequest(query=shown_per_site, project=PROJECT), site=site).replay


def test_the_cost_is_told_without_running_or_spending(hospitals, make_site):
    site = make_site(hospitals.sites["hospital_01"], allocation=0.5)
    request = QueryRequest(query=MEAN, project=PROJECT)
    before = _ledger_state(site)
    cost = query_cost(request=request, site=site)
    assert _ledger_state(site) == before
    assert cost["epsilon"] == pytest.approx(0.4, rel=1e-4) and cost["fits"] and not cost["replay"]
    assert cost["project_remaining_after"] == pytest.approx(0.1, abs=1e-3)
    assert cost["mechanism"].startswith("discrete Gaussian noise with sigma")

    answer_query(request=request, site=site)
    replay = query_cost(request=request, site=site)
    assert replay["replay"] and replay["epsilon"] == 0.0 and replay["fits"]

    too_much = query_cost(request=QueryRequest(query=Query(kind="count", epsilon=0.3), project=PROJECT), site=site)
    assert not too_much["fits"] and "project allocation 0.50" in too_much["binding"]
