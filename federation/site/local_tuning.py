"""A site tunes on its own rows and releases only its best configuration.

Where the candidates' outputs never leave the site, their cost need not be every
candidate composed: Papernot & Steinke (2022) bound "run a private mechanism Q a random
number K of times and release only the best run" as a small multiple of one run
(``privacy_budgets.selection``). Here Q is: pick a candidate uniformly at random, train
it with DP-SGD on the site's training rows (``train_round``, the site's own engine), and
score it on the site's held-out rows with one noisy count, correct minus wrong
predictions (one patient moves it by 1; discrete Gaussian from a secure source, sigma
``SCORE_NOISE_RATIO`` times the run's noise multiplier). K is drawn from the geometric
or Poisson distribution whose mean the accountant assumes (``draw_repetitions``, OS
entropy) and never leaves the site: releasing it would condition the bound on it.

The whole selection is one release through the site's one charged path
(``charged_path.charged_release``): its per-request cap, a reservation of the proven
(epsilon, delta) pair as ``PrivacyParametersDpEvent`` (its PLD is the pessimistic one of
every (epsilon, delta)-DP mechanism), the K runs, the commit. Its delta is
``DELTA_SHARE`` of the dataset's delta, taken out of it: in the ledger's PLD the pair's
delta is mass at infinity, so every epsilon the ledger states at the dataset's delta
already leaves it to this release and gives the others only the rest. What is released:
the best run's candidate (its 1-based index and configuration) and its noisy score;
nothing when K = 0 (possible with ``shape="poisson"``).

The request is held to the site's limits first (each candidate's sizes, how many
candidates, the mean of K); nothing is reserved before.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from federation.analytics.count_release import count_event
from federation.analytics.secure_noise import secure_noisy_counts
from federation.errors import InvalidRequest
from federation.protocol.spec import SpecError, TrainingSpec
from federation.site.charged_path import Charge, Ran, already_charged, charged_release
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from federation.site.training_limits import check_sizes
from federation.training.dp_sgd import planned_sampling, train_round
from federation.training.models import build_model
from privacy_budgets.errors import InvalidBudget
from privacy_budgets.mechanisms import composed_event, dpsgd_event
from privacy_budgets.selection import SHAPES, SelectionPlan, calibrate_selection, draw_repetitions

DELTA_SHARE = 0.1  # the selection's delta: a tenth of the dataset's, taken out of it
SCORE_NOISE_RATIO = 1.0  # the score's sigma (in counts) per unit of the run's noise multiplier
MAX_CANDIDATES = 16
MAX_MEAN = 10.0  # the mean of K: each run trains a model here, so the site bounds the work
NOISE_BRACKET = (0.3, 60.0)
TUNABLE = ("learning_rate", "batch_size", "max_grad_norm", "local_epochs", "momentum")


@dataclass(frozen=True)
class LocalTuningRequest:
    """What a study asks a site to tune: candidates (each a dict of ``TUNABLE`` fields
    over ``base``), the selection's total ``target_epsilon`` for this project, and the
    distribution of the number of runs."""

    base: TrainingSpec  # project, model, engine and every field a candidate does not set
    candidates: tuple[dict[str, Any], ...]
    mean: float = 4.0
    shape: str = "geometric"


@dataclass(frozen=True)
class LocalTuningOutcome:
    """What the site releases (``best_index``, ``best``, ``score``) and what it charged."""

    site: str
    best_index: int | None  # 1-based; None: K was 0, nothing released
    best: dict[str, Any] | None
    score: float | None  # noisy (correct - wrong) predictions of the best run on the held-out rows
    epsilon: float  # the charged pair
    delta: float
    noise_multipliers: tuple[float, ...]  # per candidate: the first is the reference run
    sampling_rates: tuple[float, ...]
    steps: tuple[int, ...]
    score_sigmas: tuple[float, ...]
    receipts: list[dict[str, Any]] = field(default_factory=list)


def candidate_specs(*, request: LocalTuningRequest, policy: NodePolicy) -> list[TrainingSpec]:
    """Each candidate as a spec over the base, held to the site's limits (SpecError or
    InvalidRequest with the rule, the value and the fix)."""
    n = len(request.candidates)
    if not 1 <= n <= MAX_CANDIDATES:
        raise InvalidRequest(
            f"local tuning takes 1 to {MAX_CANDIDATES} candidates; got {n}. Fix: send fewer candidates.",
            public=f"local tuning takes 1 to {MAX_CANDIDATES} candidates; got {n}.",
        )
    if request.shape not in SHAPES:
        text = f"the number of runs is drawn 'geometric' or 'poisson'; got {request.shape!r}."
        raise InvalidRequest(text, public=text)
    if not (isinstance(request.mean, (int, float)) and 1.0 <= float(request.mean) <= MAX_MEAN):
        text = f"the mean number of runs must lie in [1, {MAX_MEAN:g}] at this site; got {request.mean!r}."
        raise InvalidRequest(text, public=text + " Fix: a smaller mean (about the number of candidates).")
    specs = []
    for i, candidate in enumerate(request.candidates, start=1):
        unknown = sorted(set(candidate) - set(TUNABLE))
        if unknown:
            text = f"candidate {i} sets {', '.join(unknown)}; local tuning varies only {', '.join(TUNABLE)}."
            raise InvalidRequest(text, public=text)
        try:
            spec = replace(request.base, **candidate)
        except (SpecError, TypeError, ValueError) as err:
            raise InvalidRequest(f"candidate {i}: {err}", public=f"candidate {i}: {err}") from None
        check_sizes(spec=spec, policy=policy)
        specs.append(spec)
    return specs


@dataclass(frozen=True)
class SelectionAtSite:
    """A site's calibrated selection, before anything is reserved or run."""

    specs: tuple[TrainingSpec, ...]
    shapes: tuple[tuple[float, int], ...]  # per candidate: sampling rate, steps per round
    plan: SelectionPlan  # noise per candidate in request order; its event is what is charged


def plan_selection(
    *, site: SiteConfig, policy: NodePolicy, encoder: Any, request: LocalTuningRequest
) -> SelectionAtSite:
    """Hold the request to the site's limits and calibrate every candidate's noise;
    nothing is reserved, trained or released."""
    specs = candidate_specs(request=request, policy=policy)
    arrays = site_arrays(site=site, policy=policy, encoder=encoder)
    n_train, n_test = len(arrays.y_train), len(arrays.y_test)
    if n_train == 0 or n_test == 0:
        text = f"site {site.site_id} has no training or no held-out rows to tune on."
        raise InvalidRequest(text, public=text)
    shapes = tuple(
        planned_sampling(n_train=n_train, batch_size=s.batch_size, local_epochs=s.local_epochs) for s in specs
    )
    # One run of candidate i: its DP-SGD steps over all its rounds, then its noisy score.
    runs = [
        (
            lambda noise, q=q, steps=steps * spec.rounds: composed_event(
                [
                    dpsgd_event(noise_multiplier=noise, sampling_rate=q, steps=steps),
                    count_event(noise_multiplier=noise * SCORE_NOISE_RATIO),
                ]
            )
        )
        for spec, (q, steps) in zip(specs, shapes, strict=True)
    ]
    with open_site_ledger(site) as ledger:
        delta = DELTA_SHARE * ledger.dataset_delta(dataset=site.dataset)
    # The reference run (every other run's Renyi curve must lie under its own): the
    # candidate with the most steps first, then the others, until one lets every
    # candidate fit (dp_accounting's fractional orders can leave a candidate that
    # samples far more than the reference no noise at all; it is never charged less).
    order = sorted(range(len(specs)), key=lambda i: -shapes[i][1] * specs[i].rounds)
    failure: InvalidBudget | None = None
    for ref in order:
        ranked = [ref] + [i for i in range(len(specs)) if i != ref]
        try:
            plan = calibrate_selection(
                runs=[runs[i] for i in ranked],
                target_epsilon=request.base.target_epsilon,
                delta=delta,
                mean=request.mean,
                shape=SHAPES[request.shape],
                minimum=NOISE_BRACKET[0],
                maximum=NOISE_BRACKET[1],
            )
        except InvalidBudget as err:
            failure = err
            continue
        noise = dict(zip(ranked, plan.noise_multipliers, strict=True))
        plan = replace(plan, noise_multipliers=tuple(noise[i] for i in range(len(specs))))
        return SelectionAtSite(specs=tuple(specs), shapes=shapes, plan=plan)
    text = f"site {site.site_id} cannot calibrate this selection: {failure}"
    raise InvalidRequest(text, public=text)


def tune_locally(
    *, site: SiteConfig, policy: NodePolicy, encoder: Any, request: LocalTuningRequest
) -> LocalTuningOutcome:
    """Run the private selection at this site (see the module docstring); charged once."""
    torch.set_num_threads(1)
    planned = plan_selection(site=site, policy=policy, encoder=encoder, request=request)
    specs, shapes, plan = planned.specs, planned.shapes, planned.plan
    arrays = site_arrays(site=site, policy=policy, encoder=encoder)
    identity = f"{request.base.run_id}.local-tuning"
    with open_site_ledger(site) as ledger:
        if already_charged(ledger=ledger, dataset=site.dataset, query_id=identity):
            text = f"run {request.base.run_id} already tuned at this site; a selection runs once."
            raise InvalidRequest(text, public=text + " Fix: start a new run.")

        def run() -> Ran:
            rng = np.random.default_rng(secrets.randbits(128))
            best: tuple[int, float] | None = None
            for _ in range(draw_repetitions(mean=plan.mean, shape=plan.shape, rng=rng)):
                index = int(rng.integers(len(specs)))  # uniform: the proof's one mechanism Q
                score = _one_run(
                    spec=specs[index],
                    noise=plan.noise_multipliers[index],
                    planned=shapes[index],
                    arrays=arrays,
                    encoder=encoder,
                )
                if best is None or score > best[1]:
                    best = (index, score)
            return Ran(value=best)

        charged = charged_release(
            ledger=ledger,
            site=site,
            charge=Charge(
                project=request.base.project,
                actor=request.base.coordinator,
                event=plan.event(),
                purpose=(
                    f"local tuning: private selection among {len(specs)} candidates (Papernot & Steinke 2022, "
                    f"{request.shape} number of runs with mean {request.mean:g}); only the best configuration and "
                    f"its noisy score are released; its delta {plan.delta:.3g} is {DELTA_SHARE:g} of the dataset's"
                ),
                run_id=request.base.run_id,
                query_id=identity,
            ),
            run=run,
        )
    best = charged.value
    return LocalTuningOutcome(
        site=site.site_id,
        best_index=None if best is None else best[0] + 1,
        best=None if best is None else dict(request.candidates[best[0]]),
        score=None if best is None else best[1],
        epsilon=plan.epsilon,
        delta=plan.delta,
        noise_multipliers=plan.noise_multipliers,
        sampling_rates=tuple(q for q, _ in shapes),
        steps=tuple(steps * spec.rounds for spec, (_, steps) in zip(specs, shapes, strict=True)),
        score_sigmas=tuple(n * SCORE_NOISE_RATIO for n in plan.noise_multipliers),
        receipts=charged.receipts,
    )


def _one_run(*, spec: TrainingSpec, noise: float, planned: tuple[float, int], arrays: Any, encoder: Any) -> float:
    """Train one candidate with DP-SGD from a fresh model for all its rounds, then its
    noisy score; neither leaves the site. A run that sampled or stepped otherwise than
    planned (and charged) stops the selection: the reservation is then aborted."""
    model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
    for _ in range(spec.rounds):
        outcome = train_round(
            model=model,
            x=arrays.x_train,
            y=arrays.y_train,
            noise_multiplier=noise,
            max_grad_norm=spec.max_grad_norm,
            batch_size=spec.batch_size,
            local_epochs=spec.local_epochs,
            learning_rate=spec.learning_rate,
            momentum=spec.momentum,
            grad_sample_mode=spec.grad_sample_mode,
            engine=spec.engine,
        )
        if (outcome.sampling_rate, outcome.steps) != planned:
            raise RuntimeError(
                f"a run sampled {outcome.sampling_rate} for {outcome.steps} steps, not as planned {planned}"
            )
        model.load_state_dict(outcome.state_dict)
    with torch.no_grad():
        logits = model(torch.as_tensor(arrays.x_test, dtype=torch.float32)).squeeze(-1).numpy()
    predicted = (logits > 0).astype(int)
    correct = int((predicted == arrays.y_test.astype(int)).sum())
    wrong = len(predicted) - correct
    noisy, _ = secure_noisy_counts(
        np.array([correct - wrong], dtype=np.int64), noise_multiplier=noise * SCORE_NOISE_RATIO
    )
    return float(noisy[0]) if math.isfinite(float(noisy[0])) else -math.inf
