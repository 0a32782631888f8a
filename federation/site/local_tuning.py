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
candidates, the mean of K: ``[training] max_tuning_candidates`` and
``max_tuning_runs``); nothing is reserved before. ``handle_tune`` is the site's task
``tune`` (served through ``tasks.serve`` and its gate): every value of the message is
the coordinator's choice and is read here as such.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from flwr.app import Message, RecordDict

from federation.analytics.count_release import count_event
from federation.analytics.secure_noise import secure_noisy_counts
from federation.errors import InvalidRequest
from federation.protocol.local_tuning import (
    CANDIDATES_KEY,
    ENCODER_KEY,
    MAX_CANDIDATES_TEXT,
    MEAN_KEY,
    REPLY_KEY,
    SHAPE_KEY,
)
from federation.protocol.replies import site_record
from federation.protocol.spec import SiteOwnedParameter, SpecError, TrainingSpec
from federation.site.charged_path import Charge, Ran, already_charged, charged_release
from federation.site.config import NodePolicy
from federation.site.data_access import own_dictionary, site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from federation.site.training_limits import check_columns, check_sizes, check_split
from federation.training.dp_sgd import planned_sampling, train_round
from federation.training.features import FeatureEncoder
from federation.training.models import build_model
from privacy_budgets.errors import InvalidBudget
from privacy_budgets.mechanisms import composed_event, dpsgd_event
from privacy_budgets.selection import SHAPES, SelectionPlan, calibrate_selection, draw_repetitions

DELTA_SHARE = 0.1  # the selection's delta: a tenth of the dataset's, taken out of it
SCORE_NOISE_RATIO = 1.0  # the score's sigma (in counts) per unit of the run's noise multiplier
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
    n, most = len(request.candidates), policy.max_tuning_candidates
    if not 1 <= n <= most:
        text = (
            f"local tuning takes 1 to {most} candidates at this site ([training] max_tuning_candidates in its "
            f"node.toml); got {n}. Fix: send at most {most} candidates."
        )
        raise InvalidRequest(text, public=text)
    if request.shape not in SHAPES:
        text = f"the number of runs is drawn 'geometric' or 'poisson'; got {request.shape!r}. Fix: use one of them."
        raise InvalidRequest(text, public=text)
    mean, runs = request.mean, policy.max_tuning_runs
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not 1.0 <= float(mean) <= runs:
        text = (
            f"the mean number of runs must lie in [1, {runs:g}] at this site ([training] max_tuning_runs in its "
            f"node.toml); got {mean!r}. Fix: a mean from 1 to {runs:g} (about the number of candidates)."
        )
        raise InvalidRequest(text, public=text)
    specs = []
    for i, candidate in enumerate(request.candidates, start=1):
        if not isinstance(candidate, dict):
            text = f"candidate {i} is not a set of hyperparameters: {str(candidate)[:80]!r}. Fix: send a dict."
            raise InvalidRequest(text, public=text)
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
    check_split(arrays=arrays, policy=policy)  # the score describes the held-out rows
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


def handle_tune(msg: Message, site: SiteConfig, policy: NodePolicy) -> Message:
    """The site's task ``tune``: read the coordinator's request, hold it to this site's
    policy, run the private selection and answer with what it releases."""
    request, encoder = read_tuning_request(msg=msg, policy=policy, site=site)
    out = tune_locally(site=site, policy=policy, encoder=encoder, request=request)
    released = {
        "best_index": out.best_index,
        "best": out.best,
        "score": out.score,
        "epsilon": out.epsilon,
        "delta": out.delta,
        "noise_multipliers": list(out.noise_multipliers),
        "sampling_rates": list(out.sampling_rates),
        "steps": list(out.steps),
        "score_sigmas": list(out.score_sigmas),
    }
    record = site_record(
        site_id=site.site_id, receipts=out.receipts, dataset=site.dataset, **{REPLY_KEY: json.dumps(released)}
    )
    return Message(content=RecordDict({"site": record}), reply_to=msg)


def read_tuning_request(
    *, msg: Message, policy: NodePolicy, site: SiteConfig
) -> tuple[LocalTuningRequest, FeatureEncoder]:
    """The request in ``msg`` held to the site's policy (InvalidRequest: rule, value, fix);
    reads no data."""
    if "config" not in msg.content:
        raise _invalid("a local tuning request carries a 'config' record; this one has none.")
    config = msg.content["config"]
    try:
        spec = TrainingSpec.from_config(config)
    except (SpecError, SiteOwnedParameter, TypeError, ValueError) as err:
        raise _invalid(f"malformed local tuning request: {err}") from None
    try:
        encoder = FeatureEncoder.from_json(str(config[ENCODER_KEY]))
    except KeyError:
        raise _invalid("a local tuning request carries the study's feature encoder; this one does not.") from None
    except (ValueError, TypeError, AttributeError) as err:
        raise _invalid(f"the feature encoder cannot be read ({type(err).__name__}).") from None
    check_sizes(spec=spec, policy=policy)
    check_columns(encoder=encoder, policy=policy, own=own_dictionary(site))
    text = config.get(CANDIDATES_KEY)
    if not isinstance(text, str) or len(text) > MAX_CANDIDATES_TEXT:
        shown = type(text).__name__ if not isinstance(text, str) else f"{len(text)} characters"
        raise _invalid(
            f"{CANDIDATES_KEY} must be a JSON list of at most {MAX_CANDIDATES_TEXT} characters; got {shown}. "
            "Fix: send fewer candidates."
        )
    try:
        candidates = json.loads(text)
    except ValueError:
        raise _invalid(f"{CANDIDATES_KEY} is not JSON. Fix: send a JSON list of dicts of hyperparameters.") from None
    if not isinstance(candidates, list):
        raise _invalid(f"{CANDIDATES_KEY} must be a JSON list; got {type(candidates).__name__}. Fix: send a list.")
    request = LocalTuningRequest(
        base=spec,
        candidates=tuple(candidates),
        mean=config.get(MEAN_KEY),  # held to [1, max_tuning_runs] by candidate_specs
        shape=str(config.get(SHAPE_KEY)),
    )
    candidate_specs(request=request, policy=policy)  # every bound before any data is read
    return request, encoder


def _invalid(text: str) -> InvalidRequest:
    return InvalidRequest(text, public=text)


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
