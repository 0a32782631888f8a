"""The smaller analytics leaks of issue 13: a refusal says what was refused, never what the
data holds nor where the site keeps it; a price (query:cost) cannot tell whether the data
changed."""

from __future__ import annotations

import json

import pandas as pd
from _site_under_attack import (
    ask,
    assert_tells_no_data,
    hospitals,  # noqa: F401 (a fixture)
    refusal_of,
    request,
    site,  # noqa: F401 (a fixture)
)

from federation.analytics.query import Query
from federation.site import query_answers

MEAN = Query(kind="mean", column="bmi", bounds=(15, 55), by=("sex",), epsilon=0.3)


def test_a_row_that_breaks_the_dictionary_is_not_echoed_to_the_coordinator(site, caplog):
    """The loader's message names the row and its value (for the site's IT): it stays in
    the site's log; the coordinator hears only that the site could not answer, and an
    incident id its IT can look up."""
    frame = site.frame.copy()
    frame.loc[17, "age"] = 150.987
    frame.to_parquet(site.site.data_path, index=False)
    refused = refusal_of(ask(site, request(MEAN)))
    assert refused["kind"] == "error" and "does not validate against its data dictionary" in refused["reason"]
    assert refused["incident"] and "150.987" not in refused["reason"] and "row" not in refused["reason"]
    assert_tells_no_data(refused["reason"], site)
    assert "150.987" in caplog.text  # the site's IT still sees exactly where
    assert site.ledger_kinds() == ["genesis", "set_cap", "allocate"]


def test_a_failure_while_computing_is_not_echoed_and_the_reservation_is_aborted(site, monkeypatch):
    def broken(**kwargs):
        raise ValueError("cannot bin value 47.213 of row 400")  # what an error deep in pandas may say

    monkeypatch.setattr(query_answers, "exact_cells", broken)
    refused = refusal_of(ask(site, request(MEAN)))
    assert refused["kind"] == "error" and "nothing was released and the reservation was aborted" in refused["reason"]
    assert_tells_no_data(refused["reason"], site)
    assert site.ledger_kinds()[-2:] == ["reserve", "abort"]


def test_an_unreadable_dictionary_does_not_tell_its_path(site):
    site.site.dictionary_path.write_text("{ not json")
    refused = refusal_of(ask(site, request(MEAN)))
    assert refused["kind"] == "error" and "cannot read its data dictionary" in refused["reason"]
    assert_tells_no_data(refused["reason"], site)


def test_a_price_cannot_tell_that_the_data_changed(site, monkeypatch):
    assert "refusal" not in ask(site, request(MEAN)).content

    def priced():
        reply = ask(site, request(MEAN), kind="query:cost")
        return json.loads(str(reply.content["cost"]["cost"]))

    before = priced()
    changed = pd.concat([site.frame, site.frame.iloc[[3]]], ignore_index=True)  # a patient was admitted
    changed.to_parquet(site.site.data_path, index=False)
    reads = []
    monkeypatch.setattr(query_answers, "load_site_data", lambda **kwargs: reads.append(kwargs) or 1 / 0)
    after = priced()
    assert reads == [] and after == before
    assert after["replay"] and after["epsilon"] == 0.0 and after["epsilon_if_fresh"] > 0


def test_a_price_tells_the_projects_own_limits_never_the_datasets(site):
    """A price states the per-request cap or the project's own allocation; the dataset's
    cap and its total (other projects' spending) stay at the site."""
    reply = ask(site, request(MEAN), kind="query:cost")
    priced = json.loads(str(reply.content["cost"]["cost"]))
    assert "dataset_remaining_after" not in priced
    assert "project allocation" in priced["binding"] and "dataset" not in priced["binding"]
    assert "cap" not in priced["binding"]
