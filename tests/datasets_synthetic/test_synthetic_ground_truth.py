"""The ground truth is real: the data follow the documented models, and a fit recovers them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datasets_synthetic import generate_hospitals


@pytest.fixture(scope="module")
def federation():
    # 4 sites x about 10,000 rows: enough for coefficient standard errors of about 0.03.
    return generate_hospitals(sites=4, rows=10_000, seed=7)


def auc(*, labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula."""
    ranks = pd.Series(scores).rank().to_numpy()
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_logistic(*, x: np.ndarray, y: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Unpenalised maximum-likelihood logistic regression by Newton-Raphson."""
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-x @ beta))
        step = np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x, x.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def test_true_model_is_informative_and_prevalence_is_moderate(federation):
    prevalences = []
    for site_id, frame in federation.sites.items():
        risk = federation.truth.risk(frame, site_id)
        labels = frame["cardiac_event"].to_numpy()
        assert 0.75 <= auc(labels=labels, scores=risk) <= 0.85, site_id
        prevalences.append(labels.mean())
        # outcomes are drawn from exactly these probabilities
        assert labels.mean() == pytest.approx(risk.mean(), abs=4 * np.sqrt(risk.mean() / len(frame)))
    assert all(0.10 <= p <= 0.40 for p in prevalences), prevalences
    assert max(prevalences) - min(prevalences) > 0.03  # sites differ


def test_logistic_fit_on_pooled_data_recovers_the_true_coefficients(federation):
    truth = federation.truth
    site_list = list(federation.sites)
    blocks, labels = [], []
    for index, (_site_id, frame) in enumerate(federation.sites.items()):
        site_dummies = np.zeros((len(frame), len(site_list)))
        site_dummies[:, index] = 1.0  # one intercept per site (intercept + site effect)
        blocks.append(np.hstack([truth.design(frame), site_dummies]))
        labels.append(frame["cardiac_event"].to_numpy())
    beta = fit_logistic(x=np.vstack(blocks), y=np.concatenate(labels).astype(float))
    fitted = dict(zip(truth.coefficients, beta[: len(truth.coefficients)], strict=False))
    for term, true_value in truth.coefficients.items():
        assert fitted[term] == pytest.approx(true_value, abs=0.15), term
    site_intercepts = beta[len(truth.coefficients) :]
    for site_id, fitted_intercept in zip(site_list, site_intercepts, strict=False):
        assert fitted_intercept == pytest.approx(truth.intercept + truth.site_effects[site_id], abs=0.2)


def test_risk_for_unknown_site_is_a_clear_error_and_none_means_average(federation):
    frame = federation.sites["hospital_01"].head(5)
    with pytest.raises(KeyError, match=r"no site 'hospital_99' in the ground truth; known sites: hospital_01"):
        federation.truth.risk(frame, "hospital_99")
    average = federation.truth.risk(frame, None)
    shifted = federation.truth.linear_predictor(frame, "hospital_01")
    assert np.allclose(np.log(average / (1 - average)) + federation.truth.site_effects["hospital_01"], shifted)


def test_survival_times_are_in_range_and_censoring_is_sane(federation):
    limit = federation.truth.survival.administrative_censoring_days
    for frame in federation.sites.values():
        days, event = frame["followup_days"], frame["event_observed"]
        assert days.between(1, limit).all()
        assert 0.5 <= 1 - event.mean() <= 0.9  # censored share
        assert (event[days == limit] == 0).mean() > 0.99  # reaching the end is administrative censoring
        assert ((days < limit) & (event == 0)).mean() > 0.05  # random drop-out exists


def test_observed_events_match_the_documented_survival_model(federation):
    """Expected events = sum over rows of P(T <= min(dropout, end)), from the model alone."""
    truth = federation.truth
    model = truth.survival
    grid = np.linspace(0, model.administrative_censoring_days, 401)
    expected = observed = 0.0
    for site_id, frame in federation.sites.items():
        # S(t) = exp(-(t / scale) ** shape * exp(eta)), the documented Weibull PH model
        eta = truth.hazard_predictor(frame, site_id)
        alive = np.exp(-((grid[:, None] / model.weibull_scale_days) ** model.weibull_shape) * np.exp(eta))
        assert np.allclose(alive[200], truth.survival_probability(frame, site_id, days=grid[200]))
        event_in_step = alive[:-1] - alive[1:]
        still_followed = np.exp(-model.dropout_rate_per_day * (grid[:-1] + grid[1:]) / 2)
        expected += float((event_in_step * still_followed[:, None]).sum())
        observed += float(frame["event_observed"].sum())
    assert observed == pytest.approx(expected, rel=0.04)
