"""Synthetic hospitals drawn from a public data dictionary alone: no site data is read.

For tuning without spending privacy: every column is drawn from what the dictionary
states (a numeric column from a normal centred in its public range with a sixth of the
range as its spread, clipped to it; a binary column a fair coin; a categorical column
uniform over its categories), and the outcome from a logistic model whose coefficients
the caller states as public prior knowledge (directions of risk from the literature,
never fitted to the data). Whatever is tuned on these is free: it is a function of
public facts only. It is also only as good as that prior, which the caller must say.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from federation.data.dictionary import DataDictionary


def hospitals_from_dictionary(
    *,
    dictionary: DataDictionary,
    sizes: Mapping[str, int],
    target: str,
    coefficients: Mapping[str, float],
    intercept: float,
    seed: int,
    derived: Mapping[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """One frame per site (``sizes``: site -> rows) of features drawn from the
    dictionary and a binary ``target`` from ``intercept + sum(coef * z)``, where z is a
    numeric column scaled to [-1, 1] over its public range, a binary column as 0/1, and
    ``"column=value"`` names an indicator of a categorical value. ``derived`` copies the
    target into other columns the dictionary requires (e.g. a detail column).
    Deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    out = {}
    for site, n in sizes.items():
        frame = {}
        score = np.full(int(n), float(intercept))
        for column in dictionary.columns:
            if column.name == target or column.role in ("id", "outcome_detail"):
                continue
            if column.kind in ("numeric", "integer"):
                low, high = float(column.minimum), float(column.maximum)
                values = np.clip(rng.normal((low + high) / 2, (high - low) / 6, size=n), low, high)
                if column.kind == "integer":
                    values = np.round(values)
                frame[column.name] = values
                z = 2 * (values - low) / (high - low) - 1
                score += coefficients.get(column.name, 0.0) * z
            elif column.kind == "binary":
                values = rng.integers(0, 2, size=n)
                frame[column.name] = values
                score += coefficients.get(column.name, 0.0) * values
            else:
                values = rng.choice(np.array(column.categories, dtype=object), size=n)
                frame[column.name] = values
                for category in column.categories:
                    score += coefficients.get(f"{column.name}={category}", 0.0) * (values == category)
        outcome = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(int)
        frame[target] = outcome
        for name, source in (derived or {}).items():
            frame[name] = frame[source]
        out[site] = pd.DataFrame(frame)
    return out
