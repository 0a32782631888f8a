"""Our layers' cost per site and round, measured in this process without Flower's
polling: the site's real handlers (policy checks, plan, ledger reserve/commit,
declarations, receipts) against the same training and evaluation called bare.

Flower's in-memory grid polls for replies every 0.1 s, so a round's wall time moves
in steps of 0.1 s per phase; this measurement has no such step."""

from __future__ import annotations

import statistics
import time

from flwr.app import ConfigRecord, Message, Metadata, RecordDict
from flwr.common import MessageType

from federation.coordinator.server_app import initial_arrays
from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.evaluation_task import handle_evaluate
from federation.site.training_task import handle_train
from federation.training.dp_sgd import train_round
from federation.training.evaluation import binary_metrics, predict_proba
from federation.training.models import build_model


def _message(*, spec: TrainingSpec, encoder, server_round: int, kind: str) -> Message:
    """A message as the site receives it (metadata as the SuperLink sets it)."""
    config = {**spec.to_config(), "feature-encoder": encoder.to_json(), "server-round": server_round}
    metadata = Metadata(
        run_id=1,
        message_id=f"{kind}-{server_round}",
        src_node_id=0,
        dst_node_id=1,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=600.0,
        message_type=kind,
    )
    content = RecordDict({"arrays": initial_arrays(spec=spec, encoder=encoder), "config": ConfigRecord(config)})
    return Message(content=content, metadata=metadata)


def layer_cost(*, site, spec: TrainingSpec, encoder, noise_multiplier: float, rounds: int) -> dict[str, float]:
    """Median seconds per round at one site: handlers (train + evaluate) and bare work."""
    handlers, bare = [], []
    model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
    policy = NodePolicy.default_for(site)
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        handle_train(_message(spec=spec, encoder=encoder, server_round=r, kind=MessageType.TRAIN), site, policy)
        handle_evaluate(_message(spec=spec, encoder=encoder, server_round=r, kind=MessageType.EVALUATE), site, policy)
        t1 = time.perf_counter()
        arrays = site_arrays(site=site, policy=policy, encoder=encoder)
        model.train()  # predict_proba left it in evaluation mode
        train_round(
            model=model,
            x=arrays.x_train,
            y=arrays.y_train,
            noise_multiplier=noise_multiplier,
            max_grad_norm=spec.max_grad_norm,
            batch_size=spec.batch_size,
            local_epochs=spec.local_epochs,
            learning_rate=spec.learning_rate,
            momentum=spec.momentum,
            grad_sample_mode=spec.grad_sample_mode,
            engine=spec.engine,
        )
        binary_metrics(y_true=arrays.y_test, proba=predict_proba(model=model, x=arrays.x_test))
        t2 = time.perf_counter()
        if r > 1:  # the first round opens files and fills caches
            handlers.append(t1 - t0)
            bare.append(t2 - t1)
    return {"handlers_s": statistics.median(handlers), "bare_s": statistics.median(bare)}
