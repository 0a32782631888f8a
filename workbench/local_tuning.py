"""``wb.tune_locally``: every hospital tunes on its own rows and releases only its best
configuration, by private selection (``federation.site.local_tuning``).

The request (the study's spec, its encoder, the candidates, the distribution of the
number of runs) goes to every site as its task ``tune``, through the back end's engine
(``run``: on a simulation, Flower's simulation engine and each site's ClientApp, its
policy gate, its signed-request check, its audit log and its one charged path), signed
by the researcher when the back end has a key. Before anything is sent, every site's
selection is calibrated here from the ledgers the simulation holds, and one that some
site's allocation cannot pay for is refused before any site spends. The result is one
row per site: the released choice, the charged pair, and the project's spending read
back from the site's ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from federation.protocol.authorization import sign_local_tuning
from federation.protocol.local_tuning import tuning_config
from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.ledger_keys import open_site_ledger
from federation.site.local_tuning import LocalTuningRequest, plan_selection
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import accounting
from privacy_budgets.signatures import Signer
from workbench.errors import PlanDoesNotFit, StudyRefused
from workbench.tuning_plan import TuningError


def tune_locally_at_sites(
    *,
    prepare: Callable[..., None],
    run: Callable[..., list[Any]],
    signer: Signer | None,
    sites: list[SiteConfig],
    encoder: FeatureEncoder,
    candidates: list[dict[str, Any]],
    target_epsilon: float,
    rounds: int,
    project: str,
    mean: float = 4.0,
    shape: str = "geometric",
    verbose: bool = False,
    **common: Any,
) -> pd.DataFrame:
    """Private selection at every site; one row per site: the released choice, the
    charged (epsilon, delta) pair, and the project's spending read back from the ledger.

    ``prepare`` is the back end's ethics board granting the selection's allocation (as
    for ``workbench.tuning.tune``); ``run(config=, authorization=, verbose=)`` sends the
    task to every site; ``sites`` and ``encoder`` are what the plan is made from."""
    if not isinstance(candidates, list) or not candidates or not all(isinstance(c, dict) for c in candidates):
        raise TuningError(
            f"candidates must be a non-empty list of dicts of hyperparameters; got {candidates!r}. "
            "Fix: e.g. candidates=[{'learning_rate': 0.1}, {'learning_rate': 0.5}]."
        )
    base = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **common)
    request = LocalTuningRequest(base=base, candidates=tuple(candidates), mean=mean, shape=shape)
    # Every site's calibration and its project's room first: a selection that one site
    # cannot make is refused before any site spends (each site checks again itself).
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
    message = tuning_config(
        spec_config=base.to_config(), encoder_json=encoder.to_json(), candidates=candidates, mean=mean, shape=shape
    )
    authorization = (
        None
        if signer is None
        else sign_local_tuning(signer, project=project, config=message, spec_config=base.to_config())
    )
    answers = run(config=message, authorization=authorization, verbose=verbose)
    refused = [a.reply for a in answers if a.released is None]
    if refused:
        raise StudyRefused(
            "local tuning was refused: "
            + " ".join(f"site {r.site_id} {r.status} it ({r.kind}): {r.reason}" for r in refused)
            + " The sites that served it charged their ledgers (wb.budget() shows them).",
            charges=[r for a in answers for r in a.reply.receipts],
        )
    by_site = {c.site_id: c for c in sites}
    rows = []
    for answer in answers:
        site, out = by_site[answer.reply.site_id], answer.released
        with open_site_ledger(site) as ledger:
            spent = ledger.spent(dataset=site.dataset, project=project)
        rows.append(
            {
                "site": site.site_id,
                "best_index": out["best_index"],
                "best": out["best"],
                "noisy_score": out["score"],
                "epsilon_charged": out["epsilon"],
                "delta_charged": out["delta"],
                "project_epsilon": spent,
                # the site's own calibration, as a training reply states it: per candidate
                "noise_multipliers": tuple(out["noise_multipliers"]),
                "sampling_rates": tuple(out["sampling_rates"]),
                "steps": tuple(out["steps"]),
                "score_sigmas": tuple(out["score_sigmas"]),
            }
        )
    return pd.DataFrame(rows)
