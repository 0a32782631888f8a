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
back from the site's ledger. Where some sites refuse, the others' choices (already
charged) come back beside the refusals, with a ``PartialTuning`` warning that names each
refusing site and what the others spent; where every site refuses, ``StudyRefused``.
"""

from __future__ import annotations

import warnings
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
    served = [a for a in answers if a.released is not None]
    refused = [a.reply for a in answers if a.released is None]
    said = " ".join(f"Site {r.site_id} {r.status} it ({r.kind}): {r.reason}" for r in refused)
    if not served:
        raise StudyRefused(
            f"No site tuned, so nothing was released. {said} A site that refuses charges nothing. What to do: "
            "for a budget refusal ask the ethics board for an allocation (wb.allocate in a simulation) or lower "
            "target_epsilon; for a policy refusal ask the site's IT whether it lists 'tune' in allowed_tasks.",
            charges=[r for a in answers for r in a.reply.receipts],
        )
    by_site = {c.site_id: c for c in sites}
    rows = [_row(site=by_site[a.reply.site_id], project=project, answer=a) for a in answers]
    if refused:
        # The sites that served released their choice and charged for it: it is the
        # researcher's to use, so it is returned beside the refusals, never thrown away.
        charged = ", ".join(f"{a.reply.site_id} epsilon {a.released['epsilon']:.3g}" for a in served)
        warnings.warn(
            f"local tuning for project '{project}' was refused at {len(refused)} of {len(answers)} sites. {said} "
            f"The others served it and charged their ledgers ({charged}); their choices are in the result's "
            "rows with status 'served'. What to do: resolve the refusal with that site, then tune there alone "
            "under a new project, or train with the served sites' choices.",
            PartialTuning,
            stacklevel=3,
        )
    frame = pd.DataFrame(rows)
    frame["best_index"] = frame["best_index"].astype("Int64")  # a refusing site's is <NA>, the others stay ints
    return frame


class PartialTuning(UserWarning):
    """Some sites refused a local tuning that others served (and charged for)."""


def _row(*, site: SiteConfig, project: str, answer: Any) -> dict[str, Any]:
    """One site's line: its released choice and charge, or its refusal; the project's
    spending read back from its ledger either way."""
    with open_site_ledger(site) as ledger:
        spent = ledger.spent(dataset=site.dataset, project=project)
    out, reply = answer.released, answer.reply
    if out is None:
        return {
            "site": site.site_id,
            "status": reply.status,
            "reason": f"{reply.kind}: {reply.reason}",
            "best_index": None,
            "best": None,
            "noisy_score": None,
            # a refusal charges nothing; a site's receipts say so, not this code
            "epsilon_charged": sum(float(r.get("epsilon", 0.0)) for r in reply.receipts),
            "delta_charged": None,
            "project_epsilon": spent,
        }
    return {
        "site": site.site_id,
        "status": "served",
        "reason": "",
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
