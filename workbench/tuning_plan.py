"""Planning a charged hyperparameter search before anything is spent.

In a federated search every candidate's round updates and noisy evaluations reach the
coordinator, so the honest cost at a site is the composition of every candidate run,
each charged through the site's normal paths (its DP-SGD rounds and its own DP
evaluations). Choosing the best candidate from those noisy evaluations is then
post-processing, free; nothing is charged twice.

How ``target_epsilon`` is split (the search's total at each site, the project's earlier
spending there included):

- every candidate runs as a study of its own, under its own ledger project
  (``<project>-tune01``, ...), with one per-candidate target ``candidate_epsilon``: each
  site calibrates it exactly as it calibrates any study (its own sampling rate, its
  ``evaluation_share`` for the noisy evaluations, DP-SGD on the rest), so every
  candidate gets the same privacy and a fair comparison;
- for a tune-then-train study (``final_share``), the chosen configuration is trained
  again under the project itself, with ``final_share`` of what the project has left as
  its own target;
- ``candidate_epsilon`` is the largest value for which the project's earlier spending,
  every candidate and the final training, composed at every site in the ledger's own
  PLD arithmetic from the exact events each site will charge, stay within
  ``target_epsilon``: regula falsi over an explicit bracket (``largest_fitting``), ending
  on a value that was composed and fits.

Composition is much tighter than adding: eight candidates at epsilon 0.3 each compose
to about 1.1, not 2.4. A search that cannot fit (the sites cannot calibrate a candidate
that small, or a cap or the project's allocation is in the way) is refused before
anything runs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields
from typing import Any

import dp_accounting as dpa
import pandas as pd

from federation.errors import BadInput
from federation.protocol.spec import TrainingSpec, refuse_site_owned
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.plan import SitePlan, calibrate_plan
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import Ledger, accounting
from privacy_budgets.errors import PrivacyBudgetError

# The fields a candidate may set: the study's hyperparameters (not its project, target,
# run id or delta: the search sets those).
_SEARCH_OWNED = ("project", "target_epsilon", "run_id", "delta", "coordinator")
TUNABLE = tuple(f.name for f in fields(TrainingSpec) if f.name not in _SEARCH_OWNED)
CALIBRATION_RTOL = 5e-3  # the search's total lands within 0.5% under the target


class TuningError(BadInput, ValueError):
    """A search asked for something that breaks a rule (the message says which, and the fix)."""


def candidate_grid(**axes: Any) -> list[dict[str, Any]]:
    """Every combination of the given hyperparameter values, as candidates.

    >>> candidate_grid(learning_rate=(0.3, 1.0), batch_size=(64,))
    [{'learning_rate': 0.3, 'batch_size': 64}, {'learning_rate': 1.0, 'batch_size': 64}]
    """
    names = list(axes)
    values = [v if isinstance(v, (list, tuple)) else (v,) for v in axes.values()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def candidate_project(project: str, index: int) -> str:
    """The ledger project of candidate ``index`` (1-based) of a search under ``project``."""
    return f"{project}-tune{index:02d}"


def normalise_candidates(*, candidates: Any, rounds: int, common: dict[str, Any], delta: float) -> list[dict[str, Any]]:
    """Each candidate as a full set of hyperparameters (``common`` under it, ``rounds``
    unless it sets its own), checked by building its TrainingSpec."""
    if isinstance(candidates, dict) or not isinstance(candidates, (list, tuple)) or not candidates:
        raise TuningError(
            f"candidates must be a non-empty list of hyperparameter dicts; got {candidates!r}. Fix: e.g. "
            "candidates=[{'learning_rate': 0.3}, {'learning_rate': 1.0}] or workbench.tuning.candidate_grid(...)."
        )
    refuse_site_owned(common)
    out = []
    for i, candidate in enumerate(candidates, start=1):
        if not isinstance(candidate, dict):
            raise TuningError(f"candidate {i} must be a dict of hyperparameters; got {candidate!r}.")
        refuse_site_owned(candidate)
        unknown = sorted(set(candidate) - set(TUNABLE))
        if unknown:
            raise TuningError(
                f"candidate {i} sets {', '.join(unknown)}, which a search does not tune (it sets the project, "
                f"targets and run ids itself). Fix: use only {', '.join(TUNABLE)}."
            )
        full = {"rounds": rounds, **common, **candidate}
        TrainingSpec(project="check", target_epsilon=1.0, delta=delta, **full)  # SpecError names a bad value
        out.append(full)
    return out


@dataclass(frozen=True)
class SiteFacts:
    """What one site's plans need: its rows, policy, delta and the project's history."""

    site: str
    dataset: str
    n_train: int
    policy: NodePolicy
    delta: float
    prior: tuple[dpa.DpEvent, ...]  # the project's own events there (committed and reserved)
    dataset_events: tuple[dpa.DpEvent, ...]  # every project's
    cap: float | None
    allocation: float | None  # the project's, if the board granted one
    used_names: tuple[str, ...]  # candidate projects that already hold entries here


@dataclass(frozen=True)
class TuningPlan:
    """A charged search, planned: the split of the target and every site's projected cost.

    ``per_site``: one row per site (the search's composed total, the naive sum of the
    runs' epsilons beside it, the dataset's total after, whether it fits and what binds);
    ``per_candidate``: one row per site and run (its noise, sampling, evaluation noise and
    its own epsilon). Nothing has been spent.
    """

    project: str
    target_epsilon: float
    delta: float
    candidates: tuple[dict[str, Any], ...]
    candidate_epsilon: float  # each candidate's own target (a fresh ledger project)
    final_share: float | None
    final_target: float | None  # the final training's target: the project's total, its prior included
    per_site: pd.DataFrame
    per_candidate: pd.DataFrame
    reason: str = ""  # why it does not fit, when it does not

    @property
    def fits(self) -> bool:
        return not self.reason and bool(self.per_site["fits"].all())

    @property
    def candidate_projects(self) -> list[str]:
        return [candidate_project(self.project, i) for i in range(1, len(self.candidates) + 1)]

    def statement(self) -> str:
        """The split in words."""
        k = len(self.candidates)
        final = (
            f" and the training of the chosen configuration again under '{self.project}' (its own target "
            f"{self.final_target:.3g}, {self.final_share:g} of what the project has left)"
            if self.final_share
            else "; the chosen candidate's model is the result (it was released already, so keeping it is free)"
        )
        worst = self.per_site["total_after"].max() if not self.per_site.empty else float("nan")
        return (
            f"{k} candidate run(s), each a study of its own at epsilon {self.candidate_epsilon:.3g} per site{final}. "
            f"Composed at every site with its earlier spending for this project (PLD, each site's own plans), "
            f"the whole search costs at most epsilon {worst:.3g} at delta {self.delta:g} per site, within the "
            f"target {self.target_epsilon:g}; adding the runs' epsilons would have said "
            f"{self.per_site['naive_sum'].max():.3g}. Choosing the best candidate from the sites' noisy "
            "evaluations is post-processing: it costs nothing more."
        )

    def plot(self, ax: Any = None):
        """Per site: epsilon as the runs compose (PLD), the naive sum, the target."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 3.5))
        for site, g in self.per_candidate.groupby("site", sort=False):
            ax.plot(g["run_number"], g["composed_epsilon"], marker="o", label=f"{site} (composed)")
        first = self.per_candidate[self.per_candidate["site"] == self.per_candidate["site"].iloc[0]]
        ax.plot(first["run_number"], first["run_number"] * self.candidate_epsilon, ls=":", color="grey", label="sum")
        ax.axhline(self.target_epsilon, color="k", ls="--", lw=1, label="target")
        ax.set(
            xlabel="runs so far (candidates, then the final training)",
            ylabel=f"epsilon at delta {self.delta:g}",
            title=f"Search '{self.project}': {len(self.candidates)} candidates",
        )
        ax.legend(fontsize=7)
        return ax

    def __repr__(self) -> str:
        verdict = "fits every site" if self.fits else f"does NOT fit: {self.reason or 'see fits and binding'}"
        cols = ["site", "candidate_epsilon", "search_epsilon", "total_after", "naive_sum", "fits", "binding"]
        return (
            f"TuningPlan({len(self.candidates)} candidates, target epsilon {self.target_epsilon:g}: {verdict})\n"
            f"{self.per_site[cols].to_string(index=False)}\n{self.statement()}"
        )

    def _repr_html_(self) -> str:
        verdict = (
            "<span style='color:#1a7f37'>fits every site</span>"
            if self.fits
            else f"<span style='color:#cf222e'><b>does not fit</b>: {self.reason or 'see the rows marked False'}</span>"
        )
        return (
            f"<h4>Tuning plan: {len(self.candidates)} candidates, target epsilon {self.target_epsilon:g} per site</h4>"
            f"<p>The plan {verdict}. {self.statement()} Nothing has been spent.</p>"
            + self.per_site.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        )


def site_facts(*, sites: list[SiteConfig], encoder: FeatureEncoder, project: str, n_candidates: int) -> list[SiteFacts]:
    """Each site's rows (counted here: a simulation holds them), policy and ledger facts."""
    out = []
    for config in sites:
        policy = NodePolicy.default_for(config)
        n_train = len(site_arrays(site=config, policy=policy, encoder=encoder).y_train)
        with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
            used = tuple(
                name
                for name in (candidate_project(project, i) for i in range(1, n_candidates + 1))
                if ledger.events(dataset=config.dataset, project=name)
                or ledger.allocation(dataset=config.dataset, project=name) is not None
            )
            out.append(
                SiteFacts(
                    site=config.site_id,
                    dataset=config.dataset,
                    n_train=n_train,
                    policy=policy,
                    delta=ledger.dataset_delta(dataset=config.dataset),
                    prior=tuple(ledger.events(dataset=config.dataset, project=project, include_reserved=True)),
                    dataset_events=tuple(ledger.events(dataset=config.dataset, include_reserved=True)),
                    cap=ledger.cap(dataset=config.dataset),
                    allocation=ledger.allocation(dataset=config.dataset, project=project),
                    used_names=used,
                )
            )
    return out


class _PlanLedger:
    """What ``calibrate_plan`` reads from a ledger, for a project with the given history:
    the site's own calibration, run against a history that is not written yet."""

    def __init__(self, *, facts: SiteFacts, project: str, prior: tuple[dpa.DpEvent, ...]) -> None:
        self.site_id = facts.site
        self._facts, self._project, self._prior = facts, project, prior

    def dataset_delta(self, *, dataset: str) -> float:
        return self._facts.delta

    def events(self, *, dataset: str, project: str | None = None, include_reserved: bool = True) -> list:
        return list(self._prior) if project == self._project else []

    def allocation(self, *, dataset: str, project: str) -> float | None:
        return None


def site_run_plan(*, facts: SiteFacts, spec: TrainingSpec, prior: tuple[dpa.DpEvent, ...] = ()) -> SitePlan:
    """The plan this site will make for ``spec`` when its project's history is ``prior``:
    ``federation.site.plan.calibrate_plan`` itself, reading that history."""
    ledger = _PlanLedger(facts=facts, project=spec.project, prior=prior)
    return calibrate_plan(
        ledger=ledger,  # type: ignore[arg-type]  # reads only delta, events and allocation
        spec=spec,
        dataset=facts.dataset,
        n_train=facts.n_train,
        policy=facts.policy,
        include_reserved=True,
    )


def _plan_key(facts: SiteFacts, hp: dict[str, Any]) -> tuple:
    return (facts.site, hp["rounds"], hp.get("batch_size"), hp.get("local_epochs"), hp.get("model"), hp.get("hidden"))


class _Planner:
    """Every site's plans at a per-candidate target, cached: candidates that differ only in
    what does not shape a plan (learning rate, clipping norm, momentum) share one."""

    def __init__(self, *, facts: list[SiteFacts], project: str, candidates: list[dict[str, Any]], delta: float) -> None:
        self.facts, self.project, self.candidates, self.delta = facts, project, candidates, delta
        self._cache: dict[tuple, SitePlan] = {}

    def candidate_spec(self, index: int, epsilon: float) -> TrainingSpec:
        return TrainingSpec(
            project=candidate_project(self.project, index + 1),
            target_epsilon=epsilon,
            delta=self.delta,
            **self.candidates[index],
        )

    def candidate_plan(self, facts: SiteFacts, index: int, epsilon: float) -> SitePlan:
        key = (*_plan_key(facts, self.candidates[index]), epsilon)
        if key not in self._cache:
            self._cache[key] = site_run_plan(facts=facts, spec=self.candidate_spec(index, epsilon))
        return self._cache[key]

    def search_events(self, facts: SiteFacts, epsilon: float) -> list[dpa.DpEvent]:
        events: list[dpa.DpEvent] = []
        for i in range(len(self.candidates)):
            events += self.candidate_plan(facts, i, epsilon).planned_events()
        return events


def plan_tuning(
    *,
    sites: list[SiteConfig],
    encoder: FeatureEncoder,
    candidates: list[dict[str, Any]],
    target_epsilon: float,
    rounds: int,
    project: str,
    final_share: float | None = None,
    delta: float = 1e-5,
    **common: Any,
) -> TuningPlan:
    """The split of ``target_epsilon`` among the candidates (and a final training), and
    every site's projected cost; nothing is spent. See the module docstring."""
    accounting.check_epsilon(target_epsilon, name="target_epsilon")
    if final_share is not None and (
        isinstance(final_share, bool) or not isinstance(final_share, (int, float)) or not 0 < final_share < 1
    ):
        raise TuningError(
            f"final_share must be a number in (0, 1) (the final training's share of what the project has left) "
            f"or None (keep the best candidate's model); got {final_share!r}. Fix: e.g. final_share=0.5."
        )
    TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, delta=delta)  # names a bad value
    hps = normalise_candidates(candidates=candidates, rounds=rounds, common=common, delta=delta)
    facts = site_facts(sites=sites, encoder=encoder, project=project, n_candidates=len(hps))
    return plan_from_facts(
        facts=facts, hps=hps, target_epsilon=target_epsilon, project=project, final_share=final_share, delta=delta
    )


def plan_from_facts(
    *,
    facts: list[SiteFacts],
    hps: list[dict[str, Any]],
    target_epsilon: float,
    project: str,
    final_share: float | None,
    delta: float,
    final_facts: list[SiteFacts] | None = None,
) -> TuningPlan:
    """``plan_tuning`` for sites described by their facts (a benchmark that runs its own
    sites builds them itself); ``hps`` as ``normalise_candidates`` returns them.
    ``final_facts`` (same sites, same order) when the final training sees other rows
    than the candidates (a site that holds out validation rows while tuning)."""
    final_of = {f.site: f for f in (final_facts or facts)}
    planner = _Planner(facts=facts, project=project, candidates=hps, delta=delta)
    prior_epsilon = {f.site: accounting.epsilon(events=f.prior, delta=f.delta) if f.prior else 0.0 for f in facts}
    reason = _precheck(facts=facts, project=project, target_epsilon=target_epsilon, prior_epsilon=prior_epsilon)

    final_target = None
    if final_share is not None:
        worst_prior = max(prior_epsilon.values(), default=0.0)
        final_target = worst_prior + final_share * (target_epsilon - worst_prior)
    # The final training's configuration is chosen by the search, so the plan holds for
    # every shape it may take: the total is the worst over them.
    finals: dict[str, list[list[dpa.DpEvent]]] = {f.site: [[]] for f in facts}
    if final_target is not None and not reason:
        try:
            finals = {
                f.site: _final_plans(facts=final_of[f.site], project=project, hps=hps, target=final_target, delta=delta)
                for f in facts
            }
        except PrivacyBudgetError as err:
            reason = f"the final training cannot be planned at its target {final_target:.3g}: {err}"

    def total(f: SiteFacts, epsilon: float) -> float:
        search = planner.search_events(f, epsilon)
        return max(accounting.epsilon(events=[*f.prior, *search, *final], delta=f.delta) for final in finals[f.site])

    def cost(epsilon: float) -> float:
        try:
            return max(total(f, epsilon) for f in facts)
        except PrivacyBudgetError:  # a site cannot calibrate a candidate this small
            return math.inf

    candidate_epsilon = float("nan")
    if not reason:
        runs = len(hps) + (1 if final_share is not None else 0)
        found = largest_fitting(
            cost=cost, target=target_epsilon, low=target_epsilon / (4.0 * runs), high=target_epsilon
        )
        if found is None:
            reason = _too_many_runs(hps=hps, target_epsilon=target_epsilon, final_share=final_share)
        else:
            candidate_epsilon = found
    per_site, per_candidate = _tables(
        facts=facts,
        planner=planner,
        finals=finals,
        candidate_epsilon=candidate_epsilon,
        target_epsilon=target_epsilon,
        prior_epsilon=prior_epsilon,
        final_target=final_target,
        reason=reason,
    )
    return TuningPlan(
        project=project,
        target_epsilon=float(target_epsilon),
        delta=delta,
        candidates=tuple(hps),
        candidate_epsilon=candidate_epsilon,
        final_share=final_share,
        final_target=final_target,
        per_site=per_site,
        per_candidate=per_candidate,
        reason=reason,
    )


def _final_plans(
    *, facts: SiteFacts, project: str, hps: list[dict[str, Any]], target: float, delta: float
) -> list[list[dpa.DpEvent]]:
    """The final training's events at this site, one list per shape it may take (the
    candidates' distinct rounds, batch size, epochs and model), each as the site will
    plan it under the project after its earlier spending."""
    shapes: dict[tuple, list[dpa.DpEvent]] = {}
    for hp in hps:
        key = _plan_key(facts, hp)
        if key not in shapes:
            spec = TrainingSpec(project=project, target_epsilon=target, delta=delta, **hp)
            shapes[key] = site_run_plan(facts=facts, spec=spec, prior=facts.prior).planned_events()
    return list(shapes.values())


def largest_fitting(*, cost, target: float, low: float, high: float) -> float | None:
    """The largest x in [low, high] with ``cost(x) <= target``, within CALIBRATION_RTOL
    of the target on the side that fits; None when even ``low`` does not fit.

    ``cost`` rises with x and is smooth in log-log scale (the composition of runs each
    calibrated to x), so regula falsi there (Illinois variant) needs a handful of
    evaluations where bisection needs a dozen: each is every site's own calibration of
    every candidate, seconds apiece. Only a point that was evaluated and fits is returned.
    """
    at_high = cost(high)
    if at_high <= target:
        return high
    at_low = cost(low)
    while at_low == math.inf and low * 1.5 < high:
        # The bottom of the bracket cannot be planned (a site's evaluation noise would leave
        # its range at so small a share): climb to the first share that can.
        low *= 1.5
        at_low = cost(low)
    if not at_low <= target:
        return None
    x_lo, x_hi = math.log(low), math.log(high)
    f_lo = math.log(at_low / target) if at_low > 0 else -50.0
    f_hi = math.log(at_high / target) if math.isfinite(at_high) else 50.0
    best, side = low, 0
    for _ in range(30):
        x = x_lo - f_lo * (x_hi - x_lo) / (f_hi - f_lo)
        if not x_lo < x < x_hi:
            x = (x_lo + x_hi) / 2
        value = cost(math.exp(x))
        f = math.log(value / target) if 0 < value < math.inf else (50.0 if value == math.inf else -50.0)
        if f <= 0:
            best, x_lo, f_lo = math.exp(x), x, f
            if f > math.log1p(-CALIBRATION_RTOL):
                break
            if side == -1:
                f_hi /= 2  # Illinois: keep the other end from sticking
            side = -1
        else:
            x_hi, f_hi = x, f
            if side == 1:
                f_lo /= 2
            side = 1
        if x_hi - x_lo < CALIBRATION_RTOL / 10:
            break
    return best


def _precheck(*, facts: list[SiteFacts], project: str, target_epsilon: float, prior_epsilon: dict[str, float]) -> str:
    """What refuses the search before any calibration: a used candidate name, a target
    above the project's allocation, a project with nothing left."""
    for f in facts:
        if f.used_names:
            return (
                f"site {f.site} already holds entries for {', '.join(f.used_names)}: project '{project}' was "
                "tuned before, and a search needs fresh ledger projects for its candidates. Fix: tune under a "
                "new project name"
            )
        if f.allocation is not None and target_epsilon > f.allocation + 1e-12:
            return (
                f"the target {target_epsilon:g} is above project '{project}''s allocation of {f.allocation:g} at "
                f"site {f.site}: the allocation must pay for the whole search. Fix: lower target_epsilon, or ask "
                "the ethics board for a larger allocation"
            )
        if prior_epsilon[f.site] >= target_epsilon:
            return (
                f"project '{project}' has already spent epsilon {prior_epsilon[f.site]:.3g} at site {f.site}, "
                f"nothing is left of the target {target_epsilon:g}. Fix: raise target_epsilon within the "
                "project's allocation, or use a new project"
            )
    return ""


def _too_many_runs(*, hps: list[dict[str, Any]], target_epsilon: float, final_share: float | None) -> str:
    final = f" and a final training taking {final_share:g} of it" if final_share else ""
    return (
        f"{len(hps)} candidate run(s){final} cannot share epsilon {target_epsilon:g}: every site would have to "
        "calibrate each candidate to so small an epsilon that its noise leaves the range its policy allows "
        "(or the evaluations alone would exceed it). Fix: fewer candidates, a smaller final_share, fewer rounds, "
        "or a larger target_epsilon"
    )


def _tables(
    *,
    facts: list[SiteFacts],
    planner: _Planner,
    finals: dict[str, list[list[dpa.DpEvent]]],
    candidate_epsilon: float,
    target_epsilon: float,
    prior_epsilon: dict[str, float],
    final_target: float | None,
    reason: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    site_rows, run_rows = [], []
    for f in facts:
        if reason or not math.isfinite(candidate_epsilon):
            site_rows.append(
                {
                    "site": f.site,
                    "train_rows": f.n_train,
                    "candidate_epsilon": float("nan"),
                    "fits": False,
                    "binding": reason,
                }
            )
            continue
        composed: list[dpa.DpEvent] = list(f.prior)
        naive = prior_epsilon[f.site]
        for i, hp in enumerate(planner.candidates):
            plan = planner.candidate_plan(f, i, candidate_epsilon)
            own = plan.planned_epsilon()
            composed += plan.planned_events()
            naive += own
            run_rows.append(
                {
                    "site": f.site,
                    "run": f"candidate {i + 1}",
                    "run_number": i + 1,
                    "project": candidate_project(planner.project, i + 1),
                    **{k: hp[k] for k in ("rounds", "batch_size", "learning_rate", "max_grad_norm") if k in hp},
                    "sampling_rate": plan.sampling_rate,
                    "steps": plan.steps_per_round * plan.rounds,
                    "noise_multiplier": plan.noise_multiplier,
                    "final_evaluation_noise": plan.final_evaluation_noise,
                    "own_epsilon": own,
                    "composed_epsilon": accounting.epsilon(events=composed, delta=f.delta),
                }
            )
        search = accounting.epsilon(events=composed[len(f.prior) :], delta=f.delta)
        final = max(
            finals.get(f.site, [[]]), key=lambda events: accounting.epsilon(events=[*composed, *events], delta=f.delta)
        )
        if final:
            composed += final
            own = accounting.epsilon(events=final, delta=f.delta)
            naive += own
            run_rows.append(
                {
                    "site": f.site,
                    "run": "final training",
                    "run_number": len(planner.candidates) + 1,
                    "project": planner.project,
                    "own_epsilon": own,
                    "composed_epsilon": accounting.epsilon(events=composed, delta=f.delta),
                }
            )
        total = accounting.epsilon(events=composed, delta=f.delta)
        dataset_after = accounting.epsilon(events=[*f.dataset_events, *composed[len(f.prior) :]], delta=f.delta)
        fits, binding = True, f"within the target {target_epsilon:g}"
        if total > target_epsilon * (1 + 1e-9):
            fits, binding = False, f"the search would cost {total:.4g}, above the target {target_epsilon:g}"
        elif f.cap is not None and dataset_after > f.cap * (1 + 1e-9):
            fits = False
            binding = f"the dataset's cap would be exceeded: total after {dataset_after:.3g}, cap {f.cap:g}"
        site_rows.append(
            {
                "site": f.site,
                "train_rows": f.n_train,
                "candidates": len(planner.candidates),
                "candidate_epsilon": candidate_epsilon,
                "final_target": final_target if final_target is not None else float("nan"),
                "project_spent_before": prior_epsilon[f.site],
                "search_epsilon": search,
                "total_after": total,
                "naive_sum": naive,
                "dataset_total_after": dataset_after,
                "cap": f.cap if f.cap is not None else float("nan"),
                "fits": fits,
                "binding": binding,
            }
        )
    return pd.DataFrame(site_rows), pd.DataFrame(run_rows)
