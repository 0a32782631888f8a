"""The models a study can train: small, Opacus-compatible (no BatchNorm), one logit out."""

from __future__ import annotations

import torch
from torch import nn


def build_model(*, name: str, n_features: int, hidden: int = 32) -> nn.Module:
    """A fresh model; its weights come from the coordinator's ArrayRecord.

    >>> build_model(name="logreg", n_features=4)
    Sequential(
      (0): Linear(in_features=4, out_features=1, bias=True)
    )
    """
    if n_features < 1:
        raise ValueError(f"a model needs at least one feature; got n_features={n_features}.")
    if name == "logreg":
        return nn.Sequential(nn.Linear(n_features, 1))
    if name == "mlp":
        return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    raise ValueError(f"model must be 'mlp' or 'logreg'; got {name!r}.")


class SiteOffset(nn.Module):
    """The study's shared model plus a logit offset that belongs to one site.

    The offset (a per-site intercept) never leaves the site: only ``shared``'s weights
    travel. It is trained in the same DP-SGD steps as the shared weights (clipped
    jointly, noised alike), so the site's ledger charge covers it too. It lets a
    hospital keep its own base rate when prevalence differs widely between sites.
    """

    def __init__(self, *, shared: nn.Module, offset: float = 0.0) -> None:
        super().__init__()
        self.shared = shared
        self.offset = nn.Parameter(torch.full((1,), float(offset)))

    def forward(self, x):
        return self.shared(x) + self.offset

    def shared_state_dict(self) -> dict:
        return {k.removeprefix("shared."): v for k, v in self.state_dict().items() if k.startswith("shared.")}
