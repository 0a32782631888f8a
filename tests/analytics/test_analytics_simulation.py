"""Queries travel as Flower messages to the sites' ClientApps on the simulation engine:
several queries in one run, per-site and pooled answers, receipts that verify against
each site's ledger, a refusal that spends nothing."""

from __future__ import annotations

import pytest

from privacy_budgets import Ledger, epsilon
from privacy_budgets.mechanisms import event_from_json
from workbench import Workbench

PROJECT = "explore"


@pytest.mark.slow
def test_several_queries_in_one_simulation_run(tmp_path):
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
    planned = wb.query_cost(queries, project=PROJECT)
    count, mean, survival, refused = wb.ask(queries, project=PROJECT)

    sites = ["hospital_01", "hospital_02", "hospital_03"]
    assert list(count.by_site["site"]) == sites and list(count.pooled["site"]) == ["pooled"]
    assert count.pooled["estimate"][0] == pytest.approx(count.by_site["estimate"].sum())
    assert count.pooled["se"][0] == pytest.approx((count.by_site["se"] ** 2).sum() ** 0.5)
    assert set(mean.frame["admission_type"]) == {"elective", "emergency", "transfer"}
    assert dict(zip(mean.sites["site"], mean.sites["min_cell_size"])) == {
        "hospital_01": 5, "hospital_02": 8, "hospital_03": 5}
    assert survival.pooled["time"].tolist() == pytest.approx([1825 * k / 8 for k in range(1, 9)])
    assert survival.plot().get_lines()

    assert (refused.sites["status"] == "refused").all() and refused.frame.empty
    assert refused.sites["reason"].str.contains("would exceed the project allocation").all()
    assert not planned.loc[planned["query"] == "too expensive", "fits"].any()

    for site in wb.site_configs():
        answered = [r for r in (count, mean, survival) if site.site_id in r.answered]
        receipts = [x for r in answered for x in r.receipts if x["site_id"] == site.site_id]
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            assert ledger.verify(receipts=receipts).ok
            spent = ledger.spent(dataset=site.dataset, project=PROJECT)
            kinds = [e.kind for e in ledger.entries()]
        assert kinds.count("commit") == 3 and kinds.count("abort") == 0  # the refusal reserved nothing
        events = [event_from_json(x["mechanism"]) for x in receipts]
        assert spent == pytest.approx(epsilon(events=events, delta=1e-5))
        charged = sum(r.epsilon[site.site_id] for r in (count, mean, survival))
        planned_here = planned[(planned["site"] == site.site_id) & (planned["query"] != "too expensive")]
        assert charged == pytest.approx(planned_here["epsilon"].sum(), rel=1e-6)
    html = mean._repr_html_()
    assert "mean of age (clipped to [18, 95]) by admission_type" in html and "Answered by 3 of 3 sites" in html
