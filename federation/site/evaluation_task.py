"""The evaluate handler: a noisy evaluation of the global model on the site's held-out rows.

The site never sends a metric. It sends one noisy vector (per-class counts of the
model's scores at a public threshold grid, and a clipped loss sum), charged to the
project in its ledger through the one charged path like any query, at the noise its
plan set for this round (``federation/site/plan.py``: the study's target covers it).
The coordinator computes accuracy, ROC points, AUC and loss from it
(``federation/training/evaluation.py``: post-processing). Each round of a run is
evaluated once; the held-out split is the site's own and never smaller than its
minimum. Exact metrics go too only where the site's policy opts in to uncovered
releases (each then recorded as such in the ledger).
"""

from __future__ import annotations

import json

import torch
from flwr.app import ConfigRecord, Message, RecordDict

from federation.analytics.count_release import evaluation_event, release_evaluation
from federation.errors import InvalidRequest
from federation.protocol.replies import EVALUATION_KEY, site_record
from federation.site.charged_path import Charge, Declared, Ran, already_charged, charged_release, uncovered_left
from federation.site.config import NodePolicy
from federation.site.data_access import own_dictionary, site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.plan import site_plan
from federation.site.site_config import SiteConfig
from federation.site.site_parameters import with_site_parameters
from federation.site.training_limits import (
    check_columns,
    check_model,
    check_sizes,
    check_split,
    read_training_request,
)
from federation.training.evaluation import (
    NoisyEvaluation,
    binary_metrics,
    evaluation_counts,
    predict_proba,
)
from federation.training.models import build_model


def handle_evaluate(msg: Message, site: SiteConfig, policy: NodePolicy) -> Message:
    request = read_training_request(msg=msg, what="evaluation")
    spec, encoder, server_round = request.spec, request.encoder, request.server_round
    check_sizes(spec=spec, policy=policy)
    check_columns(encoder=encoder, policy=policy, own=own_dictionary(site))
    state = check_model(msg=msg, spec=spec, encoder=encoder)

    torch.set_num_threads(1)
    arrays = site_arrays(site=site, policy=policy, encoder=encoder, config=request.config)
    check_split(arrays=arrays, policy=policy)
    identity = f"{spec.run_id}.evaluate.{server_round}"
    with open_site_ledger(site) as ledger:
        if already_charged(ledger=ledger, dataset=site.dataset, query_id=identity):
            text = f"round {server_round} of run {spec.run_id} was already evaluated at this site; a round is evaluated once."
            raise InvalidRequest(text, public=f"{text} Fix: evaluate the next round, or start a new run.")
        plan = site_plan(
            ledger=ledger,
            spec=spec,
            dataset=site.dataset,
            n_train=len(arrays.y_train),
            plans_dir=site.plans_dir,
            policy=policy,
        )
        noise = plan.evaluation_noise_of(server_round)
        exact = uncovered_left(
            ledger=ledger, dataset=site.dataset, run_id=spec.run_id, allowed=policy.uncovered_releases
        )

        def run() -> Ran:
            model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
            model.load_state_dict(state)
            model = with_site_parameters(model=model, site=site, spec=spec)  # the site's own intercept, if any
            proba = predict_proba(model=model, x=arrays.x_test)
            counts, losses = evaluation_counts(y_true=arrays.y_test, proba=proba)
            cells, event, noise_std = release_evaluation(counts=counts, loss_units=losses, noise_multiplier=noise)
            evaluation = NoisyEvaluation.from_cells(cells=cells, noise_std=noise_std)
            declared = ()
            metrics = None
            if exact:
                metrics = binary_metrics(y_true=arrays.y_test, proba=proba)
                declared = (
                    Declared(
                        what=f"the exact evaluation metrics of round {server_round} on the held-out rows "
                        "(opt-in: uncovered_releases)",
                        purpose=f"federated evaluation, round {server_round}: exact metrics",
                        details={k: float(v) for k, v in metrics.items()},
                    ),
                )
            return Ran(value=(evaluation, metrics), event=event, declared=declared)

        charged = charged_release(
            ledger=ledger,
            site=site,
            charge=Charge(
                project=spec.project,
                actor=spec.coordinator,
                event=evaluation_event(noise_multiplier=noise),
                purpose=(
                    f"federated evaluation, round {server_round} of {spec.rounds}: noisy per-class counts at "
                    "a public threshold grid and a clipped loss sum"
                ),
                run_id=spec.run_id,
                round=server_round,
                query_id=identity,
            ),
            run=run,
        )
    evaluation, metrics = charged.value
    record = {EVALUATION_KEY: evaluation.to_json()}
    if metrics is not None:
        record["exact-metrics"] = json.dumps(metrics)
    content = RecordDict(
        {
            EVALUATION_KEY: ConfigRecord(record),
            "site": site_record(
                site_id=site.site_id,
                receipts=charged.receipts,
                dataset=site.dataset,
                **{"epsilon-project": charged.project_epsilon, "noise-multiplier": noise},
            ),
        }
    )
    return Message(content=content, reply_to=msg)
