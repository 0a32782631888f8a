"""A charged hyperparameter search: every cost recomputed with dp_accounting's PLD
library directly, a search that cannot fit refused before anything runs, and a real
search (Flower simulation) whose ledgers hold exactly what the plan said."""

from __future__ import annotations

import json

import pytest

from federation.protocol.spec import TrainingSpec
from privacy_budgets.composition import PLD_VALUE_DISCRETIZATION as INTERVAL
from privacy_budgets.mechanisms import event_to_json
from tests.independent_pld import epsilon_of
from workbench.errors import PlanDoesNotFit
from workbench.session import Workbench
from workbench.tuning_plan import (
    TuningError,
    candidate_grid,
    candidate_project,
    normalise_candidates,
    site_facts,
    site_run_plan,
)

DELTA = 1e-5


def _compose(plains: list[dict]) -> float:
    return epsilon_of(plains, delta=DELTA, interval=INTERVAL)


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    return Workbench.simulate(workdir=tmp_path_factory.mktemp("tuning"), sites=2, rows=400, seed=5)


def test_every_cost_of_a_planned_search_is_recomputed_with_dp_accounting(wb):
    candidates = candidate_grid(learning_rate=(0.1, 0.5), batch_size=(32, 64))
    plan = wb.plan_tuning(candidates=candidates, target_epsilon=2.0, rounds=2, project="plan-a", final_share=0.5)
    assert plan.fits, plan.reason
    hps = normalise_candidates(candidates=candidates, rounds=2, common={}, delta=DELTA)
    facts = {
        f.site: f for f in site_facts(sites=wb.site_configs(), encoder=wb.encoder(), project="plan-a", n_candidates=4)
    }
    assert set(plan.per_site["site"]) == set(facts) and len(facts) == 2
    totals = []
    for _, row in plan.per_site.iterrows():
        f = facts[row["site"]]
        plains, naive = [], 0.0
        for i, hp in enumerate(hps, start=1):
            spec = TrainingSpec(
                project=candidate_project("plan-a", i), target_epsilon=plan.candidate_epsilon, delta=DELTA, **hp
            )
            site_plan = site_run_plan(facts=f, spec=spec)
            mine = [event_to_json(e)["event"] for e in site_plan.planned_events()]
            own = _compose(mine)
            assert own <= plan.candidate_epsilon * (1 + 1e-6)  # the site calibrates each run to its target
            shown = plan.per_candidate[
                (plan.per_candidate["site"] == f.site) & (plan.per_candidate["run_number"] == i)
            ].iloc[0]
            assert shown["own_epsilon"] == pytest.approx(own, rel=2e-3)
            assert shown["noise_multiplier"] == site_plan.noise_multiplier
            plains += mine
            naive += own
        search = _compose(plains)
        assert row["search_epsilon"] == pytest.approx(search, rel=2e-3)
        # The final training: the chosen configuration's worst shape, at its own target.
        finals = []
        for hp in hps:
            spec = TrainingSpec(project="plan-a", target_epsilon=plan.final_target, delta=DELTA, **hp)
            final = [event_to_json(e)["event"] for e in site_run_plan(facts=f, spec=spec).planned_events()]
            finals.append(_compose(plains + final))
        total = max(finals)
        assert row["total_after"] == pytest.approx(total, rel=2e-3)
        assert total <= 2.0 * (1 + 2e-3)
        totals.append(total)
        assert row["naive_sum"] > 1.3 * total  # composition is far tighter than adding
    assert max(totals) > 2.0 * 0.98  # the split uses the target at the binding site, it does not waste it
    assert plan.final_target == pytest.approx(1.0)  # half of what the fresh project has


def test_a_search_the_allocation_cannot_pay_for_is_refused_before_anything_runs(wb):
    wb.allocate(project="small", epsilon=0.5)
    before = wb.budget()
    with pytest.raises(PlanDoesNotFit, match="allocation of 0.5") as caught:
        wb.tune(
            candidates=[{"learning_rate": 0.1}, {"learning_rate": 0.5}],
            target_epsilon=1.0,
            rounds=2,
            project="small",
            final_share=0.5,
        )
    assert "Nothing was trained or charged" in str(caught.value)
    after = wb.budget()
    assert after.equals(before)
    for site in wb.sites["site"]:
        with wb.ledger(site) as ledger:
            for i in (1, 2):
                assert ledger.events(dataset=site, project=candidate_project("small", i)) == []


def test_candidates_are_checked_before_any_calibration(wb):
    with pytest.raises(TuningError, match="does not tune"):
        wb.plan_tuning(candidates=[{"target_epsilon": 3.0}], target_epsilon=1.0, rounds=2, project="x")
    with pytest.raises(TuningError, match="non-empty list"):
        wb.plan_tuning(candidates=[], target_epsilon=1.0, rounds=2, project="x")


@pytest.mark.slow
def test_a_search_charges_every_candidate_and_stays_within_its_target(tmp_path):
    """Two candidates and a final training through Flower's simulation engine: the
    ledgers hold every run, their composition (recomputed) is within the target, each
    candidate cost what the plan said, and the best is chosen by the noisy scores."""
    bench = Workbench.simulate(workdir=tmp_path, sites=2, rows=400, seed=3)
    result = bench.tune(
        candidates=[{"learning_rate": 0.1}, {"learning_rate": 0.5}],
        target_epsilon=2.0,
        rounds=2,
        project="search",
        final_share=0.5,
    )
    scores = result.candidates.set_index("candidate")["score"]
    assert result.best_index == int(scores.idxmax())
    assert result.result.spec.project == "search" and result.result.spec.learning_rate == result.best["learning_rate"]
    assert bool(result.spent["within_target"].all())
    for site in bench.sites["site"]:
        plains = []
        with bench.ledger(site) as ledger:
            for entry in ledger.entries(dataset=site):
                if entry.kind == "commit" and entry.project in {"search", *result.plan.candidate_projects}:
                    plains.append(json.loads(entry.mechanism)["event"])
            for i in (1, 2):
                own = ledger.spent(dataset=site, project=candidate_project("search", i))
                planned = result.plan.per_candidate[
                    (result.plan.per_candidate["site"] == site) & (result.plan.per_candidate["run_number"] == i)
                ]["own_epsilon"].iloc[0]
                assert own == pytest.approx(planned, rel=1e-6)
        independent = _compose(plains)
        shown = result.spent.set_index("site").loc[site, "search_epsilon"]
        assert shown == pytest.approx(independent, rel=2e-3)
        assert independent <= 2.0 * (1 + 2e-3)


def test_the_split_search_ends_on_a_value_that_fits_within_its_tolerance():
    from workbench.tuning_plan import CALIBRATION_RTOL, largest_fitting

    calls = []

    def cost(x: float) -> float:  # three runs composed, roughly: rises with x
        calls.append(x)
        return 3 * x**0.7 + (float("inf") if x < 0.01 else 0.0)

    x = largest_fitting(cost=cost, target=2.0, low=0.05, high=2.0)
    assert cost(x) <= 2.0 and cost(x) > 2.0 * (1 - CALIBRATION_RTOL)
    assert len(calls) < 15  # regula falsi, not a dozen bisections per digit
    # A bottom no site can plan (too small a share): the search climbs to one it can.
    climbed = largest_fitting(cost=cost, target=2.0, low=0.001, high=2.0)
    assert climbed == pytest.approx(x, rel=2 * CALIBRATION_RTOL) and cost(climbed) <= 2.0
    assert largest_fitting(cost=lambda x: float("inf"), target=2.0, low=0.01, high=2.0) is None
    assert largest_fitting(cost=lambda x: 5.0, target=2.0, low=0.01, high=2.0) is None  # even the bottom costs more
    assert largest_fitting(cost=lambda x: x, target=2.0, low=0.1, high=1.5) == 1.5  # the top already fits
