"""Local tuning by private selection: each site's one charge is the (epsilon, delta) pair
that dp_accounting's RDP bound proves for the whole selection, recomputed here from the
site's stated noise without the project's code; the request reaches every site as its
task "tune" through Flower's simulation engine (its gate writes the audit line, signed
by the simulated researcher); a selection the allocation cannot pay for is refused
before any site spends; a site that refuses is named, and the others' choices (already
charged) come back beside it."""

from __future__ import annotations

import json

import dp_accounting as dpa
import pytest
from dp_accounting.dp_event import RepeatAndSelectDpEvent
from dp_accounting.rdp import rdp_privacy_accountant

from federation.site.audit import audit_path, recent_entries
from federation.site.local_tuning import DELTA_SHARE
from federation.site.pause import pause_node, resume_node
from tests.independent_pld import epsilon_of
from workbench.errors import PlanDoesNotFit, StudyRefused
from workbench.local_tuning import PartialTuning
from workbench.session import Workbench

CANDIDATES = [{"learning_rate": 0.1}, {"learning_rate": 0.5, "batch_size": 64}]
MEAN = 2.0


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    return Workbench.simulate(workdir=tmp_path_factory.mktemp("local-tuning"), sites=2, rows=240, seed=7)


def _selection_epsilon(*, noise: float, q: float, steps: int, score_sigma: float, delta: float) -> float:
    """One run (DP-SGD, then a discrete Gaussian count of sensitivity 1: rho = 1 / (2 sigma^2),
    Canonne, Kamath & Steinke 2020) repeated a geometric number of times, best released."""
    run = dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(noise)), steps),
            dpa.ZCDpEvent(rho=1.0 / (2.0 * score_sigma**2)),
        ]
    )
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(RepeatAndSelectDpEvent(event=run, mean=MEAN, shape=1.0))
    return accountant.get_epsilon(delta)


def test_each_site_charges_the_proven_pair_of_its_whole_selection_once(wb):
    result = wb.tune_locally(
        candidates=CANDIDATES, target_epsilon=1.0, rounds=1, project="lt", model="logreg", mean=MEAN
    )
    assert len(result) == 2
    for _, row in result.iterrows():
        assert row["best"] == CANDIDATES[row["best_index"] - 1]  # only a candidate comes back
        with wb.ledger(row["site"]) as ledger:
            dataset_delta = ledger.dataset_delta(dataset=row["site"])
            commits = [e for e in ledger.entries(dataset=row["site"]) if e.kind == "commit" and e.project == "lt"]
            spent = ledger.spent(dataset=row["site"], project="lt")
        assert len(commits) == 1  # K runs, one charge
        plain = json.loads(commits[0].mechanism)["event"]
        assert plain["type"] == "PrivacyParametersDpEvent"
        assert plain["delta"] == pytest.approx(DELTA_SHARE * dataset_delta)
        assert plain["delta"] < dataset_delta
        # Every candidate's selection is within the charged pair; the reference run is it.
        per_candidate = [
            _selection_epsilon(noise=n, q=q, steps=s, score_sigma=g, delta=plain["delta"])
            for n, q, s, g in zip(
                row["noise_multipliers"], row["sampling_rates"], row["steps"], row["score_sigmas"], strict=True
            )
        ]
        assert max(per_candidate) == pytest.approx(plain["epsilon"], rel=1e-3)
        assert all(e <= plain["epsilon"] * (1 + 1e-3) for e in per_candidate)
        assert plain["epsilon"] <= 1.0 * (1 + 1e-4)
        # The ledger's PLD of that pair at the dataset's delta (its delta taken out of it).
        assert spent == pytest.approx(epsilon_of([plain], delta=dataset_delta), rel=2e-3)
        assert spent <= plain["epsilon"] + 2e-4
        # served through the site's gate: its audit line, the researcher who signed it, the charge
        config = next(c for c in wb.site_configs() if c.site_id == row["site"])
        lines = [e for e in recent_entries(path=audit_path(config.state_dir)) if e["kind"] == "request"]
        tune = [e for e in lines if e["task"] == "tune" and e["project"] == "lt"]
        assert len(tune) == 1 and tune[0]["decision"]["outcome"] == "served"
        assert tune[0]["researcher"] is not None
        assert tune[0]["epsilon_charged"] == pytest.approx(commits[0].epsilon)


def test_a_selection_the_allocation_cannot_pay_for_is_refused_before_any_site_spends(wb):
    wb.allocate(project="small-lt", epsilon=0.5)
    before = wb.budget()
    with pytest.raises(PlanDoesNotFit, match="allocation of 0.5") as caught:
        wb.tune_locally(candidates=CANDIDATES, target_epsilon=1.0, rounds=1, project="small-lt", model="logreg")
    assert "Nothing was trained or charged" in str(caught.value)
    assert wb.budget().equals(before)


def test_a_site_that_refuses_is_named_and_the_others_choices_come_back_charged(wb):
    paused, other = wb.site_configs()
    pause_node(state_dir=paused.state_dir, reason="maintenance window", who="site IT")
    try:
        with pytest.warns(PartialTuning) as warned:
            result = wb.tune_locally(
                candidates=CANDIDATES, target_epsilon=0.8, rounds=1, project="half-lt", model="logreg", mean=MEAN
            )
        pause_node(state_dir=other.state_dir, reason="maintenance window", who="site IT")
        with pytest.raises(StudyRefused, match="No site tuned") as refused:
            wb.tune_locally(
                candidates=CANDIDATES, target_epsilon=0.8, rounds=1, project="none-lt", model="logreg", mean=MEAN
            )
    finally:
        for config in (paused, other):
            resume_node(state_dir=config.state_dir)
    [words] = [str(w.message) for w in warned if w.category is PartialTuning]
    assert f"refused at 1 of 2 sites. Site {paused.site_id} refused it (paused)" in words
    assert f"{other.site_id} epsilon" in words and "What to do" in words
    rows = result.set_index("site")
    assert rows.loc[paused.site_id, "status"] == "refused" and rows.loc[paused.site_id, "best"] is None
    assert rows.loc[other.site_id, "status"] == "served"
    assert rows.loc[other.site_id, "best"] == CANDIDATES[rows.loc[other.site_id, "best_index"] - 1]
    # what each row says was charged is what each ledger holds
    with wb.ledger(paused.site_id) as ledger:
        assert ledger.spent(dataset=paused.dataset, project="half-lt") == 0.0
        assert rows.loc[paused.site_id, "epsilon_charged"] == 0.0
    with wb.ledger(other.site_id) as ledger:
        spent = ledger.spent(dataset=other.dataset, project="half-lt")
    assert spent > 0 and rows.loc[other.site_id, "project_epsilon"] == pytest.approx(spent)
    assert f"Site {paused.site_id} refused it (paused)" in str(refused.value) and "charges nothing" in str(
        refused.value
    )
    for config in (paused, other):
        with wb.ledger(config.site_id) as ledger:
            assert ledger.spent(dataset=config.dataset, project="none-lt") == 0.0
