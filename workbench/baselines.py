"""Non-private reference models: pooled (all sites' rows together) and local-only.

Only a simulation can compute these: pooling is exactly what the hospitals cannot
do. They show what privacy and federation cost, on the same splits and features as
the federated model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from federation.training.evaluation import binary_metrics, predict_proba
from federation.training.features import SiteArrays
from federation.training.models import build_model


def train_non_private(
    *, x: np.ndarray, y: np.ndarray, model: str, hidden: int, epochs: int = 30, seed: int = 0
) -> nn.Module:
    torch.manual_seed(seed)
    net = build_model(name=model, n_features=x.shape[1], hidden=hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    batch = 128
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=generator)
        for start in range(0, len(yt), batch):
            idx = order[start : start + batch]
            optimizer.zero_grad()
            loss_fn(net(xt[idx]).squeeze(-1), yt[idx]).backward()
            optimizer.step()
    return net


def baseline_metrics(*, arrays: Mapping[str, SiteArrays], model: str, hidden: int, seed: int = 0) -> pd.DataFrame:
    """Per-site test metrics of a pooled model and of each site's local-only model."""
    rows = []
    pooled = train_non_private(
        x=np.concatenate([a.x_train for a in arrays.values()]),
        y=np.concatenate([a.y_train for a in arrays.values()]),
        model=model,
        hidden=hidden,
        seed=seed,
    )
    for site, a in arrays.items():
        local = train_non_private(x=a.x_train, y=a.y_train, model=model, hidden=hidden, seed=seed)
        for name, net in (("pooled (non-private)", pooled), ("local only (non-private)", local)):
            m = binary_metrics(y_true=a.y_test, proba=predict_proba(model=net, x=a.x_test))
            rows.append({"model": name, "site": site, "num_examples": len(a.y_test), **m})
    return pd.DataFrame(rows)
