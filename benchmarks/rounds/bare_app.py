"""A bare Flower FedAvg app of the same model, data and DP-SGD step as the demo study,
without the workbench's layers: no policy gate, no ledger or plan, no receipts, no
declarations. What is left is Flower, data loading and training.

Each site's data is read as the workbench's sites read it (``site_arrays``: parquet,
validation, public encoding, kept between messages of one process), as Flower's
examples load and cache a partition; the app itself carries only where the data is."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from federation.coordinator.study_loop import wait_for_sites
from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.site_config import SiteConfig
from federation.training.dp_sgd import train_round
from federation.training.evaluation import binary_metrics, predict_proba
from federation.training.features import FeatureEncoder
from federation.training.models import build_model

SITES_TIMEOUT = 600.0  # seconds to wait for every site, as the study loop does


@dataclass(frozen=True)
class BareSite:
    """Where a site's data is, and the noise its plan would use."""

    site: SiteConfig
    noise_multiplier: float


def build_bare_client_app(*, sites: Sequence[BareSite], spec: TrainingSpec, encoder: FeatureEncoder) -> ClientApp:
    """Train (DP-SGD, same step as the sites) and evaluate, nothing else."""
    app = ClientApp()

    def model_from(msg: Message) -> torch.nn.Module:
        model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        return model

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        site = sites[int(context.node_config["partition-id"])]
        arrays = site_arrays(site=site.site, policy=NodePolicy.default_for(site.site), encoder=encoder)
        outcome = train_round(
            model=model_from(msg),
            x=arrays.x_train,
            y=arrays.y_train,
            noise_multiplier=site.noise_multiplier,
            max_grad_norm=spec.max_grad_norm,
            batch_size=spec.batch_size,
            local_epochs=spec.local_epochs,
            learning_rate=spec.learning_rate,
            momentum=spec.momentum,
            grad_sample_mode=spec.grad_sample_mode,
            engine=spec.engine,
        )
        content = RecordDict(
            {"arrays": ArrayRecord(outcome.state_dict), "metrics": MetricRecord({"num-examples": len(arrays.y_train)})}
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        arrays = site_arrays(
            site=(s := sites[int(context.node_config["partition-id"])].site),
            policy=NodePolicy.default_for(s),
            encoder=encoder,
        )
        metrics = binary_metrics(y_true=arrays.y_test, proba=predict_proba(model=model_from(msg), x=arrays.x_test))
        content = RecordDict({"metrics": MetricRecord({"num-examples": len(arrays.y_test), **metrics})})
        return Message(content=content, reply_to=msg)

    return app


@dataclass
class RoundClock:
    """When the ServerApp's main began and how long each round took."""

    main_started: float = float("nan")
    first_round_started: float = float("nan")
    rounds: list[float] = field(default_factory=list)


def build_bare_server_app(*, spec: TrainingSpec, initial: ArrayRecord, n_sites: int, clock: RoundClock) -> ServerApp:
    """FedAvg train + evaluate each round, the same message pattern as the study loop."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        clock.main_started = time.monotonic()
        wait_for_sites(grid, n_sites, SITES_TIMEOUT)
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=n_sites,
            min_evaluate_nodes=n_sites,
            min_available_nodes=n_sites,
        )
        arrays = initial
        for server_round in range(1, spec.rounds + 1):
            started = time.monotonic()
            if server_round == 1:
                clock.first_round_started = started
            config = ConfigRecord({"server-round": server_round})
            replies = list(grid.send_and_receive(messages=strategy.configure_train(server_round, arrays, config, grid)))
            new_arrays, _ = strategy.aggregate_train(server_round, replies)
            arrays = new_arrays if new_arrays is not None else arrays
            list(grid.send_and_receive(messages=strategy.configure_evaluate(server_round, arrays, config, grid)))
            clock.rounds.append(time.monotonic() - started)

    return app


def build_empty_server_app(*, n_sites: int, clock: RoundClock) -> ServerApp:
    """Waits for the sites and ends: the engine's own start and stop, nothing else."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        clock.main_started = time.monotonic()
        wait_for_sites(grid, n_sites, SITES_TIMEOUT)

    return app
