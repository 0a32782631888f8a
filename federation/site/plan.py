"""A site's own privacy plan for one training run, calibrated once and kept on disk.

The site computes the noise from the parameters it will itself execute: its own
number of training records gives its own sampling rate; all planned rounds times
local steps are calibrated together against the study's target, counting what the
project already spent at this dataset (range finding included). The plan is written
to the state folder, so a node restarted mid-run keeps the same noise instead of
recalibrating against a history its own earlier rounds changed.

The study's ``target_epsilon`` covers everything the run releases at this site, not
only DP-SGD. A share of the room it leaves (the site's ``evaluation_share``, 20% by
default) pays for the releases beside the model updates, each noised on the integers
from a secure source and charged as the discrete mechanism that ran
(``federation/analytics/count_release.py``):

- one noisy number of training records, the FedAvg weight (released in round 1, kept
  in this plan and sent again for free in later rounds);
- one noisy evaluation per round (noisy per-class counts at a public threshold grid
  and a clipped loss sum; ``federation/training/evaluation.py``).

Gaussian releases compose about as one Gaussian whose precision (1 / noise
multiplier^2) is the sum of theirs, so the share is found as one Gaussian and its
precision divided: half to the final round's evaluation (the one a study reports), a
tenth to the row count, the rest evenly to the other rounds' evaluations; sigma is
searched so that the exact discrete events of these releases cost the share. DP-SGD is
then calibrated so that the prior spending, all these releases and the training
together stay within the target, in the ledger's own arithmetic (PLD).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import dp_accounting as dpa

from federation.analytics.count_release import count_event, evaluation_event
from federation.errors import BudgetRefused, InvalidRequest
from federation.protocol.spec import TrainingSpec
from federation.training.dp_sgd import planned_sampling
from privacy_budgets import Ledger, accounting
from privacy_budgets.errors import NoNoiseFits, ProjectBudgetSpent
from privacy_budgets.mechanisms import composed_event, dpsgd_event
from privacy_budgets.planning import calibrate_for_project

# Shares of the evaluation share's precision (see the module docstring).
FINAL_EVALUATION_SHARE = 0.5
WEIGHT_SHARE = 0.1
_RELEASE_NOISE_MAX = 2000.0  # a share needing more is no evaluation at all (and a discrete PLD that large is slow)


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
    #: The site's evaluation_share when planned, and the noise multiplier of each release
    #: it pays for: the FedAvg weight, the evaluations of rounds 1..R-1, the final one.
    evaluation_share: float = 0.0
    weight_noise: float = 0.0
    evaluation_noise: float = 0.0
    final_evaluation_noise: float = 0.0
    #: The noisy FedAvg weight once released (round 1); later rounds send it again.
    fedavg_weight: int | None = None
    #: Fingerprint of the request's parameters that shape the plan (a later round must match).
    request: str = ""

    def planned_epsilon(self) -> float:
        return accounting.epsilon(events=self.planned_events(), delta=self.delta)

    def dpsgd(self) -> dpa.DpEvent:
        """The whole run's DP-SGD as planned."""
        return dpsgd_event(
            noise_multiplier=self.noise_multiplier,
            sampling_rate=self.sampling_rate,
            steps=self.steps_per_round * self.rounds,
        )

    def planned_events(self) -> list[dpa.DpEvent]:
        """Every release of the run at this site, as the ledger will compose them."""
        return [self.dpsgd(), *release_events(self)]

    def evaluation_noise_of(self, server_round: int) -> float:
        return self.final_evaluation_noise if server_round == self.rounds else self.evaluation_noise

    def release_epsilon(self) -> float:
        """What the evaluations and the row count cost on their own (the share's epsilon)."""
        events = release_events(self)
        return accounting.epsilon(events=events, delta=self.delta) if events else 0.0


def release_events(plan: SitePlan) -> list[dpa.DpEvent]:
    if plan.weight_noise <= 0:
        return []  # a plan written before evaluations were charged
    return _release_events(
        rounds=plan.rounds,
        weight_noise=plan.weight_noise,
        evaluation_noise=plan.evaluation_noise,
        final_evaluation_noise=plan.final_evaluation_noise,
    )


def _release_events(
    *, rounds: int, weight_noise: float, evaluation_noise: float, final_evaluation_noise: float
) -> list[dpa.DpEvent]:
    """The discrete events of the row count and every round's evaluation, as charged."""
    events = [count_event(noise_multiplier=weight_noise)]
    if rounds > 1:
        events += [evaluation_event(noise_multiplier=evaluation_noise)] * (rounds - 1)
    events.append(evaluation_event(noise_multiplier=final_evaluation_noise))
    return events


def request_fingerprint(spec: TrainingSpec) -> str:
    """What a later message of the run must repeat: the parameters the plan was made for."""
    shaped = {
        "target_epsilon": spec.target_epsilon,
        "rounds": spec.rounds,
        "batch_size": spec.batch_size,
        "local_epochs": spec.local_epochs,
        "model": spec.model,
        "hidden": spec.hidden,
    }
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:16]


def _plan_path(plans_dir: Path, spec: TrainingSpec, dataset: str) -> Path:
    return plans_dir / f"{spec.project}--{spec.run_id}--{dataset}.json"


def _release_noise(*, share_epsilon: float, delta: float, rounds: int, floor: float) -> dict[str, float]:
    """Noise multipliers of the row count and the evaluations so that, composed as the
    discrete events the site will charge, they cost ``share_epsilon`` (see the module
    docstring: the precision of one Gaussian of multiplier sigma, divided)."""
    intermediate = (1.0 - FINAL_EVALUATION_SHARE - WEIGHT_SHARE) / (rounds - 1) if rounds > 1 else 0.0
    final = FINAL_EVALUATION_SHARE if rounds > 1 else 1.0 - WEIGHT_SHARE

    def noise_of(sigma: float) -> dict[str, float]:
        return {
            "weight_noise": sigma / math.sqrt(WEIGHT_SHARE),
            "evaluation_noise": sigma / math.sqrt(intermediate) if intermediate else 0.0,
            "final_evaluation_noise": sigma / math.sqrt(final),
        }

    def cost(sigma: float) -> float:
        return accounting.epsilon(events=_release_events(rounds=rounds, **noise_of(sigma)), delta=delta)

    sigma, _ = accounting.calibrate_noise(
        cost=cost, target_epsilon=share_epsilon, minimum=floor, maximum=_RELEASE_NOISE_MAX
    )
    return noise_of(sigma)


def calibrate_plan(
    *,
    ledger: Ledger,
    spec: TrainingSpec,
    dataset: str,
    n_train: int,
    policy: Any,
    include_reserved: bool = True,
) -> SitePlan:
    """A new plan for ``spec`` at this site (nothing written, nothing reserved).

    ``policy`` is the site's NodePolicy: its ``evaluation_share`` and its
    ``noise_multiplier_range`` (the bracket DP-SGD's noise is searched in). Raises
    ProjectBudgetSpent (the project's own numbers) when the project's target leaves no
    room; ``site_plan`` sends it as a budget refusal.
    """
    sampling_rate, steps_per_round = planned_sampling(
        n_train=n_train, batch_size=spec.batch_size, local_epochs=spec.local_epochs
    )
    delta = ledger.dataset_delta(dataset=dataset)
    prior = ledger.events(dataset=dataset, project=spec.project, include_reserved=include_reserved)
    prior_epsilon = accounting.epsilon(events=prior, delta=delta) if prior else 0.0
    lowest, highest = policy.noise_multiplier_range
    room = spec.target_epsilon - prior_epsilon
    try:
        if room <= 0:
            raise NoNoiseFits(target_epsilon=spec.target_epsilon, maximum=highest, epsilon_at_maximum=prior_epsilon)
        noise = _release_noise(
            share_epsilon=policy.evaluation_share * room, delta=delta, rounds=spec.rounds, floor=lowest
        )
    except NoNoiseFits:
        raise ProjectBudgetSpent(
            project=spec.project,
            site=ledger.site_id,
            spent=prior_epsilon,
            target_epsilon=spec.target_epsilon,
            allocation=ledger.allocation(dataset=dataset, project=spec.project),
            maximum=highest,
        ) from None
    draft = SitePlan(
        run_id=spec.run_id,
        project=spec.project,
        dataset=dataset,
        n_train=n_train,
        sampling_rate=sampling_rate,
        steps_per_round=steps_per_round,
        rounds=spec.rounds,
        noise_multiplier=1.0,
        target_epsilon=spec.target_epsilon,
        prior_epsilon=prior_epsilon,
        delta=delta,
        evaluation_share=policy.evaluation_share,
        request=request_fingerprint(spec),
        **noise,
    )
    calibration = calibrate_for_project(
        ledger=ledger,
        dataset=dataset,
        project=spec.project,
        target_epsilon=spec.target_epsilon,
        sampling_rate=sampling_rate,
        steps=steps_per_round * spec.rounds,
        include_reserved=include_reserved,
        minimum=lowest,
        maximum=highest,
        planned=release_events(draft),
    )
    return replace(draft, noise_multiplier=calibration.noise_multiplier, at_minimum_noise=calibration.at_minimum)


def site_plan(
    *, ledger: Ledger, spec: TrainingSpec, dataset: str, n_train: int, plans_dir: Path, policy: Any
) -> SitePlan:
    """The saved plan for this run, or a new one calibrated now (and saved).

    A later message of the run must repeat the parameters the plan was made for
    (target, rounds, batch size, epochs, model): a coordinator cannot stretch a run
    beyond what the site planned its noise for.
    """
    path = _plan_path(plans_dir, spec, dataset)
    if path.exists():
        plan = _read(path)
        if plan.n_train != n_train:
            raise PlanRefused(
                f"the training data of dataset {dataset!r} changed during run {spec.run_id} "
                f"({plan.n_train} rows when planned, {n_train} now); start a new run.",
                public=f"the site's training data changed during run {spec.run_id}. Fix: start a new run.",
            )
        if plan.request and plan.request != request_fingerprint(spec):
            said = f"{plan.rounds} rounds at target epsilon {plan.target_epsilon:g}"
            raise InvalidRequest(
                f"run {spec.run_id} was planned at this site for {said} with other batch size, epochs or model; "
                "this message asks for something else. A run keeps the parameters of its first message: "
                "start a new run to change them.",
                public=(
                    f"run {spec.run_id} was planned at this site for {said}; a later message of the run must "
                    "repeat the parameters of the first (target, rounds, batch size, epochs, model). Fix: "
                    "start a new run to change them."
                ),
            )
        return plan
    try:
        plan = calibrate_plan(ledger=ledger, spec=spec, dataset=dataset, n_train=n_train, policy=policy)
    except ProjectBudgetSpent as err:
        raise PlanRefused(str(err), public=str(err)) from None  # the project's own numbers only
    _write(path, plan)
    return plan


def keep_fedavg_weight(*, plan: SitePlan, weight: int, plans_dir: Path, spec: TrainingSpec) -> SitePlan:
    """The plan with its released FedAvg weight, written back (later rounds resend it)."""
    kept = replace(plan, fedavg_weight=int(weight))
    _write(_plan_path(plans_dir, spec, plan.dataset), kept)
    return kept


def _read(path: Path) -> SitePlan:
    data = json.loads(path.read_text())
    known = {f.name for f in fields(SitePlan)}
    return SitePlan(**{k: v for k, v in data.items() if k in known})


def _write(path: Path, plan: SitePlan) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(plan), indent=2))
    os.replace(tmp, path)  # whole or absent


def training_event(*, plan: SitePlan, steps: int, sampling_rate: float, with_weight: bool) -> dpa.DpEvent:
    """One round's charge: its DP-SGD steps, and in round 1 the noisy row count too."""
    event = dpsgd_event(noise_multiplier=plan.noise_multiplier, sampling_rate=sampling_rate, steps=steps)
    if not with_weight:
        return event
    return composed_event([event, count_event(noise_multiplier=plan.weight_noise)])
