"""The train handler: limits, the site's own split and plan, then one charged release.

Nothing touches the data before the request is held to the site's limits (its sizes,
its outcome and features, the model's shapes), and no update leaves before its cost
is committed in the site's own ledger through the one charged path. Beside the
update, the site sends only numbers that are noisy or free: its FedAvg weight is one
noisy count of its training rows, charged once in round 1 and sent again from its
plan afterwards; the training loss is not sent (unless the site's policy opts in to
uncovered releases); the project's own epsilon so far, from its ledger.
"""

from __future__ import annotations

import math

import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from federation.analytics.count_release import release_count
from federation.errors import InvalidRequest
from federation.protocol.replies import site_record
from federation.site.charged_path import Charge, Declared, Ran, already_charged, charged_release, uncovered_left
from federation.site.config import NodePolicy
from federation.site.data_access import own_dictionary, site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.plan import keep_fedavg_weight, site_plan, training_event
from federation.site.site_config import SiteConfig
from federation.site.site_parameters import keep_site_parameters, with_site_parameters
from federation.site.training_limits import (
    check_columns,
    check_model,
    check_sizes,
    check_split,
    read_training_request,
)
from federation.training.dp_sgd import train_round
from federation.training.models import build_model
from privacy_budgets.mechanisms import composed_event, dpsgd_event


def handle_train(msg: Message, site: SiteConfig, policy: NodePolicy) -> Message:
    request = read_training_request(msg=msg, what="training")
    spec, encoder, server_round = request.spec, request.encoder, request.server_round
    check_sizes(spec=spec, policy=policy)
    check_columns(encoder=encoder, policy=policy, own=own_dictionary(site))
    state = check_model(msg=msg, spec=spec, encoder=encoder)

    torch.set_num_threads(1)  # one CPU per simulated site; more only oversubscribes
    arrays = site_arrays(site=site, policy=policy, encoder=encoder, config=request.config)
    check_split(arrays=arrays, policy=policy)
    n_train = len(arrays.y_train)
    identity = f"{spec.run_id}.train.{server_round}"
    with open_site_ledger(site) as ledger:
        if already_charged(ledger=ledger, dataset=site.dataset, query_id=identity):
            text = f"round {server_round} of run {spec.run_id} was already trained at this site; a round runs once."
            raise InvalidRequest(text, public=f"{text} Fix: ask for the next round, or start a new run.")
        plan = site_plan(
            ledger=ledger, spec=spec, dataset=site.dataset, n_train=n_train, plans_dir=site.plans_dir, policy=policy
        )
        weight_due = plan.fedavg_weight is None
        exact_loss = uncovered_left(
            ledger=ledger, dataset=site.dataset, run_id=spec.run_id, allowed=policy.uncovered_releases
        )

        def run() -> Ran:
            model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
            model.load_state_dict(state)
            outcome = train_round(
                model=with_site_parameters(model=model, site=site, spec=spec),
                x=arrays.x_train,
                y=arrays.y_train,
                noise_multiplier=plan.noise_multiplier,
                max_grad_norm=spec.max_grad_norm,
                batch_size=spec.batch_size,
                local_epochs=spec.local_epochs,
                learning_rate=spec.learning_rate,
                momentum=spec.momentum,
                grad_sample_mode=spec.grad_sample_mode,
                engine=spec.engine,
            )
            # Charge the steps that ran, at the sampling rate the loader actually used.
            event = dpsgd_event(
                noise_multiplier=plan.noise_multiplier, sampling_rate=outcome.sampling_rate, steps=outcome.steps
            )
            weight = plan.fedavg_weight
            if weight_due:
                noisy, count_event = release_count(count=n_train, noise_multiplier=plan.weight_noise)
                weight = max(1, noisy)
                event = composed_event([event, count_event])
            declared = ()
            if exact_loss and math.isfinite(outcome.mean_loss):
                declared = (
                    Declared(
                        what=f"the exact mean training loss of round {server_round} (opt-in: uncovered_releases)",
                        purpose=f"federated training, round {server_round} of {spec.rounds}: training loss",
                        details={"train_loss": float(outcome.mean_loss)},
                    ),
                )
            return Ran(value=(outcome, weight), event=event, declared=declared)

        charged = charged_release(
            ledger=ledger,
            site=site,
            charge=Charge(
                project=spec.project,
                actor=spec.coordinator,
                event=training_event(
                    plan=plan,
                    steps=plan.steps_per_round,
                    sampling_rate=plan.sampling_rate,
                    with_weight=weight_due,
                ),
                purpose=(
                    f"federated training, round {server_round} of {spec.rounds}: model update"
                    + (" and the noisy number of training records (FedAvg weight)" if weight_due else "")
                ),
                run_id=spec.run_id,
                round=server_round,
                query_id=identity,
            ),
            run=run,
        )
        outcome, weight = charged.value
        if weight_due:
            plan = keep_fedavg_weight(plan=plan, weight=weight, plans_dir=site.plans_dir, spec=spec)

    metrics = {"num-examples": int(weight), "steps": outcome.steps, "epsilon-project": charged.project_epsilon}
    if len(charged.receipts) > 1:  # the opt-in exact loss went with it, recorded as uncovered
        metrics["train-loss"] = float(outcome.mean_loss)
    content = RecordDict(
        {
            "arrays": ArrayRecord(keep_site_parameters(state=outcome.state_dict, site=site, spec=spec)),
            "metrics": MetricRecord(metrics),
            "site": site_record(
                site_id=site.site_id,
                receipts=charged.receipts,
                dataset=site.dataset,
                delta=plan.delta,
                **{
                    "noise-multiplier": plan.noise_multiplier,
                    "sampling-rate": outcome.sampling_rate,
                    "steps": outcome.steps,
                    "empty-batches": outcome.empty_batches,
                    "weight-noise": plan.weight_noise,
                },
            ),
        }
    )
    return Message(content=content, reply_to=msg)
