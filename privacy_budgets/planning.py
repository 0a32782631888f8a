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

import pandas as pd

from privacy_budgets.accounting import calibrate_dpsgd_noise, check_delta, epsilon
from privacy_budgets.mechanisms import dpsgd_event

# The same calibration the ledger's numbers agree with, under the name planners look for.
calibrate = calibrate_dpsgd_noise

__all__ = ["calibrate", "plan_dpsgd"]


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
