"""What-if tables for DP-SGD before anything is reserved, and noise calibration.

>>> table = plan_dpsgd(noise_multipliers=[1.0, 2.0], rounds=[5], steps_per_round=20,
...                    sampling_rate=0.01, delta=1e-5)
>>> list(table.columns)
['noise_multiplier', 'rounds', 'steps_per_round', 'sampling_rate', 'steps', 'delta', 'epsilon', 'epsilon_rdp']
>>> bool(table["epsilon"].is_monotonic_decreasing)
True
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
from dp_accounting import DpEvent

from privacy_budgets.accounting import (
    MAX_NOISE_MULTIPLIER,
    MIN_NOISE_MULTIPLIER,
    NoiseCalibration,
    calibrate_dpsgd,
    calibrate_dpsgd_noise,
    check_delta,
    epsilon,
)
from privacy_budgets.errors import NoNoiseFits, ProjectBudgetSpent
from privacy_budgets.mechanisms import dpsgd_event

if TYPE_CHECKING:
    from privacy_budgets.ledger import Ledger

# The same calibration the ledger's numbers agree with, under the name planners look for.
calibrate = calibrate_dpsgd_noise

__all__ = ["calibrate", "calibrate_for_project", "plan_dpsgd"]


def calibrate_for_project(
    *,
    ledger: Ledger,
    dataset: str,
    project: str,
    target_epsilon: float,
    sampling_rate: float,
    steps: int,
    include_reserved: bool = False,
    minimum: float = MIN_NOISE_MULTIPLIER,
    maximum: float = MAX_NOISE_MULTIPLIER,
    planned: Sequence[DpEvent] = (),
) -> NoiseCalibration:
    """Noise for a DP-SGD run of ``project`` on ``dataset``, where ``target_epsilon`` is
    the project's total on the dataset: what the project already spent there counts.

    ``planned`` are the study's other releases, not yet in the ledger (its noisy
    evaluations, say): the DP-SGD noise is calibrated so that the prior spending, the
    planned releases and the training together stay within ``target_epsilon``.
    ``minimum`` and ``maximum`` bracket the noise (a site's policy narrows them).

    Every planner and every site calibrates through here, so a project whose earlier
    spending leaves no room is refused in the same words everywhere (ProjectBudgetSpent:
    the project's own numbers and the fix), never with a search's internal error.
    """
    delta = ledger.dataset_delta(dataset=dataset)
    prior = ledger.events(dataset=dataset, project=project, include_reserved=include_reserved)
    try:
        return calibrate_dpsgd(
            target_epsilon=target_epsilon,
            delta=delta,
            sampling_rate=sampling_rate,
            steps=steps,
            prior_events=[*prior, *planned],
            minimum=minimum,
            maximum=maximum,
        )
    except NoNoiseFits:
        raise ProjectBudgetSpent(
            project=project,
            site=ledger.site_id,
            spent=epsilon(events=prior, delta=delta) if prior else 0.0,
            target_epsilon=target_epsilon,
            allocation=ledger.allocation(dataset=dataset, project=project),
            maximum=maximum,
        ) from None


def plan_dpsgd(
    *,
    noise_multipliers: Sequence[float] | float,
    rounds: Sequence[int] | int,
    steps_per_round: Sequence[int] | int,
    sampling_rate: Sequence[float] | float,
    delta: float,
) -> pd.DataFrame:
    """Epsilon (PLD, and RDP as a cross-check) for every combination of the settings.

    Each row is one training: ``rounds`` x ``steps_per_round`` Poisson-sampled steps.
    """
    check_delta(delta)
    rows = []
    for sigma, n_rounds, steps, q in itertools.product(
        _many(noise_multipliers), _many(rounds), _many(steps_per_round), _many(sampling_rate)
    ):
        event = dpsgd_event(noise_multiplier=sigma, sampling_rate=q, steps=n_rounds * steps)
        rows.append(
            {
                "noise_multiplier": sigma,
                "rounds": n_rounds,
                "steps_per_round": steps,
                "sampling_rate": q,
                "steps": n_rounds * steps,
                "delta": delta,
                "epsilon": epsilon(events=[event], delta=delta),
                "epsilon_rdp": epsilon(events=[event], delta=delta, accountant="rdp"),
            }
        )
    return pd.DataFrame(rows)


def _many(value):
    return list(value) if isinstance(value, (list, tuple)) or hasattr(value, "__array__") else [value]
