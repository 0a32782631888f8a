"""Flower's own aggregation strategies, configured for a study where every site trains."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAdam, FedAvg, FedYogi

from federation.protocol.spec import TrainingSpec


def build_strategy(*, spec: TrainingSpec, n_sites: int) -> FedAvg:
    common = dict(
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_train_nodes=n_sites,
        min_evaluate_nodes=n_sites,
        min_available_nodes=n_sites,
    )
    if spec.strategy == "fedavg":
        return FedAvg(**common)
    if spec.strategy == "fedadam":
        return FedAdam(**common, eta=spec.server_learning_rate)
    if spec.strategy == "fedyogi":
        return FedYogi(**common, eta=spec.server_learning_rate)
    raise ValueError(f"strategy must be fedavg, fedadam or fedyogi; got {spec.strategy!r}.")
