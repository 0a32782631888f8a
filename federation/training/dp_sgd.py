"""One round of local training with DP-SGD, counting the steps that ran.

Two engines run the same mechanism: ``"opacus"`` (the reference) and ``"vectorized"``
(``fast_dp_sgd``: same sampling, clipping, noise and scaling, without Opacus's per-step
Python overhead; tests/federation/test_dp_sgd_equivalence.py holds it to Opacus).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from federation.training.fast_dp_sgd import VectorizedDPSGD


def planned_sampling(*, n_train: int, batch_size: int, local_epochs: int) -> tuple[float, int]:
    """The sampling rate and steps per round Opacus will use for this site.

    Opacus's Poisson loader samples each record with rate 1 / len(loader) and yields
    len(loader) batches per epoch; computing the same numbers here lets a site charge
    its ledger before it trains.
    """
    batches = max(1, math.ceil(n_train / batch_size))
    return 1.0 / batches, batches * local_epochs


@dataclass(frozen=True)
class RoundOutcome:
    steps: int
    sampling_rate: float
    empty_batches: int
    mean_loss: float
    state_dict: dict[str, torch.Tensor]


ENGINES = ("opacus", "vectorized")


def binary_logit_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample BCE on the model's single logit: the loss ``train_round`` trains."""
    return F.binary_cross_entropy_with_logits(output.squeeze(-1), target, reduction="none")


def train_round(
    *,
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    noise_multiplier: float,
    max_grad_norm: float,
    batch_size: int,
    local_epochs: int,
    learning_rate: float,
    momentum: float = 0.0,
    grad_sample_mode: str = "hooks",
    engine: str = "opacus",
) -> RoundOutcome:
    """Train a copy of ``model`` for ``local_epochs`` with DP-SGD; return what ran.

    ``model`` itself is left untouched: Opacus hooks a module for good, and wrapping
    one twice fails. A fresh copy, optimizer and PrivacyEngine every call;
    the site's privacy history lives in its ledger, not in Opacus's accountant.
    Empty Poisson batches still take a noise-only step: that is the mechanism the
    accountant analyses, so they are counted as steps.
    ``engine="vectorized"`` runs ``fast_dp_sgd`` instead of Opacus (``grad_sample_mode``
    is then unused); sampling rate, steps and mechanism are the same.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "vectorized":
        return _train_round_vectorized(
            model=model,
            x=x,
            y=y,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            batch_size=batch_size,
            local_epochs=local_epochs,
            learning_rate=learning_rate,
            momentum=momentum,
        )
    model = copy.deepcopy(model)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = DataLoader(dataset, batch_size=batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    loss_fn = nn.BCEWithLogitsLoss()
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off: torchcsprng has no release here.
        warnings.simplefilter("ignore", UserWarning)
        privacy_engine = PrivacyEngine(accountant="rdp")
        wrapped = privacy_engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=grad_sample_mode,
            criterion=loss_fn,
        )
    if grad_sample_mode == "ghost":
        # Ghost clipping packs its two backward passes into the criterion it returns.
        private_model, optimizer, loss_fn, private_loader = wrapped
    else:
        private_model, optimizer, private_loader = wrapped
    steps = empty = 0
    total_loss = total_rows = 0.0
    private_model.train()
    for _ in range(local_epochs):
        for xb, yb in private_loader:
            optimizer.zero_grad(set_to_none=True)
            logits = private_model(xb).squeeze(-1)
            loss = loss_fn(logits, yb)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # empty batch: mean of nothing
                loss.backward()
            optimizer.step()
            steps += 1
            if len(yb) == 0:
                empty += 1
            else:
                total_loss += float(loss.detach()) * len(yb)
                total_rows += len(yb)
    inner = private_model._module if hasattr(private_model, "_module") else private_model
    state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
    return RoundOutcome(
        steps=steps,
        sampling_rate=float(private_loader.sample_rate),
        empty_batches=empty,
        mean_loss=total_loss / total_rows if total_rows else float("nan"),
        state_dict=state,
    )


def _train_round_vectorized(
    *,
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    noise_multiplier: float,
    max_grad_norm: float,
    batch_size: int,
    local_epochs: int,
    learning_rate: float,
    momentum: float,
) -> RoundOutcome:
    sampling_rate, steps = planned_sampling(n_train=len(y), batch_size=batch_size, local_epochs=local_epochs)
    trainer = VectorizedDPSGD(
        model=model,
        per_sample_loss=binary_logit_loss,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        learning_rate=learning_rate,
        momentum=momentum,
    )
    empty, total_loss, rows = trainer.run_steps(
        x=torch.as_tensor(x, dtype=torch.float32),
        y=torch.as_tensor(y, dtype=torch.float32),
        sampling_rate=sampling_rate,
        steps=steps,
    )
    return RoundOutcome(
        steps=steps,
        sampling_rate=sampling_rate,
        empty_batches=empty,
        mean_loss=total_loss / rows if rows else float("nan"),
        state_dict=trainer.state_dict(),
    )
