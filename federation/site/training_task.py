"""The train handler: policy gate, reserve, DP-SGD, commit, reply.

Nothing touches the data before the site has decided the task is allowed, and no
update leaves before its cost is committed in the site's own ledger.
"""

from __future__ import annotations

import math

import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from federation.errors import InternalFault, InvalidRequest, PolicyRefused
from federation.protocol.replies import refusal, site_record
from federation.protocol.spec import SpecError, TrainingSpec
from federation.site.data_access import site_arrays
from federation.site.node_keys import DEFAULT_MIN_CELL_SIZE
from federation.site.plan import PlanRefused, site_plan
from federation.site.request_cap import RequestCapExceeded, check_request_cap
from federation.site.site_config import SiteConfig
from federation.site.site_parameters import keep_site_parameters, with_site_parameters
from federation.training.dp_sgd import train_round
from federation.training.features import FeatureEncoder
from federation.training.models import build_model
from privacy_budgets import BudgetExceeded, Ledger
from privacy_budgets.mechanisms import dpsgd_event


def handle_train(msg: Message, site: SiteConfig) -> Message:
    config = msg.content["config"]
    server_round = int(config["server-round"])
    try:
        spec = TrainingSpec.from_config(config)
        encoder = FeatureEncoder.from_json(str(config["feature-encoder"]))
    except (SpecError, KeyError, ValueError) as err:
        return refusal(msg, site_id=site.site_id, error=InvalidRequest(f"malformed training request: {err}"))

    if server_round > spec.rounds:
        return refusal(
            msg,
            site_id=site.site_id,
            error=PolicyRefused(
                f"round {server_round} is beyond the {spec.rounds} rounds this site planned its noise for."
            ),
        )

    torch.set_num_threads(1)  # one CPU per simulated site; more only oversubscribes
    arrays = site_arrays(site=site, spec=spec, encoder=encoder, config=config)
    n_train = len(arrays.y_train)
    smallest = site.min_cell_size if site.min_cell_size is not None else DEFAULT_MIN_CELL_SIZE
    if n_train < smallest:
        # The row count leaves the site anyway (the FedAvg weight): refusing on it adds nothing.
        return refusal(
            msg,
            site_id=site.site_id,
            error=PolicyRefused(
                f"the training cohort at site {site.site_id} ({n_train} records) is below the site's "
                f"minimum of {smallest} (min_cell_size)."
            ),
        )
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        try:
            plan = site_plan(ledger=ledger, spec=spec, dataset=site.dataset, n_train=n_train, plans_dir=site.plans_dir)
            planned = dpsgd_event(
                noise_multiplier=plan.noise_multiplier,
                sampling_rate=plan.sampling_rate,
                steps=plan.steps_per_round,
            )
            check_request_cap(ledger=ledger, site=site, project=spec.project, event=planned)
            reservation = ledger.reserve(
                dataset=site.dataset,
                project=spec.project,
                event=planned,
                actor=spec.coordinator,
                purpose=f"federated training, round {server_round} of {spec.rounds}: model update",
                run_id=spec.run_id,
                round=server_round,
            )
        except (BudgetExceeded, PlanRefused, RequestCapExceeded) as err:
            return refusal(msg, site_id=site.site_id, error=err)

        try:
            model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
            model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
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
        except Exception as err:
            ledger.abort(reservation, reason=f"training failed before any release: {err!r}")
            return refusal(msg, site_id=site.site_id, error=InternalFault(f"local training failed: {err}"))

        # Charge the steps that ran, at the sampling rate the loader actually used.
        spent = ledger.commit(
            reservation,
            event=dpsgd_event(
                noise_multiplier=plan.noise_multiplier,
                sampling_rate=outcome.sampling_rate,
                steps=outcome.steps,
            ),
        )
        receipts = [ledger.receipt(spent).to_dict()]
        # The update is covered by DP-SGD; what travels beside it is not: the row count
        # (FedAvg's weight) and the mean training loss. Declare them every round.
        declared = ledger.record_uncovered(
            dataset=site.dataset,
            project=spec.project,
            what=(
                f"number of training records ({n_train}, the FedAvg weight) and the mean "
                f"training loss of round {server_round} ({outcome.mean_loss:.4f}), sent with the update"
            ),
            actor=spec.coordinator,
            purpose=f"federated training, round {server_round} of {spec.rounds}: aggregation weight and loss",
            run_id=spec.run_id,
            round=server_round,
            details={
                "num_examples": n_train,
                "train_loss": outcome.mean_loss if math.isfinite(outcome.mean_loss) else None,
            },
        )
        receipts.append(ledger.receipt(declared).to_dict())
        epsilon_project = ledger.spent(dataset=site.dataset, project=spec.project)
        epsilon_dataset = ledger.spent(dataset=site.dataset)

    metrics = MetricRecord(
        {
            "num-examples": n_train,
            "train-loss": outcome.mean_loss,
            "steps": outcome.steps,
            "epsilon-project": epsilon_project,
            "epsilon-dataset": epsilon_dataset,
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(keep_site_parameters(state=outcome.state_dict, site=site, spec=spec)),
            "metrics": metrics,
            "site": site_record(
                site_id=site.site_id,
                receipts=receipts,
                dataset=site.dataset,
                delta=plan.delta,
                **{
                    "noise-multiplier": plan.noise_multiplier,
                    "sampling-rate": outcome.sampling_rate,
                    "steps": outcome.steps,
                    "empty-batches": outcome.empty_batches,
                },
            ),
        }
    )
    return Message(content=content, reply_to=msg)
