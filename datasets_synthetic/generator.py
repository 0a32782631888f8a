"""Synthetic hospitals with known ground truth, deterministic for a seed.

Each site gets its own size and case mix (age, sex, smoking, diabetes, BMI,
admission mix) and its own random intercept; outcomes come from the known
models in `ground_truth.py`. Same seed, same arguments -> identical frames.

>>> fed = generate_hospitals(sites=3, rows=100, seed=7)
>>> list(fed.sites)
['hospital_01', 'hospital_02', 'hospital_03']
>>> sorted(len(f) for f in fed.sites.values())
[40, 100, 160]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from datasets_synthetic.ground_truth import GroundTruth, SurvivalModel
from datasets_synthetic.synthetic_dictionary import FOLLOWUP_DAYS, SYNTHETIC_HOSPITALS_DICTIONARY
from federation.data.dictionary import DataDictionary

if TYPE_CHECKING:
    import pandas as pd

MIN_SITE_ROWS = 10
MAX_SITES = 999

# Public reference constants (centre, scale) that turn raw values into model terms.
STANDARDISATION: dict[str, tuple[float, float]] = {
    "age": (60.0, 12.0),
    "systolic_bp": (130.0, 20.0),
    "cholesterol": (200.0, 40.0),
    "bmi": (27.0, 5.0),
    "heart_rate": (75.0, 12.0),
}

# True log-odds ratios of cardiac_event: per reference SD for numeric terms, per
# factor for binary ones, against 'elective' for admission type. Chosen so that the
# true model's AUC is about 0.8 and prevalence runs from about 12% to 35% by site.
INTERCEPT = -2.45
COEFFICIENTS: dict[str, float] = {
    "age": 0.75,
    "sex": 0.45,
    "systolic_bp": 0.35,
    "cholesterol": 0.30,
    "bmi": 0.15,
    "diabetes": 0.65,
    "smoker": 0.55,
    "heart_rate": 0.20,
    "admission_type=emergency": 0.80,
    "admission_type=transfer": 0.45,
}
# True log hazard ratios of the time-to-event outcome, same terms.
LOG_HAZARD_RATIOS: dict[str, float] = {
    "age": 0.60,
    "sex": 0.35,
    "systolic_bp": 0.30,
    "cholesterol": 0.25,
    "bmi": 0.10,
    "diabetes": 0.50,
    "smoker": 0.45,
    "heart_rate": 0.15,
    "admission_type=emergency": 0.50,
    "admission_type=transfer": 0.30,
}
WEIBULL_SHAPE = 1.2
WEIBULL_SCALE_DAYS = 9000.0
DROPOUT_RATE_PER_DAY = 1 / 7300  # about 22% lost to follow-up within five years
SITE_EFFECT_SD = 0.3  # random intercepts are drawn N(0, SD) and capped at +-2 SD

# Each site's case mix is drawn uniformly from these bands.
CASE_MIX_BANDS: dict[str, tuple[float, float]] = {
    "age_mean": (55.0, 68.0),
    "male_share": (0.42, 0.60),
    "smoker_share": (0.12, 0.32),
    "diabetes_prevalence": (0.08, 0.22),
    "bmi_mean": (25.5, 29.5),
    "emergency_share": (0.25, 0.55),
    "transfer_share": (0.05, 0.20),
}


@dataclass(kw_only=True)
class SyntheticFederation:
    """Synthetic sites (site id -> frame), their data dictionary and the ground truth."""

    sites: dict[str, pd.DataFrame]
    dictionary: DataDictionary
    truth: GroundTruth

    def summary(self) -> pd.DataFrame:
        """One row per site: rows, prevalence of the target, mean age, censored share.

        These are synthetic data, so printing them is fine; never do this with real sites.
        """
        import pandas as pd

        target = self.dictionary.target
        rows = [
            {
                "site": site_id,
                "rows": len(frame),
                "prevalence": float(frame[target].mean()),
                "mean_age": float(frame["age"].mean()),
                "censored": float(1 - frame["event_observed"].mean()),
            }
            for site_id, frame in self.sites.items()
        ]
        return pd.DataFrame(rows)


def site_ids(*, sites: int) -> list[str]:
    """'hospital_01', 'hospital_02', ... (three digits once there are 100 sites or more)."""
    width = 3 if sites >= 100 else 2
    return [f"hospital_{i:0{width}d}" for i in range(1, sites + 1)]


def site_sizes(*, sites: int, rows: int, size_spread: float, rng: np.random.Generator) -> list[int]:
    """Row counts evenly spaced over [rows*(1-spread), rows*(1+spread)], shuffled.

    Evenly spaced (rather than random) so that sizes always differ and average `rows`;
    the shuffle decides which hospital gets which size. Each site has at least 10 rows.
    """
    if sites == 1:
        return [rows]
    factors = rng.permutation(np.linspace(1 - size_spread, 1 + size_spread, sites))
    return [max(MIN_SITE_ROWS, int(round(rows * f))) for f in factors]


def generate_hospitals(
    *, sites: int = 4, rows: int = 5000, seed: int = 7, size_spread: float = 0.6
) -> SyntheticFederation:
    """Draw `sites` synthetic hospitals averaging `rows` patients each.

    Site sizes are evenly spaced between (1 - size_spread) * rows and
    (1 + size_spread) * rows (0.4x to 1.6x by default) and assigned to sites in
    an order drawn from the seed. Each site's case mix is drawn from
    CASE_MIX_BANDS; outcomes follow the models in `ground_truth.py` with the
    coefficients in this module.
    """
    _check_arguments(sites=sites, rows=rows, seed=seed, size_spread=size_spread)
    rng = np.random.default_rng(seed)
    ids = site_ids(sites=sites)
    case_mix = {
        site_id: {key: float(rng.uniform(lo, hi)) for key, (lo, hi) in CASE_MIX_BANDS.items()} for site_id in ids
    }
    effects = np.clip(rng.normal(0.0, SITE_EFFECT_SD, sites), -2 * SITE_EFFECT_SD, 2 * SITE_EFFECT_SD)
    sizes = site_sizes(sites=sites, rows=rows, size_spread=size_spread, rng=rng)
    truth = GroundTruth(
        seed=seed,
        intercept=INTERCEPT,
        coefficients=dict(COEFFICIENTS),
        site_effects={site_id: float(e) for site_id, e in zip(ids, effects, strict=False)},
        standardisation=dict(STANDARDISATION),
        survival=SurvivalModel(
            weibull_shape=WEIBULL_SHAPE,
            weibull_scale_days=WEIBULL_SCALE_DAYS,
            log_hazard_ratios=dict(LOG_HAZARD_RATIOS),
            dropout_rate_per_day=DROPOUT_RATE_PER_DAY,
            administrative_censoring_days=FOLLOWUP_DAYS,
        ),
        site_case_mix=case_mix,
    )
    # One independent stream per site, spawned from the seed.
    site_rngs = rng.spawn(sites)
    frames = {
        site_id: _draw_site(site_id=site_id, size=size, mix=case_mix[site_id], truth=truth, rng=site_rng)
        for site_id, size, site_rng in zip(ids, sizes, site_rngs, strict=False)
    }
    return SyntheticFederation(sites=frames, dictionary=SYNTHETIC_HOSPITALS_DICTIONARY, truth=truth)


def _check_arguments(*, sites: int, rows: int, seed: int, size_spread: float) -> None:
    def whole(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(sites) or not 1 <= sites <= MAX_SITES:
        raise ValueError(f"sites must be a whole number from 1 to {MAX_SITES}, got {sites!r}; e.g. sites=4")
    if not whole(rows) or rows < 20:
        raise ValueError(f"rows (average rows per site) must be a whole number >= 20, got {rows!r}; e.g. rows=5000")
    if not whole(seed) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}; e.g. seed=7")
    if not isinstance(size_spread, (int, float)) or isinstance(size_spread, bool) or not 0 <= size_spread < 1:
        raise ValueError(
            f"size_spread must be a number in [0, 1) (0.6 gives sites of 0.4x to 1.6x rows), got {size_spread!r}"
        )


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _bounded(values: np.ndarray, column: str, *, decimals: int = 0) -> np.ndarray:
    """Round, then clip to the dictionary's range, so every generated value validates."""
    spec = SYNTHETIC_HOSPITALS_DICTIONARY.column(column)
    return np.clip(np.round(values, decimals), spec.minimum, spec.maximum)


def _draw_site(
    *, site_id: str, size: int, mix: dict[str, float], truth: GroundTruth, rng: np.random.Generator
) -> pd.DataFrame:
    import pandas as pd

    age = _bounded(rng.normal(mix["age_mean"], 13.0, size), "age")
    sex = rng.binomial(1, mix["male_share"], size)
    bmi = _bounded(rng.normal(mix["bmi_mean"], 4.8, size), "bmi", decimals=1)
    # Older patients smoke less; older and heavier patients have more diabetes.
    smoker = rng.binomial(1, _expit(_logit(mix["smoker_share"]) - 0.03 * (age - mix["age_mean"])))
    diabetes = rng.binomial(
        1,
        _expit(_logit(mix["diabetes_prevalence"]) + 0.035 * (age - mix["age_mean"]) + 0.12 * (bmi - mix["bmi_mean"])),
    )
    systolic_bp = _bounded(rng.normal(122 + 0.5 * (age - 55) + 0.9 * (bmi - 27) + 4 * diabetes, 15.0), "systolic_bp")
    cholesterol = _bounded(rng.normal(198 + 0.5 * (age - 55) - 6 * sex, 38.0), "cholesterol")
    elective_share = 1 - mix["emergency_share"] - mix["transfer_share"]
    admission = rng.choice(3, size=size, p=[elective_share, mix["emergency_share"], mix["transfer_share"]])
    emergency = (admission == 1).astype(float)
    heart_rate = _bounded(rng.normal(72 + 4 * smoker + 7 * emergency + 0.3 * (bmi - 27), 11.0), "heart_rate").astype(
        np.int64
    )

    categories = SYNTHETIC_HOSPITALS_DICTIONARY.column("admission_type").categories
    frame = pd.DataFrame(
        {
            "age": age,
            "sex": sex.astype(np.int64),
            "systolic_bp": systolic_bp,
            "cholesterol": cholesterol,
            "bmi": bmi,
            "diabetes": diabetes.astype(np.int64),
            "smoker": smoker.astype(np.int64),
            "heart_rate": heart_rate,
            "admission_type": pd.Categorical.from_codes(admission, categories=list(categories)),
        }
    )
    # Outcomes are drawn from the final (rounded, clipped) values, so truth.risk on the
    # frame gives exactly the probabilities used.
    frame["cardiac_event"] = rng.binomial(1, truth.risk(frame, site_id)).astype(np.int64)
    frame["followup_days"], frame["event_observed"] = _draw_followup(frame=frame, site_id=site_id, truth=truth, rng=rng)
    return frame


def _draw_followup(
    *, frame: pd.DataFrame, site_id: str, truth: GroundTruth, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Weibull PH event times, censored by exponential drop-out and the end of follow-up."""
    model = truth.survival
    size = len(frame)
    # Inverse transform: S(T) = U  <=>  T = scale * (E / exp(eta)) ** (1 / shape), E ~ Exp(1).
    eta = truth.hazard_predictor(frame, site_id)
    event_time = model.weibull_scale_days * (rng.exponential(1.0, size) / np.exp(eta)) ** (1 / model.weibull_shape)
    dropout_time = rng.exponential(1 / model.dropout_rate_per_day, size)
    censor_time = np.minimum(dropout_time, model.administrative_censoring_days)
    observed = event_time <= censor_time
    days = np.clip(np.ceil(np.minimum(event_time, censor_time)), 1, model.administrative_censoring_days)
    return days.astype(np.int64), observed.astype(np.int64)
