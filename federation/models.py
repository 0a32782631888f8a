"""The models a study can train: small, Opacus-compatible (no BatchNorm), one logit out."""

from __future__ import annotations

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
