"""Answers fall inside their stated intervals at about the stated coverage.

The repeated draws run the site's own computation (exact cells -> noise -> suppression
-> estimates) many times on fixed synthetic records; the noise generator is seeded
here only so that the test is reproducible (a site always draws fresh OS entropy).
The intervals describe the DP noise, so the truth they must cover is the same
computation without noise on the same records; that exact computation is itself
checked against pandas and an independent life-table below.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _analytics_helpers import exact_answer, no_noise, released, repeated_releases

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY as DICTIONARY
from datasets_synthetic import generate_hospitals
from federation.analytics.estimates import answer_frame, estimate
from federation.analytics.noise import noise_multiplier
from federation.analytics.query import Query

REPEATS = 400
LEVEL = 0.95
# 400 repeats estimate a coverage of 0.95 with a standard error of about 0.011.
LOW, HIGH = 0.92, 0.98

QUERIES = {
    "count by category, Gaussian": Query(kind="count", by=("admission_type",), epsilon=0.3),
    "count by category, Laplace": Query(kind="count", by=("admission_type",), epsilon=0.3, mechanism="laplace"),
    "count with a filter": Query(kind="count", where=(("age", ">=", 65),), epsilon=0.2),
    "mean by sex": Query(kind="mean", column="age", bounds=(18, 95), by=("sex",), epsilon=0.3),
    "mean, Laplace": Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.3, mechanism="laplace"),
    "sum": Query(kind="sum", column="bmi", bounds=(15, 55), epsilon=0.3),
    "variance": Query(kind="variance", column="systolic_bp", bounds=(80, 220), epsilon=0.3),
    "histogram of a category": Query(kind="histogram", column="admission_type", epsilon=0.3),
    "histogram of binned values": Query(kind="histogram", column="age", bounds=(18, 95), bins=7, epsilon=0.5),
    "crosstab": Query(kind="crosstab", columns=("sex", "smoker"), epsilon=0.3),
    "survival": Query(kind="survival", bounds=(0, 1825), bins=10, epsilon=0.3),
    "survival by admission type": Query(kind="survival", bounds=(0, 1825), bins=6, by=("admission_type",), epsilon=1.0),
}


def _frame(hospitals):
    return hospitals.sites["hospital_02"]  # 2400 patients


def _coverage(query, frame, *, seed: int) -> np.ndarray:
    truth = exact_answer(query, frame)
    assert not truth["suppressed"].any(), "the fixture must not suppress: coverage is about released values"
    checked = query.check(dictionary=DICTIONARY)
    multiplier = noise_multiplier(query=checked, delta=1e-5)
    hits = []
    for release in repeated_releases(query, frame, noise_multiplier=multiplier, seed=seed, repeats=REPEATS):
        answer = estimate(query=checked, release=release, level=LEVEL)
        assert (answer["estimate"].notna()).all()
        hits.append((answer["ci_low"] <= truth["estimate"]) & (truth["estimate"] <= answer["ci_high"]))
    return np.array(hits, dtype=float)


@pytest.mark.parametrize("name", list(QUERIES))
def test_noise_intervals_cover_the_exact_answer_at_the_stated_level(name, hospitals):
    hits = _coverage(QUERIES[name], _frame(hospitals), seed=sum(map(ord, name)))
    assert LOW <= hits.mean() <= HIGH, f"{name}: coverage {hits.mean():.3f}, per cell {hits.mean(axis=0).round(3)}"
    # No single cell hides a failure behind the others' average.
    assert hits.mean(axis=0).min() >= 0.9


def test_quantile_intervals_cover_the_sample_quantile_at_least_at_the_level(hospitals):
    """The interval's ends are grid edges, so it is conservative by up to one bin."""
    frame = _frame(hospitals)
    query = Query(
        kind="quantiles", column="cholesterol", bounds=(100, 400), probabilities=(0.1, 0.5, 0.9), epsilon=0.3
    ).check(dictionary=DICTIONARY)
    values = np.clip(frame["cholesterol"].to_numpy(float), 100, 400)
    truth = np.array([np.quantile(values, p, method="inverted_cdf") for p in query.probabilities])
    multiplier = noise_multiplier(query=query, delta=1e-5)
    hits, errors = [], []
    for release in repeated_releases(query, frame, noise_multiplier=multiplier, seed=5, repeats=REPEATS):
        answer = estimate(query=query, release=release)
        low, high = answer["ci_low"].to_numpy(), answer["ci_high"].to_numpy()
        hits.append((low <= truth) & ((truth < high) | (high == 400)))
        errors.append(answer["estimate"].to_numpy() - truth)
    hits = np.array(hits, dtype=float)
    assert hits.mean(axis=0).min() >= LEVEL - 0.02, hits.mean(axis=0)
    # And the point estimate is close: within one grid bin (6 mg/dL) on average.
    assert np.abs(np.array(errors)).mean() < 6.0


def test_pooled_intervals_cover_the_pooled_exact_answer(hospitals):
    frames = hospitals.sites
    for query in (
        Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.2),
        Query(kind="survival", bounds=(0, 1825), bins=5, epsilon=0.3),
    ):
        checked = query.check(dictionary=DICTIONARY)
        multiplier = noise_multiplier(query=checked, delta=1e-5)
        exact = [
            released(query, f, noise_multiplier=multiplier, rng=None, sampler=no_noise, site_id=s)
            for s, f in frames.items()
        ]
        truth = answer_frame(query=checked, releases=exact).query("site == 'pooled'")["estimate"].to_numpy()
        streams = [
            repeated_releases(query, f, noise_multiplier=multiplier, seed=9 + i, repeats=REPEATS, site_id=s)
            for i, (s, f) in enumerate(frames.items())
        ]
        hits = []
        for releases in zip(*streams, strict=False):
            pooled = answer_frame(query=checked, releases=list(releases)).query("site == 'pooled'")
            hits.append((pooled["ci_low"].to_numpy() <= truth) & (truth <= pooled["ci_high"].to_numpy()))
        assert LOW <= np.mean(hits) <= HIGH, (query.kind, np.mean(hits))


def test_survival_total_intervals_cover_the_generators_true_survival():
    """Against the generator's own Weibull model (the population truth), over fresh
    hospitals: the '_total' interval (noise and Greenwood's sampling error) covers it."""
    query = Query(kind="survival", bounds=(0, 1825), bins=10, epsilon=1.0)
    rng = np.random.default_rng(3)
    hits = []
    for seed in range(150):
        federation = generate_hospitals(sites=1, rows=1500, seed=1000 + seed)
        ((site_id, frame),) = federation.sites.items()
        checked = query.check(dictionary=federation.dictionary)
        answer = estimate(
            query=checked,
            release=released(
                query, frame, noise_multiplier=noise_multiplier(query=checked, delta=1e-5), rng=rng, site_id=site_id
            ),
        )
        truth = np.array([federation.truth.survival_probability(frame, site_id, days=t).mean() for t in answer["time"]])
        hits.append((answer["ci_low_total"] <= truth) & (truth <= answer["ci_high_total"]))
    hits = np.array(hits, dtype=float)
    # Slightly conservative: the truth is averaged over each sample's own patients, while
    # Greenwood's error also counts the variation of who the patients are.
    assert 0.92 <= hits.mean() <= 0.99, hits.mean(axis=0)
    assert hits.mean(axis=0).min() >= 0.88


# --- the "truth" above is the right computation --------------------------------------


def test_exact_answers_agree_with_pandas(hospitals):
    frame = _frame(hospitals)
    counts = exact_answer(Query(kind="count", by=("admission_type",), epsilon=1.0), frame)
    expected = frame["admission_type"].astype(str).value_counts()
    assert dict(zip(counts["admission_type"], counts["estimate"], strict=False)) == expected.to_dict()

    means = exact_answer(Query(kind="mean", column="age", bounds=(18, 95), by=("sex",), epsilon=1.0), frame)
    assert means["estimate"].to_numpy() == pytest.approx(frame.groupby("sex")["age"].mean().to_numpy())

    # Sums are added on the fixed-point grid the noise is scaled to (noise.plan_noise):
    # ages (whole years around a centre of 56.5) lie on it exactly; squares of blood
    # pressure are rounded to a step of 64 mmHg^2 each, 1/1000 of their noise.
    variance = exact_answer(Query(kind="variance", column="systolic_bp", bounds=(80, 220), epsilon=1.0), frame)
    assert variance["estimate"][0] == pytest.approx(frame["systolic_bp"].var(ddof=1), rel=0.01)

    clipped = exact_answer(Query(kind="mean", column="age", bounds=(40, 70), epsilon=1.0), frame)
    assert clipped["estimate"][0] == pytest.approx(frame["age"].clip(40, 70).mean())

    filtered = exact_answer(Query(kind="count", where=(("age", ">=", 65), ("smoker", "==", 1)), epsilon=1.0), frame)
    assert filtered["estimate"][0] == ((frame["age"] >= 65) & (frame["smoker"] == 1)).sum()

    table = exact_answer(Query(kind="crosstab", columns=("sex", "smoker"), epsilon=1.0), frame)
    expected = pd.crosstab(frame["sex"], frame["smoker"]).stack()
    assert (
        dict(zip(zip(table["sex"], table["smoker"], strict=False), table["estimate"], strict=False))
        == expected.to_dict()
    )


def test_exact_survival_is_the_life_table_computed_independently(hospitals):
    frame = _frame(hospitals)
    edges = np.linspace(0, 1825, 11)
    answer = exact_answer(Query(kind="survival", bounds=(0, 1825), bins=10, epsilon=1.0), frame)
    time, event = frame["followup_days"].to_numpy(float), frame["event_observed"].to_numpy() == 1
    survival, expected = 1.0, []
    for start, end in zip(edges, edges[1:], strict=False):
        # at risk at the start: not yet left (an event at `start` or earlier has left; a
        # censoring at `start` has not, as in Kaplan-Meier)
        at_risk = ((time > start) | ((time == start) & ~event & (start > 0))).sum() if start > 0 else len(time)
        events = (event & (time > start) & (time <= end)).sum() if start > 0 else (event & (time <= end)).sum()
        censored = (~event & (time >= start) & (time < end)).sum()
        survival *= 1 - events / (at_risk - censored / 2)
        expected.append(survival)
    assert answer["estimate"].to_numpy() == pytest.approx(np.array(expected), rel=1e-12)
