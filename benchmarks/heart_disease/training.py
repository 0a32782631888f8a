"""In-process training on the centres: pooled, local-only, federated (FedAvg), and
DP-FedAvg with the sites' own DP-SGD code (``federation.training.dp_sgd.train_round``) and the
ledger's noise calibration. Used for the non-private rows and the hyperparameter
search; the DP rows of the report run through Flower (``flower_runs``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from benchmarks.heart_disease.data import Centre
from federation.training.dp_sgd import planned_sampling, train_round
from federation.training.evaluation import binary_metrics, predict_proba
from federation.training.models import SiteOffset, build_model
from privacy_budgets import accounting

DELTA = 1e-5


@dataclass(frozen=True)
class Hyper:
    """One point of the search grid; the same names as ``TrainingSpec``'s fields."""

    model: str = "logreg"
    hidden: int = 16
    learning_rate: float = 0.5
    momentum: float = 0.5
    batch_size: int = 64
    local_epochs: int = 1
    rounds: int = 20
    max_grad_norm: float = 1.0
    site_offset: bool = False  # a per-site intercept that never leaves the site

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items() if not (k == "hidden" and self.model == "logreg"))


def fresh_model(*, hp: Hyper, n_features: int, seed: int) -> nn.Module:
    """The model of ``hp``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(name=hp.model, n_features=n_features, hidden=hp.hidden)


def per_centre_metrics(*, models: dict[str, nn.Module], centres: dict[str, Centre]) -> dict[str, dict[str, float]]:
    """Accuracy and AUC of each centre's model on that centre's test rows."""
    out = {}
    for name, c in centres.items():
        m = binary_metrics(y_true=c.y_test, proba=predict_proba(model=models[name], x=c.x_test))
        out[name] = {"accuracy": m["accuracy"], "auc": m["auc"]}
    return out


def _sgd_epochs(*, model: nn.Module, x: np.ndarray, y: np.ndarray, hp: Hyper, epochs: int, seed: int) -> nn.Module:
    """Plain (non-private) minibatch SGD, shuffled each epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.learning_rate, momentum=hp.momentum)
    loss_fn = nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=generator)
        for start in range(0, len(yt), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            optimizer.zero_grad()
            loss_fn(model(xt[idx]).squeeze(-1), yt[idx]).backward()
            optimizer.step()
    return model


def train_pooled(*, centres: dict[str, Centre], hp: Hyper, seed: int) -> dict[str, nn.Module]:
    """One model on every centre's training rows together (the non-federated ceiling)."""
    x = np.vstack([c.x_train for c in centres.values()])
    y = np.concatenate([c.y_train for c in centres.values()])
    model = _sgd_epochs(
        model=fresh_model(hp=hp, n_features=x.shape[1], seed=seed),
        x=x,
        y=y,
        hp=hp,
        epochs=hp.rounds * hp.local_epochs,
        seed=seed,
    )
    return {name: model for name in centres}


def train_local(*, centres: dict[str, Centre], hp: Hyper, seed: int) -> dict[str, nn.Module]:
    """Each centre's own model on its own training rows, tested on its own test rows."""
    return {
        name: _sgd_epochs(
            model=fresh_model(hp=hp, n_features=c.x_train.shape[1], seed=seed),
            x=c.x_train,
            y=c.y_train,
            hp=hp,
            epochs=hp.rounds * hp.local_epochs,
            seed=seed,
        )
        for name, c in centres.items()
    }


@cache
def site_noise(*, n_train: int, hp: Hyper, epsilon: float) -> float:
    """The noise multiplier a site plans (federation/site/plan.py): all rounds' steps at
    its own sampling rate, calibrated to ``epsilon`` at delta 1e-5."""
    rate, steps = planned_sampling(n_train=n_train, batch_size=hp.batch_size, local_epochs=hp.local_epochs)
    return accounting.calibrate_dpsgd_noise(
        target_epsilon=epsilon, delta=DELTA, sampling_rate=rate, steps=steps * hp.rounds
    )


def _average(states: list[dict[str, torch.Tensor]], weights: list[int]) -> dict[str, torch.Tensor]:
    total = float(sum(weights))
    return {k: sum(s[k] * (w / total) for s, w in zip(states, weights, strict=False)) for k in states[0]}


def train_federated(
    *, centres: dict[str, Centre], hp: Hyper, seed: int, epsilon: float | None = None
) -> dict[str, nn.Module]:
    """FedAvg weighted by rows. ``epsilon=None``: plain local SGD; otherwise each site
    runs DP-SGD (vectorised engine) with the noise it would plan for ``epsilon``.
    With ``hp.site_offset`` each site trains its own intercept beside the shared
    model and keeps it; only the shared weights are averaged."""
    n_features = next(iter(centres.values())).x_train.shape[1]
    model = fresh_model(hp=hp, n_features=n_features, seed=seed)
    offsets = {name: 0.0 for name in centres}
    sigmas = (
        {n: site_noise(n_train=len(c.y_train), hp=hp, epsilon=epsilon) for n, c in centres.items()} if epsilon else {}
    )
    for r in range(hp.rounds):
        states, weights = [], []
        for i, (name, c) in enumerate(centres.items()):
            local: nn.Module = copy.deepcopy(model)
            if hp.site_offset:
                local = SiteOffset(shared=local, offset=offsets[name])
            if epsilon is None:
                _sgd_epochs(
                    model=local, x=c.x_train, y=c.y_train, hp=hp, epochs=hp.local_epochs, seed=seed * 1000 + r * 10 + i
                )
                state = {k: v.detach().clone() for k, v in local.state_dict().items()}
            else:
                state = train_round(
                    model=local,
                    x=c.x_train,
                    y=c.y_train,
                    noise_multiplier=sigmas[name],
                    max_grad_norm=hp.max_grad_norm,
                    batch_size=hp.batch_size,
                    local_epochs=hp.local_epochs,
                    learning_rate=hp.learning_rate,
                    momentum=hp.momentum,
                    engine="vectorized",
                ).state_dict
            if hp.site_offset:
                offsets[name] = float(state.pop("offset"))
                state = {k.removeprefix("shared."): v for k, v in state.items()}
            states.append(state)
            weights.append(len(c.y_train))
        model.load_state_dict(_average(states, weights))
    if hp.site_offset:
        return {name: SiteOffset(shared=model, offset=offsets[name]) for name in centres}
    return {name: model for name in centres}


def mean_accuracy(metrics: dict[str, dict[str, float]]) -> float:
    """FLamby's metric: accuracy averaged over the centres."""
    return float(np.mean([m["accuracy"] for m in metrics.values()]))


def mean_auc(metrics: dict[str, dict[str, float]]) -> float:
    """AUC averaged over the centres where both classes occur in the test rows."""
    values = [m["auc"] for m in metrics.values() if not math.isnan(m["auc"])]
    return float(np.mean(values)) if values else float("nan")
