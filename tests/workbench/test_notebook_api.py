"""The notebook API a data scientist meets: describe, plan, train, budget, report.

One small simulated federation for the module, on Flower's real simulation engine;
the checks read the sites' real ledgers.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from privacy_budgets import BudgetExceeded, Ledger
from workbench import Workbench
from workbench.errors import PlanDoesNotFit

pytestmark = pytest.mark.slow

SITE_CAP = 3.0


@pytest.fixture(scope="module")
def wb(tmp_path_factory) -> Workbench:
    return Workbench.simulate(sites=3, rows=600, seed=11, workdir=tmp_path_factory.mktemp("nb-api"), site_cap=SITE_CAP)


def test_describe_gives_the_schema_and_noisy_counts_charged_to_each_site(wb):
    description = wb.describe(project="look", epsilon=0.1)

    assert set(description.schema["name"]) == {c.name for c in wb.dictionary.columns}
    assert list(description.sites["site"]) == list(wb.sites["site"])
    for _, row in description.sites.iterrows():
        true_rows = len(pd.read_parquet(wb.sites.set_index("site").loc[row["site"], "data"]))
        # Gaussian noise at epsilon 0.1 has sd ~ 40: the truth is inside a generous band
        assert abs(row["patients (noisy)"] - true_rows) < 250
        assert row["interval low"] < row["patients (noisy)"] < row["interval high"]
    for site in wb.site_configs():
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            assert ledger.spent(dataset=site.dataset, project="look") == pytest.approx(0.1, rel=0.05)
    html = description._repr_html_()
    assert "patients" in html and "differentially private" in html
    assert "noisy" in repr(description)


def test_describe_again_is_replayed_at_no_cost(wb):
    before = {
        s.site_id: Ledger.open(s.ledger_path, site_id=s.site_id).spent(dataset=s.dataset) for s in wb.site_configs()
    }
    again = wb.describe(project="look", epsilon=0.1)
    assert again.counts.sites["replay"].all()
    for s in wb.site_configs():
        with Ledger.open(s.ledger_path, site_id=s.site_id) as ledger:
            assert ledger.spent(dataset=s.dataset) == pytest.approx(before[s.site_id])


def test_plan_projects_each_sites_epsilon_and_a_what_if(wb):
    plan = wb.plan_training(target_epsilon=1.0, rounds=3, project="planned")
    assert plan.fits
    assert list(plan.per_site["site"]) == list(wb.sites["site"])
    assert (plan.per_site["noise_multiplier"] > 0).all()
    # Higher noise always means a smaller epsilon for the same rounds.
    table = plan.what_if[plan.what_if["rounds"] == 3].sort_values("noise_multiplier")
    assert table["epsilon"].is_monotonic_decreasing
    assert plan.plot() is not None
    assert "fits every site" in plan._repr_html_()


def test_a_training_beyond_the_cap_is_refused_before_anything_runs(wb):
    history_before = len(wb.budget_history())
    with pytest.raises(PlanDoesNotFit) as refused:
        wb.train(target_epsilon=SITE_CAP * 2, rounds=2, project="greedy")
    message = str(refused.value)
    assert "cap" in message and "What to do" in message and "Nothing was trained" in message
    # In IPython the error reads as one paragraph, not a traceback.
    assert refused.value._render_traceback_() == [f"PlanDoesNotFit: {message}"]
    assert len(wb.budget_history()) == history_before  # no allocation, no reservation


def test_train_returns_a_history_a_model_and_a_budget_burn_down(wb, tmp_path):
    result = wb.train(target_epsilon=0.8, rounds=2, project="trained", engine="vectorized")
    assert not result.stopped_reason
    assert set(result.history["round"]) == {1, 2}
    # per site and pooled: DP estimates from the sites' noisy counts, with their sd
    assert result.evaluation["auc"].dropna().between(0, 1).all() and (result.evaluation["auc_sd"] > 0).all()
    pooled = result.weighted()
    assert list(pooled["round"]) == [1, 2] and pooled["auc"].between(0, 1).all() and (pooled["auc_sd"] > 0).all()
    assert "No number left any hospital without noise" in result.statement()
    exact = wb.held_out_metrics(result=result)
    assert set(exact["site"]) == set(wb.sites["site"]) and exact["auc"].between(0, 1).all()
    assert (result.epsilon()["epsilon_project"] <= 0.8 + 1e-6).all()
    assert "record-level differential privacy" in result._repr_html_()

    history = wb.budget_history()
    trained = history[history["project"] == "trained"]
    assert set(trained["site"]) == set(wb.sites["site"])
    for site, g in trained.groupby("site"):
        final = g.dropna(subset=["epsilon_project"])["epsilon_project"].iloc[-1]
        assert final == pytest.approx(result.epsilon().set_index("site").loc[site, "epsilon_project"], rel=1e-6)
    axes = wb.plot_budget()
    assert len(axes) == 3 and all(ax.get_title() for ax in axes)

    reports = wb.report(out=tmp_path / "reports")
    assert reports.frame["verified"].all()
    for path in reports.paths:
        text = path.read_text()
        assert "data:image/png;base64," in text and "trained" in text
    assert "verified" in reports._repr_html_()


def test_budget_errors_read_as_one_paragraph_in_ipython(wb):
    site = wb.site_configs()[0]
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        from privacy_budgets.mechanisms import gaussian_event

        with pytest.raises(BudgetExceeded) as refused:
            ledger.reserve(
                dataset=site.dataset,
                project="trained",
                event=gaussian_event(noise_multiplier=0.05),
                actor="test",
                purpose="a release far beyond the allocation",
            )
    lines = refused.value._render_traceback_()
    assert len(lines) == 1 and "Remaining" in lines[0] and "Fix:" in lines[0]


def test_a_study_every_site_refuses_is_one_paragraph_not_a_flower_traceback(wb):
    from federation.site.pause import pause_node, resume_node
    from workbench.errors import StudyRefused

    for site in wb.site_configs():
        pause_node(state_dir=site.state_dir, reason="maintenance window", who="site IT")
    try:
        with pytest.raises(StudyRefused) as refused:
            wb.train(target_epsilon=0.5, rounds=2, project="during-maintenance", engine="vectorized")
    finally:
        for site in wb.site_configs():
            resume_node(state_dir=site.state_dir)
    message = str(refused.value)
    assert "No hospital trained" in message and "is paused by its IT" in message and "What to do" in message
    assert "maintenance window" not in message and "incident" in message  # the reason stays at each site
    assert refused.value._render_traceback_() == [f"StudyRefused: {message}"]
    for site in wb.site_configs():  # refused before anything touched the data: nothing charged
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            assert ledger.spent(dataset=site.dataset, project="during-maintenance") == 0
