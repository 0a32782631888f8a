"""A charged hyperparameter search: every candidate run pays through the normal paths.

``tune`` plans the search (``workbench.tuning_plan``: the split of ``target_epsilon``
among the candidates and an optional final training, composed at every site) and
refuses it before anything runs when it does not fit. Then each candidate is an
ordinary study (``Workbench.train``) under its own ledger project at the planned
per-candidate target: its DP-SGD rounds and the sites' own noisy evaluations are
charged exactly as any study's are. The best candidate is picked from the pooled noisy
evaluation of its last round, which the coordinator already holds: post-processing,
free. With ``final_share``, the chosen configuration is trained again under the
project itself; without it, the best candidate's model is the result.

Afterwards every site's ledger is read back and the search's events (every candidate
project and the project) composed: that total, not the plan, is what the result
reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import Ledger, accounting
from workbench.errors import PlanDoesNotFit
from workbench.results import TrainingResult
from workbench.tuning_plan import TuningError, TuningPlan, candidate_project, plan_tuning

# The pooled noisy metric a search ranks by, and whether larger is better.
SCORES = {"accuracy": True, "auc": True, "loss": False}


@dataclass
class TuningResult:
    """The outcome of ``Workbench.tune``.

    ``candidates``: one row per candidate (its hyperparameters, its noisy pooled score
    on the sites' held-out rows, the rounds it ran); ``best``: the chosen candidate's
    hyperparameters; ``result``: the final training's result (or the best candidate's,
    without a final training); ``spent``: per site, the search's total read back from
    the ledger (every candidate project and the project, composed) beside the target.
    """

    plan: TuningPlan
    candidates: pd.DataFrame
    best: dict[str, Any]
    best_index: int  # 1-based, as in the candidate project names
    result: TrainingResult
    runs: list[TrainingResult]
    spent: pd.DataFrame
    score: str

    def __repr__(self) -> str:
        return (
            f"TuningResult(best: candidate {self.best_index} {self.best}; noisy {self.score} "
            f"{self.candidates.loc[self.best_index - 1, 'score']:.3f})\n"
            f"{self.spent.to_string(index=False)}"
        )


def tune(
    *,
    train: Callable[..., TrainingResult],
    prepare: Callable[..., None],
    sites: list[SiteConfig],
    encoder: FeatureEncoder,
    candidates: list[dict[str, Any]],
    target_epsilon: float,
    rounds: int,
    project: str,
    final_share: float | None = None,
    score: str = "accuracy",
    target: str | None = None,
    delta: float = 1e-5,
    verbose: bool = False,
    **common: Any,
) -> TuningResult:
    """Try every candidate as a charged study and keep the best; see the module docstring.

    ``train`` is ``Workbench.train``; ``prepare(project=, epsilon=, reason=)`` the back
    end's ethics board granting the search's allocation; ``sites`` and ``encoder`` what
    the plan is made from (every site's rows, policy and ledger).

    ``target_epsilon`` is the whole search's total per site (the project's earlier
    spending there, every candidate, and the final training with ``final_share``).
    """
    if score not in SCORES:
        raise TuningError(f"score must be one of {', '.join(SCORES)}; got {score!r}. Fix: e.g. score='accuracy'.")
    plan = plan_tuning(
        sites=sites,
        encoder=encoder,
        candidates=candidates,
        target_epsilon=target_epsilon,
        rounds=rounds,
        project=project,
        final_share=final_share,
        delta=delta,
        **common,
    )
    if not plan.fits:
        misfits = plan.per_site[~plan.per_site["fits"]] if not plan.per_site.empty else plan.per_site
        why = plan.reason or "; ".join(f"site {r['site']}: {r['binding']}" for _, r in misfits.iterrows())
        raise PlanDoesNotFit(
            f"This search ({len(plan.candidates)} candidates, target epsilon {target_epsilon:g} per site for the "
            f"whole search, project '{project}') does not fit: {why}. Nothing was trained or charged. See "
            "wb.plan_tuning(...) for each site's numbers."
        )
    # The project's allocation pays for the whole search (a simulated board grants it).
    prepare(project=project, epsilon=target_epsilon, reason=f"allocation for search {project}")
    runs: list[TrainingResult] = []
    rows = []
    bar = tqdm(plan.candidates, desc=f"search {project}", unit="candidate")
    for index, hp in enumerate(bar, start=1):
        hp = dict(hp)
        run = train(
            target_epsilon=plan.candidate_epsilon,
            project=candidate_project(project, index),
            target=target,
            verbose=verbose,
            delta=delta,
            **hp,
        )
        runs.append(run)
        value = _noisy_score(run, score)
        bar.set_postfix({score: f"{value:.3f}"})
        rows.append({"candidate": index, **hp, "score": value, "rounds_run": _rounds_run(run)})
    frame = pd.DataFrame(rows)
    larger = SCORES[score]
    ranked = frame.dropna(subset=["score"])
    if ranked.empty:
        raise TuningError(
            f"no candidate has a noisy {score} to rank by (every run stopped before its first evaluation). "
            "Fix: see each run's stopped_reason in the search's runs."
        )
    best_row = ranked.loc[ranked["score"].idxmax() if larger else ranked["score"].idxmin()]
    best_index = int(best_row["candidate"])
    best = dict(plan.candidates[best_index - 1])
    result = runs[best_index - 1]
    if final_share is not None:
        final = dict(best)
        result = train(
            target_epsilon=plan.final_target, project=project, target=target, verbose=verbose, delta=delta, **final
        )
    return TuningResult(
        plan=plan,
        candidates=frame,
        best=best,
        best_index=best_index,
        result=result,
        runs=runs,
        spent=search_spent(sites=sites, plan=plan),
        score=score,
    )


def _noisy_score(run: TrainingResult, score: str) -> float:
    """The last round's pooled noisy metric: what the coordinator already holds."""
    pooled = run.pooled
    if pooled.empty or score not in pooled:
        return math.nan
    return float(pooled[score].iloc[-1])


def _rounds_run(run: TrainingResult) -> int:
    return int(run.history["round"].max()) if not run.history.empty and "round" in run.history else 0


def search_spent(*, sites: list[SiteConfig], plan: TuningPlan) -> pd.DataFrame:
    """Per site, read back from its ledger: the search's events (every candidate project
    and the project, committed) composed, beside the target and the dataset's total."""
    names = {plan.project, *plan.candidate_projects}
    rows = []
    for config in sites:
        with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
            events = []
            for name in sorted(names):
                events += ledger.events(dataset=config.dataset, project=name, include_reserved=False)
            delta = ledger.dataset_delta(dataset=config.dataset)
            total = accounting.epsilon(events=events, delta=delta) if events else 0.0
            rows.append(
                {
                    "site": config.site_id,
                    "search_epsilon": total,
                    "target_epsilon": plan.target_epsilon,
                    "within_target": total <= plan.target_epsilon * (1 + 1e-9),
                    "dataset_total": ledger.spent(dataset=config.dataset),
                }
            )
    return pd.DataFrame(rows)
