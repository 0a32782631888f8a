"""Queries travel as Flower messages to the sites' ClientApps on the simulation engine:
in one run, every site first prices the queries (query:cost), then answers them;
per-site and pooled answers, receipts that verify against each site's ledger, a
refusal that spends nothing. (``Workbench.ask`` runs this same path; the analytics
notebook runs it through ``wb.ask``.)"""

from __future__ import annotations

import pytest

from federation.engines.analytics_simulation import run_simulated_queries
from privacy_budgets import Ledger, epsilon
from privacy_budgets.mechanisms import event_from_json
from workbench import Workbench
from workbench.analytics import signed_requests
from workbench.query_results import QueryResult

PROJECT = "explore"


@pytest.mark.slow
def test_several_queries_priced_and_answered_in_one_simulation_run(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    wb = Workbench.simulate(sites=3, rows=300, seed=5, workdir=tmp_path, min_cell_size={"hospital_02": 8})
    wb.allocate(project=PROJECT, epsilon=2.0)
    queries = [
        wb.query.count(by="site", epsilon=0.2),
        wb.query.mean(column="age", bounds=(18, 95), by="admission_type", epsilon=0.3),
        wb.query.survival(bounds=(0, 1825), bins=8, epsilon=0.5, label="survival"),
        wb.query.count(where={"smoker": 1}, epsilon=5.0, label="too expensive"),
    ]
    planned_here = wb.query_cost(queries, project=PROJECT)  # each site's ledger read directly
    # signed once by the simulation's researcher, whom the simulated board approved (allocate)
    requests = signed_requests(items=queries, project=PROJECT, run_id="r1", signer=wb.researcher.signer())
    box = run_simulated_queries(sites=wb.site_configs(), requests=requests, costs=True)
    count, mean, survival, refused = (
        QueryResult.from_replies(request=r, replies=replies, level=0.95)
        for r, replies in zip(requests, box.answers, strict=False)
    )

    # priced over Flower (query:cost) exactly as each site's ledger says, before any spend
    columns = ["site", "query_id", "epsilon", "fits", "replay"]
    over_flower = box.costs[columns].sort_values(["query_id", "site"]).reset_index(drop=True)
    assert over_flower.equals(planned_here[columns].sort_values(["query_id", "site"]).reset_index(drop=True))
    assert not box.costs.loc[box.costs["query_id"] == queries[3].query_id, "fits"].any()

    sites = ["hospital_01", "hospital_02", "hospital_03"]
    assert list(count.by_site["site"]) == sites and list(count.pooled["site"]) == ["pooled"]
    assert count.pooled["estimate"][0] == pytest.approx(count.by_site["estimate"].sum())
    assert count.pooled["se"][0] == pytest.approx((count.by_site["se"] ** 2).sum() ** 0.5)
    assert set(mean.frame["admission_type"]) == {"elective", "emergency", "transfer"}
    assert dict(zip(mean.sites["site"], mean.sites["min_cell_size"], strict=False)) == {
        "hospital_01": 5,
        "hospital_02": 8,
        "hospital_03": 5,
    }
    assert survival.pooled["time"].tolist() == pytest.approx([1825 * k / 8 for k in range(1, 9)])
    assert survival.plot().get_lines()

    assert (refused.sites["status"] == "refused").all() and refused.frame.empty
    # the project's own numbers only (the ledger's own words, with the dataset's cap, stay at the site)
    assert (
        refused.sites["reason"]
        .str.contains(f"the site's privacy limits refuse this release for project '{PROJECT}'")
        .all()
    )
    assert not refused.sites["reason"].str.contains("cap").any()

    for site in wb.site_configs():
        receipts = [x for r in (count, mean, survival) for x in r.receipts if x["site_id"] == site.site_id]
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            assert ledger.verify(receipts=receipts).ok
            spent = ledger.spent(dataset=site.dataset, project=PROJECT)
            kinds = [e.kind for e in ledger.entries()]
        assert kinds.count("commit") == 3 and kinds.count("abort") == 0  # the refusal reserved nothing
        assert {x["run_id"] for x in receipts} == {"r1"}
        assert spent == pytest.approx(epsilon(events=[event_from_json(x["mechanism"]) for x in receipts], delta=1e-5))
        charged = sum(r.epsilon[site.site_id] for r in (count, mean, survival))
        priced = box.costs[(box.costs["site"] == site.site_id) & (box.costs["query_id"] != queries[3].query_id)]
        assert charged == pytest.approx(priced["epsilon"].sum(), rel=1e-6)
    html = mean._repr_html_()
    assert "mean of age (clipped to [18, 95]) by admission_type" in html and "Answered by 3 of 3 sites" in html
