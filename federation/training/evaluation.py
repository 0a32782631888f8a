"""Metrics of a model on a site's held-out rows: exact (for a simulation's own tables and
baselines) and the DP evaluation a site releases (noisy counts at a public grid)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

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


# --- the DP evaluation: what a site releases, and what the coordinator makes of it -----
#
# A site never sends a metric. It sends, for the study's model on its held-out rows,
# one noisy count per (class, score bin) on a public grid of thresholds, and a noisy
# sum of each patient's clipped log loss (in units of the clip, so one patient adds at
# most 1). One patient falls in exactly one bin and adds at most 1 to the loss
# coordinate: the whole vector's L2 sensitivity is sqrt(2). Everything below (counts,
# accuracy at 0.5, ROC points, AUC, loss) is post-processing of the noisy vector.

# Thresholds evenly spaced in logit from -3 to 3 (0.047 ... 0.953); 0.5 is one of them.
EVALUATION_THRESHOLDS: tuple[float, ...] = tuple(
    round(1.0 / (1.0 + float(np.exp(-logit))), 6) for logit in np.linspace(-3.0, 3.0, 9)
)
LOSS_CLIP = 5.0  # nats: a patient's log loss counts up to this (a probability of 0.7% for the truth)
EVALUATION_SENSITIVITY = float(np.sqrt(2.0))


def evaluation_counts(
    *, y_true: np.ndarray, proba: np.ndarray, thresholds: tuple[float, ...] = EVALUATION_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """What a site noises: the counts (negatives per score bin, then positives per score
    bin; each patient in exactly one) and each patient's clipped log loss in units of
    LOSS_CLIP (in [0, 1]). Bin i holds scores in [t[i-1], t[i])."""
    y = np.asarray(y_true) >= 0.5
    p = np.asarray(proba, dtype=float)
    bins = np.searchsorted(np.asarray(thresholds), p, side="right")
    n_bins = len(thresholds) + 1
    negatives = np.bincount(bins[~y], minlength=n_bins)
    positives = np.bincount(bins[y], minlength=n_bins)
    q = np.clip(p, 1e-12, 1 - 1e-12)
    loss = -np.where(y, np.log(q), np.log(1 - q))
    return np.concatenate([negatives, positives]).astype(np.int64), np.minimum(loss, LOSS_CLIP) / LOSS_CLIP


def evaluation_cells(
    *, y_true: np.ndarray, proba: np.ndarray, thresholds: tuple[float, ...] = EVALUATION_THRESHOLDS
) -> np.ndarray:
    """The exact vector before noise: the counts, then the clipped loss sum / LOSS_CLIP."""
    counts, losses = evaluation_counts(y_true=y_true, proba=proba, thresholds=thresholds)
    return np.concatenate([counts.astype(float), [float(losses.sum())]])


@dataclass(frozen=True)
class NoisyEvaluation:
    """One site's (or several sites' pooled) noisy evaluation vector, and its metrics.

    ``noise_std`` is the standard deviation of the noise on each cell (for pooled
    evaluations, of their sum). The metrics are estimates, each with its standard
    deviation under the noise (``*-sd``, by simulating the noise again around the
    released counts): the number of rows and the loss from the noisy sums as they are
    (unbiased); accuracy and AUC from the cells read as at least 0 (far less variance;
    the noise then pulls them towards chance, never above what the model does, on
    average).
    """

    thresholds: tuple[float, ...]
    negatives: tuple[float, ...]
    positives: tuple[float, ...]
    loss_units: float  # noisy sum of clipped losses / loss_clip
    noise_std: float
    loss_clip: float = LOSS_CLIP

    @classmethod
    def from_cells(cls, *, cells: np.ndarray, noise_std: float, thresholds=EVALUATION_THRESHOLDS) -> NoisyEvaluation:
        n_bins = len(thresholds) + 1
        cells = [float(v) for v in cells]
        if len(cells) != 2 * n_bins + 1:
            raise ValueError(f"an evaluation vector has {2 * n_bins + 1} cells; got {len(cells)}.")
        return cls(
            thresholds=tuple(thresholds),
            negatives=tuple(cells[:n_bins]),
            positives=tuple(cells[n_bins : 2 * n_bins]),
            loss_units=cells[-1],
            noise_std=float(noise_std),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> NoisyEvaluation:
        data = json.loads(text)
        return cls(
            thresholds=tuple(float(t) for t in data["thresholds"]),
            negatives=tuple(float(v) for v in data["negatives"]),
            positives=tuple(float(v) for v in data["positives"]),
            loss_units=float(data["loss_units"]),
            noise_std=float(data["noise_std"]),
            loss_clip=float(data.get("loss_clip", LOSS_CLIP)),
        )

    @classmethod
    def pooled(cls, evaluations: list[NoisyEvaluation]) -> NoisyEvaluation:
        """The sum of several sites' vectors (the same grid): one pooled evaluation."""
        first = evaluations[0]
        if any(e.thresholds != first.thresholds or e.loss_clip != first.loss_clip for e in evaluations):
            raise ValueError("pooled evaluations must share one threshold grid and one loss clip.")
        return cls(
            thresholds=first.thresholds,
            negatives=tuple(np.sum([e.negatives for e in evaluations], axis=0).tolist()),
            positives=tuple(np.sum([e.positives for e in evaluations], axis=0).tolist()),
            loss_units=float(sum(e.loss_units for e in evaluations)),
            noise_std=float(np.sqrt(sum(e.noise_std**2 for e in evaluations))),
            loss_clip=first.loss_clip,
        )

    def metrics(self, *, draws: int = 200) -> dict[str, float]:
        """num-examples, accuracy (at 0.5), auc, loss, each with its ``-sd`` under the noise."""
        cells = np.array([*self.negatives, *self.positives, self.loss_units])
        point = _metrics_of(cells[None, :], self.thresholds, self.loss_clip)
        rng = np.random.default_rng(0)  # the spread of an estimate, not a release: any seed
        again = cells[None, :] + rng.normal(0.0, self.noise_std, size=(draws, cells.size))
        spread = _metrics_of(again, self.thresholds, self.loss_clip)
        out = {name: float(values[0]) for name, values in point.items()}
        out.update({f"{name}-sd": float(np.nanstd(values)) for name, values in spread.items()})
        return out


def _metrics_of(cells: np.ndarray, thresholds: tuple[float, ...], loss_clip: float) -> dict[str, np.ndarray]:
    n_bins = len(thresholds) + 1
    n = cells[:, : 2 * n_bins].sum(axis=1)  # unbiased
    negatives = np.clip(cells[:, :n_bins], 0, None)
    positives = np.clip(cells[:, n_bins : 2 * n_bins], 0, None)
    n_neg, n_pos = negatives.sum(axis=1), positives.sum(axis=1)
    half = thresholds.index(0.5) + 1  # bins below 0.5 are 0 .. half-1
    correct = negatives[:, :half].sum(axis=1) + positives[:, half:].sum(axis=1)
    below = np.cumsum(negatives, axis=1) - negatives  # negatives in lower bins
    pairs = (positives * (below + negatives / 2)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_neg + n_pos >= 1, correct / (n_neg + n_pos), np.nan)
        auc = np.where((n_pos >= 1) & (n_neg >= 1), pairs / (n_pos * n_neg), np.nan)
        loss = np.where(n >= 1, np.clip(cells[:, -1] * loss_clip / n, 0, loss_clip), np.nan)
    return {"num-examples": np.maximum(n, 0), "accuracy": accuracy, "auc": auc, "loss": loss}
