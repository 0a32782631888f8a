"""Issue 13 over real processes on loopback (TLS, node authentication, each node's own
node.toml): queries that the notebook's checks let through but each site's own rules
refuse (bounds that meet the column's public range on a sliver; a noise multiplier of
1e-6, which once made a site build gigabytes of privacy-loss distribution), asked
through Workbench.connect. Every site refuses with its rule, charges nothing, and
records the request in its audit log before anything else."""

from __future__ import annotations

import time

import pytest

from federation.analytics.errors import QueryError
from federation.analytics.query import Query
from federation.site.audit import audit_path, recent_entries
from workbench.session import Workbench

pytestmark = pytest.mark.slow

PROJECT = "curious-deployed"


def test_degenerate_queries_through_the_coordinator_are_refused_at_every_site(loopback):
    loopback.allocate(project=PROJECT, epsilon=1.0)
    wb = Workbench.connect(
        coordinator=loopback.coordinator.folder, dictionary=loopback.dictionary_path, researcher=loopback.researcher_key
    )
    # The notebook's builder checks a query against the dictionary and refuses the sliver;
    # a coordinator that skips it sends the bare query, which the sites must refuse themselves.
    with pytest.raises(QueryError, match="must overlap the public range of 'bmi'"):
        wb.query.mean(column="bmi", bounds=(55 - 1e-9, 400), epsilon=0.3)
    sliver = Query(kind="mean", column="bmi", bounds=(55 - 1e-9, 400), epsilon=0.3)
    tiny = wb.query.count(noise_multiplier=1e-6)  # only the sites know their floor
    started = time.perf_counter()
    sliver_answer, tiny_answer = wb.ask([sliver, tiny], project=PROJECT)
    elapsed = time.perf_counter() - started

    assert (sliver_answer.sites["status"] == "refused").all() and sliver_answer.frame.empty
    assert sliver_answer.sites["reason"].str.contains("must overlap the public range of 'bmi'").all()
    assert (tiny_answer.sites["status"] == "refused").all() and tiny_answer.frame.empty
    assert tiny_answer.sites["reason"].str.contains("noise multiplier is at least 0.5").all()
    assert elapsed < 120  # no site spent its time on the tiny noise's privacy loss
    for site in loopback.sites:
        dataset = loopback.node_config(site).dataset
        with loopback.ledger(site) as ledger:
            assert ledger.spent(dataset=dataset, project=PROJECT) == 0.0
            assert not [e for e in ledger.entries(dataset=dataset) if e.project == PROJECT and e.kind == "reserve"]
        lines = list(reversed(recent_entries(path=audit_path(loopback.node_config(site).state_dir), limit=20)))
        mean_lines = [line for line in lines if line.get("task") == "query:mean" and line.get("project") == PROJECT]
        assert [line["kind"] for line in mean_lines] == ["received", "request", "alert"]  # written ahead, decided
        assert mean_lines[1]["decision"]["refusal_kind"] == "invalid" and mean_lines[2]["alert"] == "refused"
