"""One contract, every back end: the same notebook calls against hospitals simulated here
and against real nodes behind a loopback coordinator folder (a real SuperLink with TLS and
two real SuperNodes with their site executors).

Each back end gets the same calls: train 2 rounds and get the model back as a
``torch.nn.Module``, cost and ask a small query batch, describe, read the budget, plan.
What a back end cannot do (planning needs every site's rows and ledger) is absent from its
capabilities and refused with the one sentence of ``workbench.backends.base.ABSENT``.
Tiny data, one federation per module, started once and stopped by PID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from federation.coordinator.run_folder import RunFolder
from federation.engines.loopback import LoopbackFederation, build_loopback_federation
from federation.training.evaluation import predict_proba
from workbench.backends.base import ABSENT, PLAN_TRAINING, Backend
from workbench.backends.coordinator_folder import CoordinatorFolderBackend
from workbench.errors import NotAvailable
from workbench.session import Workbench

pytestmark = pytest.mark.slow

PROJECT = "contract"
EPSILON = 1.0  # the study's target: its total at each site
ALLOCATION = 2.0  # what each site's ethics board grants the project: the study, then queries
ROWS = 300


@dataclass
class Arm:
    """A workbench on one back end, and what only the test may read: each site's ledger."""

    wb: Workbench
    spent: Any  # (site, project) -> the epsilon that site's own ledger holds

    @property
    def sites(self) -> list[str]:
        return sorted(self.wb.sites["site"])


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    fed = build_loopback_federation(root=tmp_path_factory.mktemp("contract-loopback"), sites=2, rows=ROWS)
    fed.heartbeat_seconds = 10
    try:
        fed.start()
        # What each site's ethics board does before the study: allocate, approve the researcher.
        fed.allocate(project=PROJECT, epsilon=ALLOCATION)
        yield fed
    finally:
        fed.stop()


def _loopback_spent(fed: LoopbackFederation):
    def spent(site: str, project: str) -> float:
        with fed.ledger(site) as ledger:
            return ledger.spent(dataset=fed.node_config(site).dataset, project=project)

    return spent


@pytest.fixture(scope="module", params=["simulation", "coordinator_folder"])
def arm(request, tmp_path_factory) -> Arm:
    if request.param == "simulation":
        wb = Workbench.simulate(workdir=tmp_path_factory.mktemp("contract-sim"), sites=2, rows=ROWS, seed=3)
        wb.allocate(project=PROJECT, epsilon=ALLOCATION)  # the simulated board, as the sites' boards do

        datasets = dict(zip(wb.sites["site"], wb.sites["dataset"], strict=True))

        def spent(site: str, project: str) -> float:
            with wb.ledger(site) as ledger:
                return ledger.spent(dataset=datasets[site], project=project)

        return Arm(wb=wb, spent=spent)
    fed = request.getfixturevalue("loopback")
    wb = Workbench.connect(
        coordinator=fed.coordinator.folder, dictionary=fed.dictionary_path, researcher=fed.researcher_key
    )
    return Arm(wb=wb, spent=_loopback_spent(fed))


@pytest.fixture(scope="module")
def trained(arm):
    return arm.wb.train(target_epsilon=EPSILON, rounds=2, project=PROJECT)


def test_the_back_end_keeps_the_protocol(arm):
    assert isinstance(arm.wb.backend, Backend)
    assert {"train", "ask", "query_cost", "budget"} <= arm.wb.capabilities
    assert len(arm.sites) == 2


def test_two_rounds_train_and_the_model_comes_back_as_a_torch_module(arm, trained):
    assert trained.stopped_reason == ""
    assert sorted(trained.weighted()["round"]) == [1, 2]
    assert isinstance(trained.model, nn.Module)
    # The model takes the study's encoding and gives probabilities.
    x = np.random.default_rng(0).uniform(0, 1, size=(8, trained.encoder.n_features)).astype(np.float32)
    proba = predict_proba(model=trained.model, x=x)
    assert proba.shape == (8,) and ((proba >= 0) & (proba <= 1)).all()
    # Every site charged the study, and what the result says equals its own ledger.
    eps = trained.epsilon().set_index("site")["epsilon_project"]
    assert sorted(eps.index) == arm.sites
    for site in arm.sites:
        assert eps[site] == pytest.approx(arm.spent(site, PROJECT), rel=1e-6)
        assert 0 < eps[site] <= EPSILON + 1e-6
    assert {r["site_id"] for r in trained.receipts} == set(arm.sites)


def test_the_coordinators_copy_of_the_model_is_the_one_that_came_back(arm, trained):
    if not isinstance(arm.wb.backend, CoordinatorFolderBackend):
        pytest.skip("a simulation's model never leaves this process: there is no coordinator's copy to compare")
    folder = RunFolder(arm.wb.backend.coordinator.runs_dir / trained.spec.run_id)
    saved = torch.load(folder.model_path, weights_only=True)
    mine = trained.model.state_dict()
    assert saved.keys() == mine.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, mine[name]), name


def test_a_query_batch_is_costed_then_answered_and_charged_at_each_site(arm, trained):
    q = arm.wb.query
    batch = [q.count(by="site", epsilon=0.1), q.mean(column="age", bounds=(18, 95), epsilon=0.1)]
    before = {site: arm.spent(site, PROJECT) for site in arm.sites}
    costs = arm.wb.query_cost(batch, project=PROJECT)
    assert set(costs["site"]) == set(arm.sites) and len(costs) == 2 * len(arm.sites)
    assert {site: arm.spent(site, PROJECT) for site in arm.sites} == before  # costing spends nothing
    count, mean = arm.wb.ask(batch, project=PROJECT)
    assert set(count.answered) == set(arm.sites) and (count.by_site["estimate"] > 0).all()
    assert 18 <= float(mean.pooled["estimate"].iloc[0]) <= 95
    for site in arm.sites:
        assert arm.spent(site, PROJECT) > before[site]


def test_describe_and_budget_report_each_site(arm, trained):
    description = arm.wb.describe(project=PROJECT, epsilon=0.1)
    assert sorted(description.sites["site"]) == arm.sites
    assert (description.sites["patients (noisy)"] > 0).all()
    budget = arm.wb.budget()
    mine = budget[budget["project"] == PROJECT]
    assert sorted(mine["site"]) == arm.sites
    # The signed receipts this workbench sees (a simulation's ledgers; the coordinator's mirror)
    # hold the study's and the queries' releases at every site.
    receipts = [r for r in arm.wb.receipts() if r["project"] == PROJECT and r["kind"] == "commit"]
    assert {r["site_id"] for r in receipts} == set(arm.sites)
    assert {r["run_id"] for r in receipts} >= {trained.spec.run_id}


def test_planning_is_offered_where_the_sites_rows_are_and_refused_once_elsewhere(arm):
    if PLAN_TRAINING in arm.wb.capabilities:
        plan = arm.wb.plan_training(target_epsilon=0.5, rounds=2, project="contract-plan")
        assert sorted(plan.per_site["site"]) == arm.sites and plan.fits
        return
    with pytest.raises(NotAvailable) as refused:
        arm.wb.plan_training(target_epsilon=0.5, rounds=2, project="contract-plan")
    assert ABSENT[PLAN_TRAINING] in str(refused.value)
    assert "plan_training" not in dir(arm.wb.backend)  # absent, not a stub that raises
