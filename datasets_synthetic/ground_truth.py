"""The known models behind the synthetic hospitals, so results can be checked against truth.

Binary outcome (`cardiac_event`), a logistic model with a random intercept per site:

    logit P(event) = intercept + sum_j beta_j * term_j + site_effect[site]

Time to event (`followup_days`, `event_observed`), a Weibull proportional-hazards
model with the same terms and the same site effect:

    S(t) = exp(-(t / scale) ** shape * exp(sum_j gamma_j * term_j + site_effect[site]))

censored independently by drop-out (exponential) and administratively at the end
of follow-up.

Model terms: a numeric column `c` enters as (c - centre) / scale with the public
constants in `standardisation`; a binary column enters as 0/1; a categorical
column `c` enters as indicators named "c=level" against its first category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "workbench-ground-truth/1"


@dataclass(frozen=True, kw_only=True)
class SurvivalModel:
    """Weibull proportional hazards with independent censoring (drop-out + administrative)."""

    weibull_shape: float
    weibull_scale_days: float
    log_hazard_ratios: dict[str, float]
    dropout_rate_per_day: float
    administrative_censoring_days: int

    def to_json(self) -> dict[str, Any]:
        return {
            "weibull_shape": self.weibull_shape,
            "weibull_scale_days": self.weibull_scale_days,
            "log_hazard_ratios": dict(self.log_hazard_ratios),
            "dropout_rate_per_day": self.dropout_rate_per_day,
            "administrative_censoring_days": self.administrative_censoring_days,
        }


@dataclass(frozen=True, kw_only=True)
class GroundTruth:
    """Everything needed to recompute the true outcome probabilities of any row.

    >>> from datasets_synthetic import generate_hospitals
    >>> fed = generate_hospitals(sites=2, rows=200, seed=1)
    >>> p = fed.truth.risk(fed.sites["hospital_01"], "hospital_01")
    >>> bool(((p > 0) & (p < 1)).all())
    True
    """

    seed: int
    intercept: float
    coefficients: dict[str, float]
    site_effects: dict[str, float]
    standardisation: dict[str, tuple[float, float]]
    survival: SurvivalModel
    site_case_mix: dict[str, dict[str, float]]

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """The model terms of each row, columns in `coefficients` order (NaN where a value is missing)."""
        return np.column_stack([self._term(frame, term) for term in self.coefficients])

    def _term(self, frame: pd.DataFrame, term: str) -> np.ndarray:
        column, _, level = term.partition("=")
        if column not in frame.columns:
            raise KeyError(
                f"the ground-truth model needs column '{column}', which the frame lacks; "
                f"frame columns: {', '.join(map(str, frame.columns))}"
            )
        if level:
            values = frame[column].astype("object").to_numpy()
            return (values == level).astype(float)
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        if column in self.standardisation:
            centre, scale = self.standardisation[column]
            return (values - centre) / scale
        return values

    def site_effect(self, site_id: str | None) -> float:
        """The site's random intercept; None means a new site of average effect (0)."""
        if site_id is None:
            return 0.0
        try:
            return self.site_effects[site_id]
        except KeyError:
            raise KeyError(
                f"no site '{site_id}' in the ground truth; known sites: {', '.join(self.site_effects)} "
                "(pass site_id=None for a site of average effect)"
            ) from None

    def linear_predictor(self, frame: pd.DataFrame, site_id: str | None) -> np.ndarray:
        """True log-odds of `cardiac_event` for each row."""
        beta = np.fromiter(self.coefficients.values(), dtype=float)
        return self.intercept + self.design(frame) @ beta + self.site_effect(site_id)

    def risk(self, frame: pd.DataFrame, site_id: str | None) -> np.ndarray:
        """True probability of `cardiac_event` for each row of `frame` from site `site_id`."""
        return 1.0 / (1.0 + np.exp(-self.linear_predictor(frame, site_id)))

    def hazard_predictor(self, frame: pd.DataFrame, site_id: str | None) -> np.ndarray:
        """True log hazard ratio of each row (against a row with all terms 0 at an average site)."""
        gamma = np.array([self.survival.log_hazard_ratios[t] for t in self.coefficients])
        return self.design(frame) @ gamma + self.site_effect(site_id)

    def survival_probability(self, frame: pd.DataFrame, site_id: str | None, *, days: float) -> np.ndarray:
        """True probability of no event by `days` for each row, ignoring censoring."""
        model = self.survival
        cumulative = (days / model.weibull_scale_days) ** model.weibull_shape
        return np.exp(-cumulative * np.exp(self.hazard_predictor(frame, site_id)))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (schema-versioned with a `format` key)."""
        return {
            "format": FORMAT,
            "description": __doc__.strip(),
            "seed": self.seed,
            "intercept": self.intercept,
            "coefficients": dict(self.coefficients),
            "site_effects": dict(self.site_effects),
            "standardisation": {k: list(v) for k, v in self.standardisation.items()},
            "survival": self.survival.to_json(),
            "site_case_mix": {k: dict(v) for k, v in self.site_case_mix.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroundTruth:
        """Rebuild from `to_json()` output (e.g. a ground_truth.json file)."""
        if data.get("format") != FORMAT:
            raise ValueError(
                f"'format' is {data.get('format')!r}, expected {FORMAT!r}: not a workbench ground-truth file"
            )
        return cls(
            seed=int(data["seed"]),
            intercept=float(data["intercept"]),
            coefficients={k: float(v) for k, v in data["coefficients"].items()},
            site_effects={k: float(v) for k, v in data["site_effects"].items()},
            standardisation={k: (float(v[0]), float(v[1])) for k, v in data["standardisation"].items()},
            survival=SurvivalModel(**data["survival"]),
            site_case_mix={k: dict(v) for k, v in data["site_case_mix"].items()},
        )
