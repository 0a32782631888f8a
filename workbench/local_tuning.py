"""``wb.tune_locally``: every hospital tunes on its own rows and releases only its best
configuration, by private selection (``federation.site.local_tuning``).

Each site runs the same site code a node runs, charged through its one charged path in
its own ledger; in a simulation the workbench holds every site, so it calls that code
for each site in this process (no Flower engine: nothing leaves a site but the chosen
configuration and its noisy score, so there are no rounds to carry). The result is one
row per site, with the charge read back from its ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.ledger_keys import open_site_ledger
from federation.site.local_tuning import LocalTuningRequest, plan_selection, tune_locally
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import accounting
from workbench.errors import PlanDoesNotFit
from workbench.tuning_plan import TuningError


def tune_locally_at_sites(
    *,
    prepare: Callable[..., None],
    sites: list[SiteConfig],
    encoder: FeatureEncoder,
    candidates: list[dict[str, Any]],
    target_epsilon: float,
    rounds: int,
    project: str,
    mean: float = 4.0,
    shape: str = "geometric",
    **common: Any,
) -> pd.DataFrame:
    """Private selection at every site; one row per site: the released choice, the
    charged (epsilon, delta) pair, and the project's spending read back from the ledger.

    ``prepare`` is the back end's ethics board granting the selection's allocation (as
    for ``workbench.tuning.tune``); ``sites`` and ``encoder`` what each site tunes on."""
    if not isinstance(candidates, list) or not candidates or not all(isinstance(c, dict) for c in candidates):
        raise TuningError(
            f"candidates must be a non-empty list of dicts of hyperparameters; got {candidates!r}. "
            "Fix: e.g. candidates=[{'learning_rate': 0.1}, {'learning_rate': 0.5}]."
        )
    base = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **common)
    request = LocalTuningRequest(base=base, candidates=tuple(candidates), mean=mean, shape=shape)
    # Every site's calibration and its project's room first: a selection that one site
    # cannot make is refused before any site spends.
    for config in sites:
        planned = plan_selection(site=config, policy=NodePolicy.default_for(config), encoder=encoder, request=request)
        with open_site_ledger(config) as ledger:
            allocation = ledger.allocation(dataset=config.dataset, project=project)
            prior = ledger.events(dataset=config.dataset, project=project, include_reserved=True)
            delta = ledger.dataset_delta(dataset=config.dataset)
        after = accounting.epsilon(events=[*prior, planned.plan.event()], delta=delta)
        if allocation is not None and after > allocation * (1 + 1e-9):
            raise PlanDoesNotFit(
                f"local tuning for project '{project}' does not fit at site {config.site_id}: the project would "
                f"reach epsilon {after:.4g} of its allocation of {allocation:g} there. Nothing was trained or "
                "charged. Fix: lower target_epsilon, or ask the ethics board for a larger allocation."
            )
    prepare(project=project, epsilon=target_epsilon, reason=f"allocation for local tuning {project}")
    rows = []
    for config in tqdm(sites, desc=f"local tuning {project}", unit="site"):
        out = tune_locally(site=config, policy=NodePolicy.default_for(config), encoder=encoder, request=request)
        with open_site_ledger(config) as ledger:
            spent = ledger.spent(dataset=config.dataset, project=project)
        rows.append(
            {
                "site": out.site,
                "best_index": out.best_index,
                "best": out.best,
                "noisy_score": out.score,
                "epsilon_charged": out.epsilon,
                "delta_charged": out.delta,
                "project_epsilon": spent,
                # the site's own calibration, as a training reply states it: per candidate
                "noise_multipliers": out.noise_multipliers,
                "sampling_rates": out.sampling_rates,
                "steps": out.steps,
                "score_sigmas": out.score_sigmas,
            }
        )
    return pd.DataFrame(rows)
