"""A site's own privacy plan for one training run, calibrated once and kept on disk.

The site computes the noise from the parameters it will itself execute: its own
number of training records gives its own sampling rate; all planned rounds times
local steps are calibrated together against the study's target, counting what the
project already spent at this dataset (range finding included). The plan is written
to the state folder, so a node restarted mid-run keeps the same noise instead of
recalibrating against a history its own earlier rounds changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from federation.errors import BudgetRefused
from federation.protocol.spec import TrainingSpec
from federation.training.dp_sgd import planned_sampling
from privacy_budgets import Ledger, accounting
from privacy_budgets.errors import ProjectBudgetSpent
from privacy_budgets.planning import calibrate_for_project


class PlanRefused(BudgetRefused):
    """The study cannot run at this site within its target; the message says why."""


@dataclass(frozen=True)
class SitePlan:
    run_id: str
    project: str
    dataset: str
    n_train: int
    sampling_rate: float
    steps_per_round: int
    rounds: int
    noise_multiplier: float
    target_epsilon: float
    prior_epsilon: float
    delta: float
    #: The site's least noise already kept the project under its target (it spends less).
    at_minimum_noise: bool = False

    def planned_epsilon(self) -> float:
        from privacy_budgets.mechanisms import dpsgd_event

        return accounting.epsilon(
            events=[
                dpsgd_event(
                    noise_multiplier=self.noise_multiplier,
                    sampling_rate=self.sampling_rate,
                    steps=self.steps_per_round * self.rounds,
                )
            ],
            delta=self.delta,
        )


def _plan_path(plans_dir: Path, spec: TrainingSpec, dataset: str) -> Path:
    return plans_dir / f"{spec.project}--{spec.run_id}--{dataset}.json"


def site_plan(*, ledger: Ledger, spec: TrainingSpec, dataset: str, n_train: int, plans_dir: Path) -> SitePlan:
    """The saved plan for this run, or a new one calibrated now."""
    path = _plan_path(plans_dir, spec, dataset)
    if path.exists():
        plan = SitePlan(**json.loads(path.read_text()))
        if plan.n_train != n_train:
            raise PlanRefused(
                f"the training data of dataset {dataset!r} changed during run {spec.run_id} "
                f"({plan.n_train} rows when planned, {n_train} now); start a new run."
            )
        return plan

    sampling_rate, steps_per_round = planned_sampling(
        n_train=n_train, batch_size=spec.batch_size, local_epochs=spec.local_epochs
    )
    try:
        calibration = calibrate_for_project(
            ledger=ledger,
            dataset=dataset,
            project=spec.project,
            target_epsilon=spec.target_epsilon,
            sampling_rate=sampling_rate,
            steps=steps_per_round * spec.rounds,
            include_reserved=True,
        )
    except ProjectBudgetSpent as err:
        raise PlanRefused(str(err)) from None
    plan = SitePlan(
        run_id=spec.run_id,
        project=spec.project,
        dataset=dataset,
        n_train=n_train,
        sampling_rate=sampling_rate,
        steps_per_round=steps_per_round,
        rounds=spec.rounds,
        noise_multiplier=calibration.noise_multiplier,
        target_epsilon=spec.target_epsilon,
        prior_epsilon=calibration.prior_epsilon,
        delta=ledger.dataset_delta(dataset=dataset),
        at_minimum_noise=calibration.at_minimum,
    )
    plans_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(plan), indent=2))
    os.replace(tmp, path)  # whole or absent
    return plan
