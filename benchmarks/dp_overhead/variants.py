"""What is timed: ways to train one epoch, private and not, on the same workload.

Each variant's ``prepare(workload, batch_size)`` does the per-round set-up (copy the
model, build the optimizer, wrap it in Opacus...) and returns the epoch to time. Every
loop accumulates the loss once per step, as ``train_round`` does to report it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.dp_overhead.workloads import Workload
from federation.training.dp_sgd import planned_sampling
from federation.training.fast_dp_sgd import VectorizedDPSGD
from federation.training.poisson_sampling import entropy_generator, poisson_indices

NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0
LEARNING_RATE = 0.5  # TrainingSpec's default
BASELINE = "nonprivate-index"

Epoch = Callable[[], float]


@dataclass(frozen=True)
class Variant:
    name: str
    private: bool
    what: str
    prepare: Callable[[Workload, int], Epoch]


def _poisson_batches(w: Workload, *, rate: float, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = entropy_generator()
    for _ in range(steps):
        idx = poisson_indices(n=len(w.y), rate=rate, generator=generator)
        yield w.x.index_select(0, idx), w.y.index_select(0, idx)


def _standard_epoch(w: Workload, model, optimizer, criterion, batches: Callable[[], object]) -> Epoch:
    def epoch() -> float:
        total = 0.0
        for xb, yb in batches():
            optimizer.zero_grad(set_to_none=True)
            loss = w.loss(criterion, model(xb), yb)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(yb)
        return total

    return epoch


def _nonprivate(sampling: str) -> Callable[[Workload, int], Epoch]:
    def prepare(w: Workload, batch_size: int) -> Epoch:
        model = copy.deepcopy(w.model)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        n = len(w.y)
        if sampling == "index":

            def batches():
                order = torch.randperm(n)
                for start in range(0, n, batch_size):
                    idx = order[start : start + batch_size]
                    yield w.x.index_select(0, idx), w.y.index_select(0, idx)
        elif sampling == "loader":
            loader = DataLoader(TensorDataset(w.x, w.y), batch_size=batch_size, shuffle=True)
            batches = lambda: loader  # noqa: E731
        else:
            rate, steps = planned_sampling(n_train=n, batch_size=batch_size, local_epochs=1)
            batches = lambda: _poisson_batches(w, rate=rate, steps=steps)  # noqa: E731
        return _standard_epoch(w, model, optimizer, w.criterion, batches)

    return prepare


def _opacus(mode: str, *, fast_sampler: bool) -> Callable[[Workload, int], Epoch]:
    def prepare(w: Workload, batch_size: int) -> Epoch:
        model = copy.deepcopy(w.model)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        loader = DataLoader(TensorDataset(w.x, w.y), batch_size=batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # secure_mode off: torchcsprng has no release here
            wrapped = PrivacyEngine(accountant="rdp").make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=NOISE_MULTIPLIER,
                max_grad_norm=MAX_GRAD_NORM,
                poisson_sampling=True,
                grad_sample_mode=mode,
                criterion=copy.deepcopy(w.criterion),
            )
        if mode == "ghost":
            private, dp_optimizer, criterion, dp_loader = wrapped
        else:
            (private, dp_optimizer, dp_loader), criterion = wrapped, w.criterion
        if fast_sampler:
            rate, steps = dp_loader.sample_rate, len(dp_loader)
            batches = lambda: _poisson_batches(w, rate=rate, steps=steps)  # noqa: E731
        else:
            batches = lambda: dp_loader  # noqa: E731
        return _standard_epoch(w, private, dp_optimizer, criterion, batches)

    return prepare


def _vectorized(method: str) -> Callable[[Workload, int], Epoch]:
    def prepare(w: Workload, batch_size: int) -> Epoch:
        rate, steps = planned_sampling(n_train=len(w.y), batch_size=batch_size, local_epochs=1)
        trainer = VectorizedDPSGD(
            model=w.model,
            per_sample_loss=w.per_sample_loss,
            noise_multiplier=NOISE_MULTIPLIER,
            max_grad_norm=MAX_GRAD_NORM,
            learning_rate=LEARNING_RATE,
            method=method,
        )
        return lambda: trainer.run_steps(x=w.x, y=w.y, sampling_rate=rate, steps=steps)[1]

    return prepare


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, False, "shuffled order, rows gathered by tensor indexing (the baseline)", _nonprivate("index")),
    Variant("nonprivate-loader", False, "shuffled torch DataLoader over a TensorDataset", _nonprivate("loader")),
    Variant("nonprivate-poisson", False, "Poisson batches from the fast sampler, no privacy", _nonprivate("poisson")),
    Variant("opacus-hooks", True, "Opacus default: hooks, Poisson DataLoader", _opacus("hooks", fast_sampler=False)),
    Variant("opacus-ghost", True, "Opacus ghost clipping, Poisson DataLoader", _opacus("ghost", fast_sampler=False)),
    Variant(
        "opacus-functorch", True, "Opacus functorch mode, Poisson DataLoader", _opacus("functorch", fast_sampler=False)
    ),
    Variant("opacus-ew", True, "Opacus expanded weights, Poisson DataLoader", _opacus("ew", fast_sampler=False)),
    Variant(
        "opacus-hooks+sampler", True, "Opacus hooks, batches from the fast sampler", _opacus("hooks", fast_sampler=True)
    ),
    Variant(
        "opacus-ghost+sampler", True, "Opacus ghost, batches from the fast sampler", _opacus("ghost", fast_sampler=True)
    ),
    Variant(
        "vectorized",
        True,
        "federation.training.fast_dp_sgd, closed-form clipping (train_round engine='vectorized')",
        _vectorized("linear"),
    ),
    Variant(
        "vectorized-functorch",
        True,
        "federation.training.fast_dp_sgd with torch.func per-sample gradients",
        _vectorized("functorch"),
    ),
)
