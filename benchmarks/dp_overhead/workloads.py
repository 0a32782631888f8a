"""The two models and data sets the benchmark times.

``demo``: the quickstart's model (MLP, hidden 32) on one synthetic hospital's encoded
features, binary outcome. ``mlp-20-64-64-2``: the shape behind the stack note's
figures (20 features, two hidden layers of 64, two classes) on random data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from datasets_synthetic import generate_hospitals
from federation.training.dp_sgd import binary_logit_loss
from federation.training.features import FeatureEncoder
from federation.training.models import build_model

WORKLOADS = ("demo", "mlp-20-64-64-2")


@dataclass(frozen=True)
class Workload:
    name: str
    x: torch.Tensor
    y: torch.Tensor  # float 0/1 for the binary model, class index for the two-class one
    model: nn.Module
    criterion: nn.Module  # mean-reduced, as a non-private loop and Opacus use it
    per_sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    squeeze: bool  # the binary model's single logit is squeezed before the criterion

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def loss(self, criterion: Callable, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return criterion(output.squeeze(-1) if self.squeeze else output, target)


def _class_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target, reduction="none")


def build_workload(*, name: str, rows: int) -> Workload:
    """The named workload with ``rows`` training rows; weights from a fixed seed."""
    torch.manual_seed(0)
    if name == "demo":
        federation = generate_hospitals(sites=1, rows=rows, seed=7)
        frame = next(iter(federation.sites.values()))
        encoder = FeatureEncoder.from_dictionary(dictionary=federation.dictionary)
        x = torch.from_numpy(encoder.encode(frame))
        y = torch.from_numpy(encoder.labels(frame))
        model = build_model(name="mlp", n_features=encoder.n_features, hidden=32)
        return Workload(name, x, y, model, nn.BCEWithLogitsLoss(), binary_logit_loss, squeeze=True)
    if name == "mlp-20-64-64-2":
        g = torch.Generator().manual_seed(7)
        x = torch.rand(rows, 20, generator=g)
        y = (x @ torch.randn(20, generator=g) > 0).long()
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
        return Workload(name, x, y, model, nn.CrossEntropyLoss(), _class_loss, squeeze=False)
    raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}; got {name!r}")
