"""The evaluate handler: metrics of the global model on the site's held-out rows.

The metrics leave the site without noise; the ledger records them as a release no
mechanism covers, so the privacy statement names them.
"""

from __future__ import annotations

import torch
from flwr.app import Message, MetricRecord, RecordDict

from federation.errors import InvalidRequest
from federation.protocol.replies import refusal, site_record
from federation.protocol.spec import SpecError, TrainingSpec
from federation.site.data_access import site_arrays
from federation.site.site_config import SiteConfig
from federation.site.site_parameters import with_site_parameters
from federation.training.evaluation import binary_metrics, predict_proba
from federation.training.features import FeatureEncoder
from federation.training.models import build_model
from privacy_budgets import Ledger


def handle_evaluate(msg: Message, site: SiteConfig) -> Message:
    config = msg.content["config"]
    server_round = int(config["server-round"])
    try:
        spec = TrainingSpec.from_config(config)
        encoder = FeatureEncoder.from_json(str(config["feature-encoder"]))
    except (SpecError, KeyError, ValueError) as err:
        return refusal(msg, site_id=site.site_id, error=InvalidRequest(f"malformed evaluation request: {err}"))

    torch.set_num_threads(1)
    arrays = site_arrays(site=site, spec=spec, encoder=encoder, config=config)
    model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model = with_site_parameters(model=model, site=site, spec=spec)  # the site's own intercept, if any
    metrics = binary_metrics(y_true=arrays.y_test, proba=predict_proba(model=model, x=arrays.x_test))
    n_test = len(arrays.y_test)
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        declared = ledger.record_uncovered(
            dataset=site.dataset,
            project=spec.project,
            what=(
                f"evaluation of the global model on {n_test} held-out records: "
                f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}, AUC {metrics['auc']:.4f}"
            ),
            actor=spec.coordinator,
            purpose=f"federated evaluation, round {server_round}",
            run_id=spec.run_id,
            round=server_round,
            details={"num_examples": n_test, **metrics},
        )
        receipt = ledger.receipt(declared).to_dict()
    content = RecordDict(
        {
            "metrics": MetricRecord({"num-examples": n_test, **metrics}),
            "site": site_record(site_id=site.site_id, receipts=[receipt]),
        }
    )
    return Message(content=content, reply_to=msg)
