"""Metrics of a model on a site's held-out rows."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn


def predict_proba(*, model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x)).squeeze(-1)).numpy()


def binary_metrics(*, y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy at 0.5 and ROC AUC (NaN when only one class is present)."""
    eps = 1e-7
    p = np.clip(proba, eps, 1 - eps)
    loss = float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))
    accuracy = float(np.mean((proba >= 0.5) == (y_true >= 0.5)))
    auc = float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) == 2 else float("nan")
    return {"loss": loss, "accuracy": accuracy, "auc": auc}
