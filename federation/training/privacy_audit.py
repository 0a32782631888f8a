"""An empirical privacy audit of the site's DP-SGD in one training run.

Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run"
(arXiv 2305.08846): plant ``m`` canaries, each included in the training data
independently with probability 1/2; train once; score every canary; guess "in" for the
``k`` highest scores and "out" for the ``k`` lowest (abstain on the rest); count the
correct guesses. A mechanism that is (epsilon, delta)-DP towards each canary cannot make
many more correct guesses than randomized response at epsilon would, so a count that
would be improbable at epsilon proves, at the stated confidence, that the mechanism is
*not* (epsilon, delta)-DP: an empirical **lower bound** on its epsilon.

The canaries are white-box gradient canaries (the paper's Dirac canaries), planted
without touching the engines: ``CanaryModel`` wraps the site's model with one extra
weight per canary, and canary ``j`` is a training row whose per-sample gradient is
exactly ``-G e_j`` (``G`` = 1000 x the clipping norm) on its own weight and zero on every
other parameter, at every step, whatever the weights are. Ordinary (synthetic) rows have
zero gradient on the canary weights. So the final value of canary ``j``'s weight is the
sum, over the steps that sampled it, of its clipped gradient (C lr / batch each), plus
the Gaussian noise the engine added to that coordinate at every step: the score. Each
``engine`` of ``federation.training.dp_sgd.train_round`` samples, clips, noises and updates the
canary rows exactly as it does a patient's row.

Only public parameters and a data dictionary go in: the rows the canaries train beside
are drawn from the dictionary's public ranges, never read from a site. Auditing on a
site's own records would be a use of them that no ledger charges.
"""

from __future__ import annotations

import html
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import optimize, special, stats
from torch import nn
from tqdm.auto import tqdm

from federation.training import dp_sgd
from federation.training.features import FeatureEncoder
from federation.training.models import build_model
from privacy_budgets.accounting import epsilon as ledger_epsilon
from privacy_budgets.mechanisms import dpsgd_event

__all__ = [
    "AuditResult",
    "CanaryModel",
    "GUESS_FRACTIONS",
    "MAX_CANARIES",
    "audit_dp_sgd",
    "audit_p_value",
    "epsilon_lower_bound",
    "guess_counts",
    "synthetic_rows",
]

GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 0.8)
"""Default guess counts, as fractions of the canaries (half "in", half "out"). The bound
is taken at each and the best reported, with a Bonferroni correction for the choice.
Not 1.0: guessing every canary, half each way, is wrong on about ``0.4 sqrt(m)`` of them
whenever the coin flips did not include exactly half, however leaky the mechanism."""

MAX_CANARIES = 10_000
"""Each step's per-sample gradients hold (canaries + 1) x canaries numbers: time and memory
grow with the square of the canaries (5,000: about 70 s and 0.9 GB for 250 steps on 2 cores)."""

CANARY_GRADIENT_FACTOR = 1000.0
"""A canary's gradient norm, in clipping norms: far above the clip, so a correct engine
clips it to exactly C, and an engine that does not clip lets it through whole."""


# --- the bound ----------------------------------------------------------------------------


def audit_p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """The probability of ``correct`` or more right guesses out of ``guesses`` if the
    mechanism were (``epsilon``, ``delta``)-DP towards each of ``canaries`` canaries.

    Steinke, Nasr & Jagielski 2023, the (epsilon, delta) theorem, with
    ``p = e^eps / (1 + e^eps)`` (randomized response's accuracy) and ``W ~ Binomial(r, p)``:

        P[W >= v]  +  2 m delta  max_{i = 1..v}  P[v - i <= W < v] / i

    With ``delta = 0`` only the binomial tail remains (the pure-DP case).

    >>> round(audit_p_value(canaries=100, guesses=10, correct=10, epsilon=0.0, delta=0.0), 6)
    0.000977
    """
    m, r, v = _counts(canaries=canaries, guesses=guesses, correct=correct)
    _check_number("epsilon", epsilon, rule=">= 0")
    _check_number("delta", delta, rule="in [0, 1]")
    p = float(special.expit(epsilon))
    tail = float(stats.binom.sf(v - 1, r, p))
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    below = stats.binom.cdf(v - 1, r, p)
    i = np.arange(1, v + 1)
    windows = below - stats.binom.cdf(v - 1 - i, r, p)  # P[v - i <= W <= v - 1]
    return min(tail + 2 * m * delta * float(np.max(windows / i)), 1.0)


def epsilon_lower_bound(*, canaries: int, guesses: int, correct: int, delta: float, confidence: float = 0.95) -> float:
    """The largest epsilon that ``correct`` right guesses out of ``guesses`` reject at
    ``confidence``: the mechanism is not (epsilon, delta)-DP for any smaller epsilon.

    0.0 when even epsilon 0 is not rejected. The p-value rises with epsilon (a property
    the tests check), so the bound is where it crosses ``1 - confidence``.
    With ``r`` guesses all correct and ``delta = 0`` the bound is ``logit(alpha^(1/r))``,
    about ``ln(r / ln(1/alpha))`` = ln(r / 3) at 95%: no audit of ``r`` guesses shows more.

    >>> round(epsilon_lower_bound(canaries=1000, guesses=100, correct=100, delta=0.0), 2)
    3.49
    >>> epsilon_lower_bound(canaries=1000, guesses=100, correct=50, delta=1e-5)
    0.0
    """
    _counts(canaries=canaries, guesses=guesses, correct=correct)
    _check_number("confidence", confidence, rule="in (0, 1)", fix="e.g. 0.95")
    alpha = 1.0 - confidence

    def excess(eps: float) -> float:
        return audit_p_value(canaries=canaries, guesses=guesses, correct=correct, epsilon=eps, delta=delta) - alpha

    if excess(0.0) > 0:
        return 0.0
    high = 1.0
    while excess(high) <= 0:
        if high > 1e3:  # every guess right and alpha reachable at any epsilon: cannot happen for alpha > 0
            return math.inf
        high *= 2.0
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-9))


def guess_counts(*, canaries: int, fractions: Sequence[float] = GUESS_FRACTIONS) -> tuple[int, ...]:
    """Even guess counts (half "in", half "out") for ``fractions`` of ``canaries``, deduplicated.

    >>> guess_counts(canaries=200)
    (4, 10, 20, 40, 100, 160)
    """
    counts = sorted({min(canaries - canaries % 2, max(2, 2 * round(f * canaries / 2))) for f in fractions})
    return tuple(c for c in counts if c >= 2)


# --- canaries -----------------------------------------------------------------------------


class CanaryModel(nn.Module):
    """The site's model plus one weight per canary; the canary weights are the audit's probe.

    Input: the encoded features, then one column holding 0 for an ordinary row or
    ``j + 1`` for canary ``j``. An ordinary row goes through ``base`` as always. A canary
    row's logit is ``scale * (w_j - w_j.detach())``: always 0 in value (its loss is log 2
    whatever the weights), with gradient ``scale * dloss/dlogit`` on ``w_j`` alone: a
    Dirac canary whose gradient never shrinks as training moves ``w_j``. The canary
    weights sit in an ``nn.Embedding``, which Opacus's hooks and ``torch.func`` both
    differentiate per sample.

    >>> model = CanaryModel(base=nn.Sequential(nn.Linear(2, 1)), n_features=2, canaries=3, scale=10.0)
    >>> model(torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 2.0]])).shape
    torch.Size([2, 1])
    """

    def __init__(self, *, base: nn.Module, n_features: int, canaries: int, scale: float) -> None:
        super().__init__()
        self.base = base
        self.n_features = int(n_features)
        self.scale = float(scale)
        self.canary = nn.Embedding(int(canaries) + 1, 1)  # row 0: "not a canary", never trained
        nn.init.zeros_(self.canary.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mark = x[:, : self.n_features], x[:, self.n_features]
        is_canary = (mark > 0).to(x.dtype).unsqueeze(-1)
        w = self.canary(mark.long())
        return self.base(features) * (1.0 - is_canary) + is_canary * self.scale * (w - w.detach())

    def canary_weights(self, state_dict: dict[str, torch.Tensor]) -> np.ndarray:
        """Canary ``j``'s weight at ``state_dict``, for j = 0..m-1."""
        return state_dict["canary.weight"][1:, 0].detach().double().numpy()


def synthetic_rows(*, dictionary: Any, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` encoded rows drawn from the dictionary's public facts alone, and labels.

    Each feature column is drawn independently and uniformly over its declared range
    (numeric), whole numbers in range (integer), {0, 1} (binary) or its categories, then
    encoded with the study's ``FeatureEncoder``; labels are fair coin flips (no outcome
    model is public). Nothing is read from any site.

    >>> from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
    >>> x, y = synthetic_rows(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY, rows=5, rng=np.random.default_rng(0))
    >>> x.shape, y.shape, bool(((x >= 0) & (x <= 1)).all())
    ((5, 11), (5,), True)
    """
    if not all(hasattr(dictionary, a) for a in ("feature_columns", "column", "target")):
        raise TypeError(
            "dictionary must be a data dictionary (datasets_synthetic.DataDictionary, e.g. the "
            f"study's data_dictionary.json loaded with DataDictionary.load); got {type(dictionary).__name__}."
        )
    columns: dict[str, Any] = {}
    for name in dictionary.feature_columns:
        spec = dictionary.column(name)
        if spec.kind == "numeric":
            columns[name] = rng.uniform(spec.minimum, spec.maximum, rows)
        elif spec.kind == "integer":
            columns[name] = rng.integers(int(math.ceil(spec.minimum)), int(math.floor(spec.maximum)) + 1, rows)
        elif spec.kind == "binary":
            columns[name] = rng.integers(0, 2, rows)
        else:
            columns[name] = rng.choice(np.array(list(spec.categories), dtype=object), rows)
    encoder = FeatureEncoder.from_dictionary(dictionary=dictionary)
    x = encoder.encode(pd.DataFrame(columns))
    y = rng.integers(0, 2, rows).astype(np.float32)
    return x, y


# --- the result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    """One audit: the claim, the empirical lower bound, and what this audit could show.

    ``empirical_epsilon`` is the best bound over ``guesses_tried`` (each at confidence
    ``1 - (1 - confidence) / len(guesses_tried)``, so the best is a valid bound at
    ``confidence``); ``guesses`` and ``correct`` are where it was found. ``ceiling`` is
    the bound if every guess were right at the largest guess count: no leak, however
    large, audits above it at this number of canaries.
    """

    engine: str
    noise_multiplier: float
    max_grad_norm: float
    sampling_rate: float
    steps: int
    delta: float
    confidence: float
    claimed_epsilon: float
    empirical_epsilon: float
    canaries: int
    canaries_included: int
    guesses: int
    correct: int
    ceiling: float
    seconds: float
    synthetic_rows: int
    dictionary: str
    guesses_tried: tuple[tuple[int, int, float], ...] = field(repr=False)  # (guesses, correct, bound)
    scores: tuple[float, ...] = field(repr=False)
    included: tuple[bool, ...] = field(repr=False)

    @property
    def exceeds_claim(self) -> bool:
        """True when the audit proves (at ``confidence``) that the claim is wrong."""
        return self.empirical_epsilon > self.claimed_epsilon

    def statement(self) -> str:
        """The audit in words: the claim, the bound, and what the bound can and cannot show."""
        claim = (
            f"Claimed: epsilon {self.claimed_epsilon:.3g} at delta {self.delta:g} (the ledger's PLD "
            f"accountant: noise multiplier {self.noise_multiplier:g}, sampling rate {self.sampling_rate:.4g}, "
            f"{self.steps} steps)."
        )
        audit = (
            f"Audited ({self.engine} engine, {self.canaries} canaries of which {self.canaries_included} "
            f"included, beside {self.synthetic_rows} synthetic rows from the public dictionary "
            f"'{self.dictionary}'; no site data): epsilon >= {self.empirical_epsilon:.3g} with "
            f"{self.confidence:.0%} confidence ({self.correct} of {self.guesses} guesses correct)."
        )
        if self.exceeds_claim:
            verdict = (
                "The lower bound EXCEEDS the claim: this implementation leaks more than its ledger "
                "charges, unless a 1-in-20 chance came up. Do not train on patient data with it."
            )
        else:
            verdict = (
                "Consistent with the claim: the audit found no leak larger than the ledger charges. "
                "That is not proof the claim holds: a one-run audit is loose, and a correct mechanism "
                "at this claim audits well below it."
            )
        most = max(r for r, _, _ in self.guesses_tried)
        reach = (
            f"At this size the audit cannot show more than epsilon {self.ceiling:.3g} (all {most} guesses "
            f"right; r guesses all right give about ln(r / 3) at most): a bug leaking more reads as at "
            f"most {self.ceiling:.3g}."
        )
        return " ".join([claim, audit, verdict, reach])

    def to_frame(self) -> pd.DataFrame:
        """One row: the figures of this audit (``pd.concat`` several for a table)."""
        return pd.DataFrame(
            [
                {
                    "engine": self.engine,
                    "claimed_epsilon": self.claimed_epsilon,
                    "empirical_epsilon": self.empirical_epsilon,
                    "exceeds_claim": self.exceeds_claim,
                    "confidence": self.confidence,
                    "delta": self.delta,
                    "canaries": self.canaries,
                    "included": self.canaries_included,
                    "guesses": self.guesses,
                    "correct": self.correct,
                    "ceiling": self.ceiling,
                    "noise_multiplier": self.noise_multiplier,
                    "max_grad_norm": self.max_grad_norm,
                    "sampling_rate": self.sampling_rate,
                    "steps": self.steps,
                    "seconds": self.seconds,
                }
            ]
        )

    def guesses_frame(self) -> pd.DataFrame:
        """One row per guess count tried: guesses, correct, and the bound it alone gives."""
        return pd.DataFrame(self.guesses_tried, columns=["guesses", "correct", "bound"])

    def plot(self, ax: Any = None):
        """Histogram of the canaries' scores, included against excluded."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        scores, included = np.asarray(self.scores), np.asarray(self.included, dtype=bool)
        bins = np.histogram_bin_edges(scores, bins=40)
        ax.hist(scores[~included], bins=bins, alpha=0.6, label="excluded canaries")
        ax.hist(scores[included], bins=bins, alpha=0.6, label="included canaries")
        ax.set(
            xlabel="score (canary weight after training)",
            ylabel="canaries",
            title=f"{self.engine}: claimed {self.claimed_epsilon:.2f}, audited >= {self.empirical_epsilon:.2f}",
        )
        ax.legend(fontsize=8)
        return ax

    def __str__(self) -> str:
        return self.statement()

    def _repr_html_(self) -> str:
        colour, word = (
            ("#cf222e", "exceeds the claim") if self.exceeds_claim else ("#1a7f37", "consistent with the claim")
        )
        table = self.to_frame().T.rename(columns={0: "value"}).to_html(float_format=lambda v: f"{v:.4g}")
        return (
            f'<div style="border-left:6px solid {colour};padding:4px 10px">'
            f"<b style='color:{colour}'>Privacy audit: {word}</b>"
            f"<p>{html.escape(self.statement())}</p>{table}</div>"
        )


# --- the audit ----------------------------------------------------------------------------


def audit_dp_sgd(
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    sampling_rate: float,
    steps: int,
    dictionary: Any,
    engine: str = "vectorized",
    delta: float = 1e-5,
    canaries: int = 1000,
    confidence: float = 0.95,
    guesses: Sequence[int] | None = None,
    model: str = "mlp",
    hidden: int = 32,
    learning_rate: float = 2.0,
    momentum: float = 0.5,
    seed: int | None = None,
    progress: bool = True,
) -> AuditResult:
    """Audit DP-SGD at a site's settings on synthetic data: the claimed epsilon beside
    an empirical lower bound from one training run with ``canaries`` gradient canaries.

    ``noise_multiplier``, ``max_grad_norm``, ``sampling_rate`` and ``steps`` are the
    site's mechanism (the ledger charges exactly those): ``sampling_rate`` must be
    ``1 / k`` for a whole ``k`` (``train_round``'s Poisson rate is always
    ``1 / ceil(rows / batch)``) and ``steps`` a multiple of ``k`` (whole epochs). The
    audit trains ``steps / k`` epochs of ``federation.training.dp_sgd.train_round`` on
    ``engine``, with a batch of ``canaries + 1`` and ``k (canaries + 1) - canaries``
    synthetic rows, so the sampling rate is exactly ``1 / k`` however many canaries the
    coin flips include. ``dictionary`` only supplies public ranges for those rows; no
    site data is read, and nothing is charged to any ledger (auditing on a site's
    records would be an uncharged use of them).

    The bound is Steinke, Nasr & Jagielski 2023's (see ``audit_p_value``), at
    ``confidence``, Bonferroni-corrected over the guess counts tried (``guesses``,
    default ``GUESS_FRACTIONS`` of the canaries). The engines draw their sampling and
    noise as in production (the vectorized engine from the OS's entropy), so ``seed``
    fixes the canaries, the rows and the initial model, not the noise.

    >>> from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
    >>> result = audit_dp_sgd(noise_multiplier=1.0, max_grad_norm=1.0, sampling_rate=0.1,
    ...                       steps=50, canaries=200, dictionary=SYNTHETIC_HOSPITALS_DICTIONARY,
    ...                       engine="vectorized", seed=1, progress=False)
    >>> result.empirical_epsilon <= result.claimed_epsilon
    True
    >>> print(result.statement())  # doctest: +ELLIPSIS
    Claimed: epsilon ... Audited (vectorized engine, 200 canaries ...
    """
    started = time.perf_counter()
    _check_number(
        "noise_multiplier", noise_multiplier, rule="> 0", fix="the noise multiplier the site trains with, e.g. 1.0"
    )
    _check_number("max_grad_norm", max_grad_norm, rule="> 0", fix="the clipping norm C, e.g. 1.0")
    _check_number("delta", delta, rule="in (0, 1)", fix="the site's delta, e.g. 1e-5")
    _check_number("confidence", confidence, rule="in (0, 1)", fix="e.g. 0.95")
    if engine not in dp_sgd.ENGINES:
        raise ValueError(f"engine must be one of {', '.join(dp_sgd.ENGINES)}; got {engine!r}.")
    if isinstance(canaries, bool) or not isinstance(canaries, int) or not 2 <= canaries <= MAX_CANARIES:
        raise ValueError(
            f"canaries must be a whole number from 2 to {MAX_CANARIES:,}; got {canaries!r}. Use at least 200 "
            "(1000 is the default): with r guesses the bound cannot exceed about ln(r / 3), and time and "
            "memory grow with the square of the canaries."
        )
    k = _epochs_denominator(sampling_rate)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < k or steps % k:
        whole = steps if isinstance(steps, int) and not isinstance(steps, bool) else 0
        lower, upper = max(k, whole // k * k), max(k, whole // k * k + k)
        raise ValueError(
            f"steps must be a positive multiple of {k} (whole epochs at sampling rate 1/{k}, as a site "
            f"runs them); got {steps!r}. Use {lower}" + (f" or {upper}." if upper != lower else ".")
        )
    tried = tuple(guesses) if guesses is not None else guess_counts(canaries=canaries)
    if not tried or any(isinstance(g, bool) or not isinstance(g, int) or g < 2 or g % 2 or g > canaries for g in tried):
        raise ValueError(
            f"guesses must be even whole numbers between 2 and canaries={canaries} (half guessed "
            f"'in', half 'out'); got {guesses!r}. Leave it out for the default {guess_counts(canaries=canaries)}."
        )
    name = getattr(dictionary, "name", type(dictionary).__name__)

    rng = np.random.default_rng(seed)
    included = rng.random(canaries) < 0.5
    batch_size = canaries + 1
    n_rows = k * batch_size - canaries
    x_rows, y_rows = synthetic_rows(dictionary=dictionary, rows=n_rows, rng=rng)
    n_features = x_rows.shape[1]
    ids = np.flatnonzero(included)
    x_canaries = np.zeros((len(ids), n_features + 1), dtype=np.float32)
    x_canaries[:, n_features] = ids + 1
    x = np.vstack([np.hstack([x_rows, np.zeros((n_rows, 1), np.float32)]), x_canaries])
    y = np.concatenate([y_rows, np.ones(len(ids), np.float32)])  # label 1: the gradient pushes w_j up

    with torch.random.fork_rng():
        torch.manual_seed(int(rng.integers(2**31)))
        base = build_model(name=model, n_features=n_features, hidden=hidden)
    # |dloss/dlogit| = 1/2 at logit 0, so scale 2 G gives a canary gradient of norm G.
    audited = CanaryModel(
        base=base, n_features=n_features, canaries=canaries, scale=2.0 * CANARY_GRADIENT_FACTOR * max_grad_norm
    )
    start = audited.canary_weights(audited.state_dict())
    epochs = steps // k
    ran = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # Opacus, per wrapped module
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        for _ in tqdm(range(epochs), desc=f"audit ({engine})", unit="epoch", disable=not progress):
            outcome = dp_sgd.train_round(
                model=audited,
                x=x,
                y=y,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                batch_size=batch_size,
                local_epochs=1,
                learning_rate=learning_rate,
                momentum=momentum,
                engine=engine,
            )
            if outcome.steps != k or not math.isclose(outcome.sampling_rate, 1.0 / k, rel_tol=1e-12):
                raise RuntimeError(
                    f"the audit planned {k} steps at sampling rate 1/{k}, but the {engine} engine ran "
                    f"{outcome.steps} at {outcome.sampling_rate!r}: the claim would not describe the run. "
                    "This is a bug in the audit; please report it."
                )
            audited.load_state_dict(outcome.state_dict)
            ran += outcome.steps
    scores = audited.canary_weights(audited.state_dict()) - start

    # Rank with ties broken at random (a mechanism without noise leaves excluded canaries tied at 0).
    order = np.lexsort((rng.random(canaries), scores))
    per_test = 1.0 - (1.0 - confidence) / len(tried)
    rows = []
    for r in tried:
        half = r // 2
        correct = int((~included[order[:half]]).sum() + included[order[-half:]].sum())
        bound = epsilon_lower_bound(canaries=canaries, guesses=r, correct=correct, delta=delta, confidence=per_test)
        rows.append((r, correct, bound))
    best = max(rows, key=lambda row: (row[2], -row[0]))
    ceiling = max(
        epsilon_lower_bound(canaries=canaries, guesses=r, correct=r, delta=delta, confidence=per_test) for r in tried
    )
    claimed = ledger_epsilon(
        events=[dpsgd_event(noise_multiplier=noise_multiplier, sampling_rate=1.0 / k, steps=ran)], delta=delta
    )
    return AuditResult(
        engine=engine,
        noise_multiplier=float(noise_multiplier),
        max_grad_norm=float(max_grad_norm),
        sampling_rate=1.0 / k,
        steps=ran,
        delta=float(delta),
        confidence=float(confidence),
        claimed_epsilon=float(claimed),
        empirical_epsilon=float(best[2]),
        canaries=canaries,
        canaries_included=int(included.sum()),
        guesses=int(best[0]),
        correct=int(best[1]),
        ceiling=float(ceiling),
        seconds=time.perf_counter() - started,
        synthetic_rows=n_rows,
        dictionary=str(name),
        guesses_tried=tuple(rows),
        scores=tuple(float(s) for s in scores),
        included=tuple(bool(b) for b in included),
    )


# --- checks -------------------------------------------------------------------------------


def _check_number(name: str, value: Any, *, rule: str, fix: str = "") -> None:
    """Raise unless ``value`` is a finite number obeying ``rule``: "> 0", ">= 0", "in (0, 1)",
    "in [0, 1]" or "in (0, 1]"."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = {
            "> 0": lambda v: v > 0,
            ">= 0": lambda v: v >= 0,
            "in (0, 1)": lambda v: 0 < v < 1,
            "in [0, 1]": lambda v: 0 <= v <= 1,
            "in (0, 1]": lambda v: 0 < v <= 1,
        }[rule](value)
    if not ok:
        raise ValueError(f"{name} must be a finite number {rule}; got {value!r}." + (f" Use {fix}." if fix else ""))


def _counts(*, canaries: int, guesses: int, correct: int) -> tuple[int, int, int]:
    values = (canaries, guesses, correct)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values) or not (
        0 <= correct <= guesses <= canaries
    ):
        raise ValueError(
            "need whole numbers with 0 <= correct <= guesses <= canaries; got "
            f"canaries={canaries!r}, guesses={guesses!r}, correct={correct!r}."
        )
    return int(canaries), int(guesses), int(correct)


def _epochs_denominator(sampling_rate: float) -> int:
    """``k`` with ``sampling_rate == 1 / k``, or a ValueError that names the nearest rates."""
    _check_number("sampling_rate", sampling_rate, rule="in (0, 1]", fix="1 / k for a whole k, e.g. 0.02")
    k = max(1, round(1.0 / sampling_rate))
    if not math.isclose(sampling_rate, 1.0 / k, rel_tol=1e-9):
        lower, upper = math.floor(1.0 / sampling_rate), math.ceil(1.0 / sampling_rate)
        raise ValueError(
            f"sampling_rate must be 1 / k for a whole k, as train_round's Poisson rate "
            f"1 / ceil(rows / batch) always is; got {sampling_rate!r}. Use 1/{upper} = {1 / upper:.6g} "
            f"or 1/{lower} = {1 / lower:.6g} (the site's planned_sampling gives its own)."
        )
    return k
