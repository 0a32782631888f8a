"""The one-run privacy audit: its bound against known values, its canaries through the real
engines, a correct engine stays under its claim, a broken one is caught, no site data read."""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import inspect
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special
from torch.func import functional_call, grad

import federation.training.privacy_audit as privacy_audit
from benchmarks.privacy_audit.broken import BROKEN
from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY, UCI_HEART_DISEASE_DICTIONARY
from federation.training.dp_sgd import ENGINES, binary_logit_loss, train_round
from federation.training.models import build_model
from federation.training.privacy_audit import (
    AuditResult,
    CanaryModel,
    audit_dp_sgd,
    audit_p_value,
    epsilon_lower_bound,
    guess_counts,
    synthetic_rows,
)
from privacy_budgets.accounting import calibrate_dpsgd_noise, epsilon
from privacy_budgets.mechanisms import dpsgd_event

# A short audit: 200 canaries, 50 steps at rate 0.1, noise calibrated to a claim of 1.
SHORT = {"sampling_rate": 0.1, "steps": 50, "canaries": 200, "max_grad_norm": 1.0}
SHORT_CLAIM = 1.0


@pytest.fixture(scope="module")
def short_noise() -> float:
    return calibrate_dpsgd_noise(target_epsilon=SHORT_CLAIM, delta=1e-5, sampling_rate=0.1, steps=50)


def short_audit(*, noise_multiplier: float, engine: str = "vectorized", seed: int = 3, **overrides) -> AuditResult:
    return audit_dp_sgd(
        noise_multiplier=noise_multiplier,
        engine=engine,
        dictionary=SYNTHETIC_HOSPITALS_DICTIONARY,
        seed=seed,
        progress=False,
        **{**SHORT, **overrides},
    )


# --- the bound ----------------------------------------------------------------------------


def test_docstring_examples_run():
    result = doctest.testmod(privacy_audit, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("r", [10, 50, 100, 200, 1000])
def test_all_correct_pure_dp_bound_is_the_binomial_tail_in_closed_form(r):
    # P[Bin(r, p) >= r] = p^r = 0.05  =>  eps = logit(0.05^(1/r)).
    exact = float(special.logit(0.05 ** (1 / r)))
    assert epsilon_lower_bound(canaries=1000, guesses=r, correct=r, delta=0.0) == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize(("r", "tolerance"), [(50, 0.03), (100, 0.02), (1000, 0.01)])
def test_r_guesses_all_correct_give_about_ln_r_over_3(r, tolerance):
    # The issue's rule of thumb (ln(1/0.05) = 3.0), checked: the anchors' "100 guesses: about 3.5".
    assert epsilon_lower_bound(canaries=1000, guesses=r, correct=r, delta=0.0) == pytest.approx(
        math.log(r / 3), abs=tolerance
    )


def test_pure_dp_p_value_is_the_binomial_tail():
    # 10 guesses all right at epsilon 0 (coin flips): 2^-10; 8 of 10: P[Bin(10, 1/2) >= 8] = 56/1024.
    assert audit_p_value(canaries=100, guesses=10, correct=10, epsilon=0.0, delta=0.0) == pytest.approx(2**-10)
    assert audit_p_value(canaries=100, guesses=10, correct=8, epsilon=0.0, delta=0.0) == pytest.approx(56 / 1024)


def test_delta_adds_the_papers_term_and_weakens_the_bound():
    m, r, v, eps, delta = 1000, 100, 90, 1.0, 1e-5
    p = special.expit(eps)
    from scipy import stats

    term = max(sum(stats.binom.pmf(v - j, r, p) for j in range(1, i + 1)) / i for i in range(1, v + 1))
    expected = stats.binom.sf(v - 1, r, p) + 2 * m * delta * term
    assert audit_p_value(canaries=m, guesses=r, correct=v, epsilon=eps, delta=delta) == pytest.approx(expected)
    pure = epsilon_lower_bound(canaries=m, guesses=r, correct=r, delta=0.0)
    approx = epsilon_lower_bound(canaries=m, guesses=r, correct=r, delta=1e-5)
    assert pure - 0.05 < approx < pure  # slightly weaker: 3.465 against 3.493


@pytest.mark.parametrize("r", [20, 100, 400])
def test_bound_is_monotone_in_correct_guesses_and_p_value_in_epsilon(r):
    bounds = [epsilon_lower_bound(canaries=1000, guesses=r, correct=v, delta=1e-5) for v in range(r // 2, r + 1)]
    assert all(a <= b + 1e-9 for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[0] == 0.0 and bounds[-1] > 0
    for v in (r // 2, 3 * r // 4, r):
        ps = [audit_p_value(canaries=1000, guesses=r, correct=v, epsilon=e, delta=1e-5) for e in np.linspace(0, 8, 81)]
        assert all(a <= b + 1e-12 for a, b in zip(ps, ps[1:], strict=False))


def test_a_higher_confidence_gives_a_lower_bound():
    at = {
        c: epsilon_lower_bound(canaries=1000, guesses=100, correct=90, delta=1e-5, confidence=c)
        for c in (0.9, 0.95, 0.99)
    }
    assert at[0.9] > at[0.95] > at[0.99] > 0


def test_guess_counts_are_even_and_within_the_canaries():
    assert guess_counts(canaries=1000) == (20, 50, 100, 200, 500, 800)
    assert guess_counts(canaries=3) == (2,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"canaries": 10, "guesses": 11, "correct": 5}, "0 <= correct <= guesses <= canaries"),
        ({"canaries": 10, "guesses": 4, "correct": 5}, "0 <= correct <= guesses <= canaries"),
        ({"canaries": 10, "guesses": 4, "correct": 2, "confidence": 1.0}, r"confidence must be .* in \(0, 1\)"),
    ],
)
def test_bound_refuses_impossible_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        epsilon_lower_bound(**{"delta": 1e-5, **kwargs})


# --- the canaries -------------------------------------------------------------------------


def test_a_canary_row_has_a_dirac_gradient_and_an_ordinary_row_none_on_the_canaries():
    torch.manual_seed(0)
    model = CanaryModel(base=build_model(name="mlp", n_features=3, hidden=4), n_features=3, canaries=5, scale=200.0)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def per_sample(row: list[float], label: float) -> dict[str, torch.Tensor]:
        def loss(p):
            return binary_logit_loss(functional_call(model, p, (torch.tensor([row]),)), torch.tensor([label])).sum()

        return grad(loss)(params)

    canary = per_sample([0.0, 0.0, 0.0, 3.0], 1.0)  # canary j = 2
    expected = torch.zeros(6, 1)
    expected[3, 0] = -100.0  # scale x (sigmoid(0) - 1): norm G = 100 x C at C = 1
    assert torch.equal(canary["canary.weight"], expected)
    assert all(torch.count_nonzero(g) == 0 for name, g in canary.items() if name != "canary.weight")
    # The same gradient after training moved the canary's weight: it never saturates.
    params["canary.weight"] = params["canary.weight"] + 5.0
    assert torch.equal(per_sample([0.0, 0.0, 0.0, 3.0], 1.0)["canary.weight"], expected)
    ordinary = per_sample([0.2, 0.5, 0.9, 0.0], 1.0)
    assert torch.count_nonzero(ordinary["canary.weight"]) == 0
    assert torch.count_nonzero(ordinary["base.2.bias"]) > 0  # it trains the model as any patient does


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_clips_a_canary_to_exactly_the_clipping_norm(engine):
    # Full batch (rate 1), no noise, no momentum: canary j's weight moves lr * C / batch per step.
    rows, canaries, c, lr, steps = 30, 4, 0.5, 0.1, 3
    torch.manual_seed(0)
    model = CanaryModel(base=build_model(name="logreg", n_features=2), n_features=2, canaries=canaries, scale=400 * c)
    x = np.zeros((rows + canaries, 3), np.float32)
    x[:rows, :2] = np.random.default_rng(0).random((rows, 2))
    x[rows:, 2] = np.arange(1, canaries + 1)
    y = np.ones(rows + canaries, np.float32)
    outcome = train_round(
        model=model,
        x=x,
        y=y,
        noise_multiplier=0.0,
        max_grad_norm=c,
        batch_size=rows + canaries,
        local_epochs=steps,
        learning_rate=lr,
        engine=engine,
    )
    moved = outcome.state_dict["canary.weight"][1:, 0].double().numpy()
    np.testing.assert_allclose(moved, steps * lr * c / (rows + canaries), rtol=1e-5)


def test_synthetic_rows_come_from_the_dictionary_alone():
    rng = np.random.default_rng(0)
    x, y = synthetic_rows(dictionary=UCI_HEART_DISEASE_DICTIONARY, rows=500, rng=rng)
    assert x.shape[0] == 500 and x.dtype == np.float32 and set(np.unique(y)) == {0.0, 1.0}
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    with pytest.raises(TypeError, match="dictionary must be a data dictionary"):
        synthetic_rows(dictionary={"age": (0, 100)}, rows=5, rng=rng)


# --- the audit ----------------------------------------------------------------------------


def test_a_correct_engine_audits_at_or_below_its_claim(short_noise):
    result = short_audit(noise_multiplier=short_noise)
    assert result.claimed_epsilon == pytest.approx(
        epsilon(events=[dpsgd_event(noise_multiplier=short_noise, sampling_rate=0.1, steps=50)], delta=1e-5)
    )
    assert result.claimed_epsilon <= SHORT_CLAIM + 1e-6
    assert 0 <= result.empirical_epsilon <= result.claimed_epsilon
    assert not result.exceeds_claim
    assert result.steps == 50 and result.sampling_rate == pytest.approx(0.1)
    assert result.canaries == 200 and result.canaries_included == sum(result.included)
    assert len(result.scores) == 200
    assert "Consistent with the claim" in result.statement()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_a_broken_engine_audits_above_its_claim(short_noise, engine, bug):
    with BROKEN[bug]():
        result = short_audit(noise_multiplier=short_noise, engine=engine)
    assert result.claimed_epsilon <= SHORT_CLAIM + 1e-6  # the ledger charges as if nothing were broken
    assert result.empirical_epsilon > 2.5 * result.claimed_epsilon
    assert result.exceeds_claim
    assert "EXCEEDS the claim" in result.statement()


def test_the_broken_variants_are_undone_on_exit(short_noise):
    with BROKEN["noise off"](), BROKEN["clipping off"]():
        pass
    assert not short_audit(noise_multiplier=short_noise, canaries=100).exceeds_claim


def test_the_audit_takes_public_parameters_and_never_reads_site_data(short_noise, monkeypatch):
    allowed = {
        "noise_multiplier",
        "max_grad_norm",
        "sampling_rate",
        "steps",
        "dictionary",
        "engine",
        "delta",
        "canaries",
        "confidence",
        "guesses",
        "model",
        "hidden",
        "learning_rate",
        "momentum",
        "seed",
        "progress",
    }
    signature = inspect.signature(audit_dp_sgd)
    assert set(signature.parameters) == allowed
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())

    def refuse(*args, **kwargs):
        raise AssertionError("the audit read data")

    import federation.data.loader as loader
    import federation.site.data_access as data_access

    for target, name in [
        (pd, "read_csv"),
        (pd, "read_parquet"),
        (np, "load"),
        (np, "loadtxt"),
        (loader, "load_site"),
        (loader, "load_site_data"),
        (loader, "load_sites"),
        (data_access, "site_arrays"),
    ]:
        monkeypatch.setattr(target, name, refuse)
    result = short_audit(noise_multiplier=short_noise, canaries=50)
    assert result.dictionary == SYNTHETIC_HOSPITALS_DICTIONARY.name
    assert "no site data" in result.statement()


def test_the_result_renders_as_a_frame_html_and_words(short_noise):
    result = short_audit(noise_multiplier=short_noise, canaries=50)
    frame = result.to_frame()
    assert list(frame.columns[:4]) == ["engine", "claimed_epsilon", "empirical_epsilon", "exceeds_claim"]
    assert len(frame) == 1 and frame.loc[0, "canaries"] == 50
    assert list(result.guesses_frame().columns) == ["guesses", "correct", "bound"]
    page = result._repr_html_()
    assert "Privacy audit" in page and "claimed_epsilon" in page
    words = str(result)
    assert "Claimed: epsilon" in words and "cannot show more than epsilon" in words
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.empirical_epsilon = 9.0  # frozen


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"sampling_rate": 0.03}, r"sampling_rate must be 1 / k .* got 0.03\. Use 1/34"),
        ({"steps": 55}, r"steps must be a positive multiple of 10 .* got 55\. Use 50 or 60"),
        ({"canaries": 1}, r"canaries must be a whole number from 2 to 10,000; got 1"),
        ({"canaries": 20_000}, r"canaries must be a whole number from 2 to 10,000; got 20000"),
        ({"engine": "jax"}, r"engine must be one of opacus, vectorized; got 'jax'"),
        ({"noise_multiplier": 0.0}, r"noise_multiplier must be a finite number > 0; got 0.0"),
        ({"guesses": (3,)}, r"guesses must be even whole numbers"),
    ],
)
def test_bad_settings_are_refused_with_the_rule_the_value_and_a_fix(overrides, match):
    kwargs = {"noise_multiplier": 1.0, **overrides}
    with pytest.raises(ValueError, match=match):
        short_audit(**kwargs)


def test_the_audit_runs_for_any_dictionary_and_model(short_noise):
    with contextlib.nullcontext():
        result = audit_dp_sgd(
            noise_multiplier=short_noise,
            dictionary=UCI_HEART_DISEASE_DICTIONARY,
            model="logreg",
            engine="opacus",
            progress=False,
            seed=0,
            **{**SHORT, "canaries": 50},
        )
    assert result.dictionary == UCI_HEART_DISEASE_DICTIONARY.name and result.engine == "opacus"
    assert result.empirical_epsilon <= result.claimed_epsilon
