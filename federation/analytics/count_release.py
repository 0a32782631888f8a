"""Noisy counts, and the exact mechanism that ran, for releases outside the query language.

A site's evaluation of a study's model and its one FedAvg weight (its number of
training records) leave the site only through this module. The noise is drawn on the
integers from a cryptographically secure source (``secure_noise``, OpenDP), and each
release is recorded as the discrete mechanism that ran, never as a continuous one.
The events are functions of public numbers only (the noise multiplier, the grids), so
a site reserves exactly the event it will commit before it reads a value.

- The row count: one discrete Gaussian count, sensitivity 1 (``count_event``).
- An evaluation: one patient falls in exactly one (class, score bin) cell of a public
  threshold grid and adds a clipped loss in [0, 1] (in units of the clip). The cells
  and the loss sum are two releases, each at noise multiplier sqrt(2) x m: Gaussian
  precisions add, so together they cost about what one Gaussian of multiplier m on the
  whole vector (L2 sensitivity sqrt(2)) would, and the ledger composes the exact
  discrete events (``evaluation_event``).

>>> value, event = release_count(count=120, noise_multiplier=4.0)
>>> isinstance(value, int), type(event).__name__, event.sigma
(True, 'DiscreteGaussianDpEvent', 4.0)
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np

from federation.analytics.noise import clipped_sum_event, secure_noisy_sum
from federation.analytics.secure_noise import check_scale, noise_event, secure_noisy_counts
from privacy_budgets.mechanisms import composed_event

# Each half of an evaluation gets sqrt(2) x the multiplier: two releases whose
# precisions add up to the one Gaussian the site planned.
EVALUATION_SPLIT = math.sqrt(2.0)


def count_event(*, noise_multiplier: float) -> dpa.DpEvent:
    """The exact event of ``release_count`` at ``noise_multiplier``."""
    return noise_event(
        mechanism="gaussian", scale=check_scale(name="noise_multiplier", scale=noise_multiplier), sensitivity=1
    )


def release_count(*, count: int, noise_multiplier: float) -> tuple[int, dpa.DpEvent]:
    """``count`` with discrete Gaussian noise of sigma ``noise_multiplier`` (secure), and its event."""
    noisy, event = secure_noisy_counts(np.array([int(count)], dtype=np.int64), noise_multiplier=noise_multiplier)
    return int(noisy[0]), event


def evaluation_event(*, noise_multiplier: float) -> dpa.DpEvent:
    """The exact event of ``release_evaluation`` at ``noise_multiplier``."""
    scale = check_scale(name="noise_multiplier", scale=noise_multiplier) * EVALUATION_SPLIT
    return composed_event(
        [
            noise_event(mechanism="gaussian", scale=scale, sensitivity=1),
            clipped_sum_event(low=0.0, high=1.0, noise_multiplier=scale),
        ]
    )


def release_evaluation(
    *, counts: np.ndarray, loss_units: np.ndarray, noise_multiplier: float
) -> tuple[np.ndarray, dpa.DpEvent, float]:
    """The noisy evaluation vector (the cells, then the loss sum in units of the clip),
    its exact event, and the noise's standard deviation on each cell.

    ``counts``: whole numbers, each patient in exactly one of them; ``loss_units``: one
    clipped loss per patient, in [0, 1]."""
    scale = check_scale(name="noise_multiplier", scale=noise_multiplier) * EVALUATION_SPLIT
    cells, cells_event = secure_noisy_counts(np.asarray(counts, dtype=np.int64), noise_multiplier=scale)
    loss, loss_event = secure_noisy_sum(np.asarray(loss_units, dtype=float), low=0.0, high=1.0, noise_multiplier=scale)
    vector = np.concatenate([cells.astype(float), [loss]])
    return vector, composed_event([cells_event, loss_event]), scale
