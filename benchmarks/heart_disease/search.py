"""Hyperparameters chosen on validation splits of the TRAINING rows only.

Each centre's training set is split again (0.66/0.34, stratified, three different
seeds); every grid point is trained on the inner training rows of all centres and
scored by the average per-centre accuracy on the validation rows (AUC breaks ties).
FLamby's test rows are never read here. The DP search runs the sites' own DP-SGD
code in this process (same engine, same noise calibration as the Flower path).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from benchmarks.heart_disease.data import Centre, validation_folds
from benchmarks.heart_disease.training import Hyper, mean_accuracy, mean_auc, per_centre_metrics

Trainer = Callable[..., dict]


def grid(**axes: tuple) -> list[Hyper]:
    """Every combination of the given ``Hyper`` fields."""
    names = list(axes)
    return [Hyper(**dict(zip(names, values, strict=False))) for values in itertools.product(*axes.values())]


NONPRIVATE_GRID = dict(learning_rate=(0.1, 0.3, 1.0), rounds=(10, 30), batch_size=(32, 128))
DP_GRID = dict(learning_rate=(0.3, 1.0), rounds=(10, 20), batch_size=(64, 256), max_grad_norm=(0.5, 1.0))
QUICK_GRID = dict(learning_rate=(0.5,), rounds=(3,), batch_size=(64,))


@dataclass(frozen=True)
class Choice:
    hp: Hyper
    val_accuracy: float
    val_auc: float
    tried: int


def rank(
    *,
    centres: dict[str, Centre],
    trainer: Trainer,
    candidates: list[Hyper],
    folds: int,
    label: str,
    show_progress: bool = True,
    **train_args,
) -> list[Choice]:
    """Every candidate by mean validation accuracy over ``folds`` inner splits (AUC
    breaks ties), best first."""
    splits = validation_folds(centres=centres, folds=folds)
    scored = []
    for hp in tqdm(candidates, desc=f"search: {label}", leave=False, disable=not show_progress):
        accs, aucs = [], []
        for k, fold in enumerate(splits):
            metrics = per_centre_metrics(models=trainer(centres=fold, hp=hp, seed=100 + k, **train_args), centres=fold)
            accs.append(mean_accuracy(metrics))
            aucs.append(mean_auc(metrics))
        scored.append((float(np.mean(accs)), float(np.nanmean(aucs)), hp))
    ordered = sorted(scored, key=lambda t: (t[0], t[1]), reverse=True)
    return [Choice(hp=hp, val_accuracy=acc, val_auc=auc, tried=len(candidates)) for acc, auc, hp in ordered]


def choose(**search) -> Choice:
    """The candidate with the best mean validation accuracy over ``folds`` inner splits."""
    return rank(**search)[0]
