"""One contract, every back end: the same notebook calls against hospitals simulated here,
against real nodes behind a loopback coordinator folder (a real SuperLink with TLS and two
real SuperNodes with their site executors), and against the same nodes through the
coordinator's study service (uvicorn, HTTPS from the coordinator's CA) from a researcher's
folder holding only the service's URL, ``ca.crt``, the researcher's key and the public data
dictionary.

Each back end gets the same calls: train 2 rounds and get the model back as a
``torch.nn.Module``, cost and ask a small query batch, describe, read the budget, plan
(a simulation from each site's rows and ledger; a coordinator from the noisy counts of
``describe()`` and the signed receipts, which must agree with each site's own ledger).
What a back end cannot do is absent from its capabilities and refused with the one
sentence of ``workbench.backends.base.ABSENT``. Through the service, a study outlives its
notebook: a real notebook process is killed mid-study, and a fresh kernel lists the study
(``wb.studies()``) and follows it (``wb.follow``) to the coordinator's model. Tiny data, one federation and one service
per module, started once and stopped by PID.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from federation.coordinator.run_folder import RunFolder
from federation.engines.loopback import LoopbackFederation, build_loopback_federation
from federation.processes import engine_env
from federation.training.evaluation import predict_proba
from privacy_budgets.signatures import generate_key_pair
from workbench.backends.base import ABSENT, FOLLOW, NEEDS, PLAN_TRAINING, Backend
from workbench.backends.coordinator_folder import CoordinatorFolderBackend
from workbench.backends.remote import RemoteBackend
from workbench.errors import NotAvailable
from workbench.service_client import BadSignedStudy, NotYours
from workbench.session import Workbench

pytestmark = pytest.mark.slow

PROJECT = "contract"
REMOTE_PROJECT = "contract-remote"  # the same nodes as the coordinator folder's: a project of its own
RESUME_PROJECT = "contract-resume"  # a remote study whose service goes away mid-study
FOLLOW_PROJECT = "contract-follow"  # a remote study whose notebook is killed mid-study
EPSILON = 1.0  # the study's target: its total at each site
ALLOCATION = 2.0  # what each site's ethics board grants the project: the study, then queries
ROWS = 300


@dataclass
class Arm:
    """A workbench on one back end, and what only the test may read: each site's ledger."""

    wb: Workbench
    spent: Any  # (site, project) -> the epsilon that site's own ledger holds
    project: str = PROJECT
    runs_dir: Any = None  # the coordinator's run folders, where it keeps its copy of each model
    home: Any = None  # the remote researcher's own folder (key, ca.crt, dictionary)
    url: str = ""  # the study service's URL (remote only)

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
        fed.allocate(project=REMOTE_PROJECT, epsilon=ALLOCATION)
        fed.allocate(project=RESUME_PROJECT, epsilon=ALLOCATION)
        fed.allocate(project=FOLLOW_PROJECT, epsilon=ALLOCATION)
        yield fed
    finally:
        fed.stop()


@pytest.fixture(scope="module")
def service(loopback):
    """The coordinator's study service, as `workbench coordinator start` runs it."""
    from federation.coordinator.study_service.process import service_url, start_service, stop_service

    try:
        start_service(loopback.coordinator)
        yield service_url(loopback.coordinator)
    finally:
        stop_service(loopback.coordinator)


def _loopback_spent(fed: LoopbackFederation):
    def spent(site: str, project: str) -> float:
        with fed.ledger(site) as ledger:
            return ledger.spent(dataset=fed.node_config(site).dataset, project=project)

    return spent


@pytest.fixture(scope="module", params=["simulation", "coordinator_folder", "remote"])
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
    if request.param == "coordinator_folder":
        wb = Workbench.connect(
            coordinator=fed.coordinator.folder, dictionary=fed.dictionary_path, researcher=fed.researcher_key
        )
        return Arm(wb=wb, spent=_loopback_spent(fed), runs_dir=fed.coordinator.runs_dir)
    # The researcher's own folder: what they hold, and nothing else of the coordinator's disk.
    url = request.getfixturevalue("service")
    home = tmp_path_factory.mktemp("researcher-laptop")
    shutil.copy(fed.coordinator.tls.ca_certificate, home / "ca.crt")
    shutil.copy(fed.dictionary_path, home / "data_dictionary.json")
    for suffix in ("", ".pub"):
        shutil.copy(f"{fed.researcher_key}{suffix}", home / f"id_ed25519{suffix}")
    os.chmod(home / "id_ed25519", 0o600)
    wb = Workbench.connect(
        url=url, identity=home / "id_ed25519", ca=home / "ca.crt", dictionary=home / "data_dictionary.json"
    )
    return Arm(
        wb=wb, spent=_loopback_spent(fed), project=REMOTE_PROJECT, runs_dir=fed.coordinator.runs_dir, home=home, url=url
    )


@pytest.fixture(scope="module")
def trained(arm):
    return arm.wb.train(target_epsilon=EPSILON, rounds=2, project=arm.project)


def test_the_back_end_keeps_the_protocol(arm):
    assert isinstance(arm.wb.backend, Backend)
    assert {"train", "ask", "query_cost", "budget", "plan_training"} <= arm.wb.capabilities
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
        assert eps[site] == pytest.approx(arm.spent(site, arm.project), rel=1e-6)
        assert 0 < eps[site] <= EPSILON + 1e-6
    assert {r["site_id"] for r in trained.receipts} == set(arm.sites)


def test_the_coordinators_copy_of_the_model_is_the_one_that_came_back(arm, trained):
    if arm.runs_dir is None:
        pytest.skip("a simulation's model never leaves this process: there is no coordinator's copy to compare")
    assert isinstance(arm.wb.backend, (CoordinatorFolderBackend, RemoteBackend))
    folder = RunFolder(arm.runs_dir / trained.spec.run_id)
    saved = torch.load(folder.model_path, weights_only=True)
    mine = trained.model.state_dict()
    assert saved.keys() == mine.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, mine[name]), name
    # ... and so it evaluates like the coordinator's copy.
    from federation.protocol.spec import TrainingSpec
    from federation.training.models import build_model

    spec = TrainingSpec.from_config(trained.spec.to_config())
    copy = build_model(name=spec.model, n_features=trained.encoder.n_features, hidden=spec.hidden)
    copy.load_state_dict(saved)
    x = np.random.default_rng(1).uniform(0, 1, size=(16, trained.encoder.n_features)).astype(np.float32)
    np.testing.assert_array_equal(predict_proba(model=copy, x=x), predict_proba(model=trained.model, x=x))


def test_a_query_batch_is_costed_then_answered_and_charged_at_each_site(arm, trained):
    q = arm.wb.query
    batch = [q.count(by="site", epsilon=0.1), q.mean(column="age", bounds=(18, 95), epsilon=0.1)]
    before = {site: arm.spent(site, arm.project) for site in arm.sites}
    costs = arm.wb.query_cost(batch, project=arm.project)
    assert set(costs["site"]) == set(arm.sites) and len(costs) == 2 * len(arm.sites)
    assert {site: arm.spent(site, arm.project) for site in arm.sites} == before  # costing spends nothing
    count, mean = arm.wb.ask(batch, project=arm.project)
    assert set(count.answered) == set(arm.sites) and (count.by_site["estimate"] > 0).all()
    assert 18 <= float(mean.pooled["estimate"].iloc[0]) <= 95
    for site in arm.sites:
        assert arm.spent(site, arm.project) > before[site]


@pytest.fixture(scope="module")
def description(arm, trained):
    """The sites' noisy sizes, asked once (charged to the study's project at each site)."""
    return arm.wb.describe(project=arm.project, epsilon=0.1)


def test_describe_and_budget_report_each_site(arm, trained, description):
    assert sorted(description.sites["site"]) == arm.sites
    assert (description.sites["patients (noisy)"] > 0).all()
    budget = arm.wb.budget()
    mine = budget[budget["project"] == arm.project]
    assert sorted(mine["site"]) == arm.sites
    # The signed receipts this workbench sees (a simulation's ledgers; the coordinator's mirror)
    # hold the study's and the queries' releases at every site.
    receipts = [r for r in arm.wb.receipts() if r["project"] == arm.project and r["kind"] == "commit"]
    assert {r["site_id"] for r in receipts} == set(arm.sites)
    assert {r["run_id"] for r in receipts} >= {trained.spec.run_id}


def test_planning_from_public_parameters_agrees_with_each_sites_ledger(arm, trained, description):
    if PLAN_TRAINING not in arm.wb.capabilities:
        with pytest.raises(NotAvailable) as refused:
            arm.wb.plan_training(target_epsilon=0.5, rounds=2, project="contract-plan")
        assert ABSENT[PLAN_TRAINING] in str(refused.value)
        assert "plan_training" not in dir(arm.wb.backend)  # absent, not a stub that raises
        return
    # A fresh project: every site has room; a connected workbench plans from this session's
    # describe() (the fixture's), never asking the sites for a count of its own.
    plan = arm.wb.plan_training(target_epsilon=0.5, rounds=2, project="contract-plan")
    assert sorted(plan.per_site["site"]) == arm.sites and plan.fits
    # The project already spent: what the plan counts as spent is what each site's ledger holds
    # (a coordinator composes it from the sites' signed receipts, as the ledger does).
    spent_plan = arm.wb.plan_training(target_epsilon=ALLOCATION + 1.0, rounds=2, project=arm.project)
    before = spent_plan.per_site.set_index("site")["project_spent_before"]
    for site in arm.sites:
        assert before[site] == pytest.approx(arm.spent(site, arm.project), rel=1e-6)
    if isinstance(arm.wb.backend, (CoordinatorFolderBackend, RemoteBackend)):
        assert "ESTIMATE from noisy counts" in plan.basis and plan.per_site["cap"].isna().all()
        return
    # On a simulation, the plan from the same noisy counts agrees with the exact one as far as
    # the counts' noise allows: a site's noise is a step function of its rows (its steps per
    # round), so the exact noise lies between the plans at the ends of a band of six standard
    # deviations of the count's noise around the noisy count (from its stated 95% interval).
    exact = plan.per_site.set_index("site")
    estimate = arm.wb.plan_training(target_epsilon=0.5, rounds=2, project="contract-plan", sizes=description)
    estimate = estimate.per_site.set_index("site")
    counts = description.sites.set_index("site")
    for site in arm.sites:
        count = float(counts.loc[site, "patients (noisy)"])
        sd = (float(counts.loc[site, "interval high"]) - float(counts.loc[site, "interval low"])) / (2 * 1.96)
        ends = [
            arm.wb.plan_training(
                target_epsilon=0.5, rounds=2, project="contract-plan", sizes={**counts["patients (noisy)"], site: n}
            )
            .per_site.set_index("site")
            .loc[site, "noise_multiplier"]
            for n in (count + 6 * sd, max(count - 6 * sd, 1.0))
        ]
        # fewer rows, more noise; too few to plan at all (nan) bounds nothing
        high = math.inf if math.isnan(ends[1]) else ends[1]
        assert ends[0] <= estimate.loc[site, "noise_multiplier"] <= high, (site, count, sd, ends)
        assert ends[0] <= exact.loc[site, "noise_multiplier"] <= high, (site, count, sd, ends)


def test_what_a_back_end_lacks_is_refused_with_one_sentence(arm):
    calls = {
        "report": lambda: arm.wb.report(),
        "approvals": lambda: arm.wb.approvals(),
        "allocate": lambda: arm.wb.allocate(project="p", epsilon=1.0),
        "site_configs": lambda: arm.wb.site_configs(),
        "plan_tuning": lambda: arm.wb.plan_tuning(candidates=[{}], target_epsilon=1.0, rounds=2, project="p"),
        "studies": lambda: arm.wb.studies(),
        "follow": lambda: arm.wb.follow(study="0123456789ab"),
    }
    lacking = [m for m in calls if NEEDS[m] not in arm.wb.capabilities]
    if isinstance(arm.wb.backend, CoordinatorFolderBackend):
        assert lacking == list(calls)
    elif isinstance(arm.wb.backend, RemoteBackend):
        assert lacking == [m for m in calls if m not in ("studies", "follow")]
    else:  # a simulation runs in the notebook's own process: nothing to follow from elsewhere
        assert FOLLOW not in arm.wb.capabilities and {"studies", "follow"} <= set(lacking)
    for method in lacking:
        with pytest.raises(NotAvailable) as refused:
            calls[method]()
        assert str(refused.value) == f"wb.{method}() is not available on {arm.wb.backend.name}: {ABSENT[NEEDS[method]]}"


def test_a_study_service_that_goes_away_mid_study_is_followed_again_to_the_end(arm, request):
    if not isinstance(arm.wb.backend, RemoteBackend):
        pytest.skip("only a remote workbench follows a study through the service")
    loopback = request.getfixturevalue("loopback")
    from federation.coordinator.study_service.process import running_pid, start_service, stop_service

    timers: list[threading.Timer] = []
    service_before = running_pid(loopback.coordinator)

    def lose_the_service(report) -> None:
        if report.round == 1:  # the operator restarts the service: 3 s without it, and new sessions
            stop_service(loopback.coordinator)
            timers.append(threading.Timer(3.0, start_service, args=(loopback.coordinator,)))
            timers[0].start()

    result = arm.wb.train(target_epsilon=0.5, rounds=2, project=RESUME_PROJECT, on_round=lose_the_service)
    timers[0].join()
    assert running_pid(loopback.coordinator) not in (None, service_before)  # a new service process followed it
    assert result.stopped_reason == "" and sorted(result.weighted()["round"]) == [1, 2]
    assert {r["site_id"] for r in result.receipts if r["round"] == 2} == set(arm.sites)


def test_a_study_whose_notebook_was_killed_is_listed_and_followed_from_a_fresh_kernel(arm, tmp_path):
    if not isinstance(arm.wb.backend, RemoteBackend):
        pytest.skip("only a study started through the service outlives its notebook")
    home, url = arm.home, arm.url
    notebook = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("_killed_notebook.py")),
            "--url",
            url,
            "--project",
            FOLLOW_PROJECT,
        ],
        cwd=home,
        env={**engine_env(), "HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = notebook.stdout.readline()  # blocks until the service started the study
        assert first, notebook.stderr.read()[-3000:]
        study = json.loads(first)["study"]
    finally:
        notebook.kill()  # the researcher's kernel dies mid-study
        notebook.wait(timeout=30)
    assert RunFolder(arm.runs_dir / study).outcome() is None  # it had not ended when the kernel died

    wb = Workbench.connect(
        url=url, identity=home / "id_ed25519", ca=home / "ca.crt", dictionary=home / "data_dictionary.json"
    )
    listed = wb.studies()
    assert list(listed.columns) == ["study", "project", "started", "status", "rounds_done"]
    assert listed["started"].is_monotonic_decreasing and listed["study"].iloc[0] == study  # newest first
    assert listed.set_index("study").loc[study, "project"] == FOLLOW_PROJECT
    owners = {json.loads((arm.runs_dir / s / "owner.json").read_text())["fingerprint"] for s in listed["study"]}
    assert owners == {wb.backend.client.fingerprint}  # this researcher's own studies, and only those

    result = wb.follow(study=study)
    assert isinstance(result.model, nn.Module) and result.spec.run_id == study and result.stopped_reason == ""
    assert result.spec.project == FOLLOW_PROJECT and result.spec.rounds == 2
    assert sorted(result.weighted()["round"]) == [1, 2]  # the whole history, not only what came after
    coordinator_copy = torch.load(arm.runs_dir / study / "model.pt", weights_only=True)
    mine = result.model.state_dict()
    assert sorted(mine) == sorted(coordinator_copy)
    for name, tensor in coordinator_copy.items():
        assert torch.equal(mine[name], tensor), name
    assert {c.site for c in result.charges} == set(arm.sites)
    assert all(c.rounds_charged == (1, 2) for c in result.charges)
    assert {r["site_id"] for r in result.receipts if r["round"] == 2} == set(arm.sites)
    after = wb.studies().set_index("study").loc[study]
    assert after["status"] == "finished" and after["rounds_done"] == 2

    # Another researcher neither sees it nor follows it (refused like a study that does not exist).
    generate_key_pair(path=tmp_path / "other", passphrase=None, comment="another researcher")
    other = Workbench.connect(
        url=url, identity=tmp_path / "other", ca=home / "ca.crt", dictionary=home / "data_dictionary.json"
    )
    assert other.studies().empty
    with pytest.raises(NotYours, match="no study .* of yours"):
        other.follow(study=study)
    with pytest.raises(NotYours, match="no study .* of yours"):
        wb.follow(study="0123456789ab")

    # A service (or a coordinator disk) that hands back another spec than the one signed is caught.
    study_file = arm.runs_dir / study / "study.json"
    signed = study_file.read_text()
    changed = json.loads(signed)
    changed["spec"]["spec-hidden"] += 1  # a model the researcher did not sign for
    study_file.write_text(json.dumps(changed))
    try:
        with pytest.raises(BadSignedStudy, match="not the study this researcher signed"):
            wb.follow(study=study)
    finally:
        study_file.write_text(signed)

    # Every listing is in the service's hash-chained log, under who asked.
    from federation.coordinator.study_service.audit_log import read_chain
    from federation.coordinator.study_service.process import ServiceFiles

    lines = read_chain(ServiceFiles(arm.runs_dir.parent).audit_log)
    listings = {e["who"] for e in lines if e.get("action") == "list_studies"}
    assert wb.backend.client.fingerprint in listings and other.backend.client.fingerprint in listings
