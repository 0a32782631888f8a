"""What a release costs, in dp_accounting's vocabulary.

Every spend in a ledger is a ``dp_accounting.DpEvent``: DP-SGD is a Poisson-sampled
Gaussian composed over the steps that ran, a noisy count is a Gaussian or Laplace
event. One language for training and analytics, so one accountant composes both.

Noise added on the integers (the analytics' secure samplers) is recorded as exactly
that mechanism, never as its continuous cousin, whose accounting would under-charge it:

- ``DiscreteLaplaceDpEvent(noise_parameter=a, sensitivity=d)`` (dp_accounting's own):
  noise with probability proportional to exp(-a |x|) on the integers, i.e. scale 1/a;
- ``DiscreteGaussianDpEvent(sigma=s, sensitivity=d)`` (this module's; dp_accounting
  has the PLD of the discrete Gaussian but no DpEvent for it): noise with probability
  proportional to exp(-x^2 / (2 s^2)) on the integers.

A release whose guarantee is proven as one (epsilon, delta) pair rather than built from
noise the ledger can describe (private selection of the best of a random number of
runs, Papernot & Steinke 2022: dp_accounting bounds it in RDP only) is recorded as
``PrivacyParametersDpEvent(epsilon=e, delta=d)`` (this module's), composed as the
pessimistic PLD of any (e, d)-DP mechanism (``privacy_budgets.selection``).

Stability, as dp_accounting's own rules for its events: an event type is never removed
or renamed and a field is never removed; new fields are optional. Adding a type keeps
every ledger written before it readable and verifiable, bit for bit.

Events are stored as JSON. Only the event types below are accepted when reading JSON
back (never ``DpEvent.from_named_tuple``, which imports whatever module a file names):
a ledger file is data, not code.

>>> event = dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=1000)
>>> event_from_json(event_to_json(event)) == event
True
>>> describe_event(gaussian_event(noise_multiplier=2.0))
'Gaussian noise with standard deviation 2 x sensitivity'
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from fractions import Fraction
from typing import Any

import attr  # dp_accounting's own record library (a dependency of it): events are attrs classes
import dp_accounting as dpa
from dp_accounting.dp_event import DiscreteLaplaceDpEvent

from privacy_budgets.errors import InvalidMechanism

# The neighbouring relation every event in this package assumes: two datasets are
# neighbours when one holds one more patient than the other.
NEIGHBOURING_RELATION = "add or remove one patient"

_EVENT_FORMAT = "dp_accounting/0.6"


def dpsgd_event(*, noise_multiplier: float, sampling_rate: float, steps: int) -> dpa.DpEvent:
    """DP-SGD as it runs in Opacus: ``steps`` Poisson-sampled Gaussian steps.

    ``noise_multiplier`` is the noise standard deviation over the clipping norm;
    ``sampling_rate`` is each patient's probability of being in a step's batch.
    Zero steps cost nothing and give a ``NoOpDpEvent``.
    """
    check_noise_scale("noise_multiplier", noise_multiplier)
    _check_probability("sampling_rate", sampling_rate)
    _check_count("steps", steps)
    if steps == 0:
        return dpa.NoOpDpEvent()
    step = dpa.PoissonSampledDpEvent(
        sampling_probability=float(sampling_rate),
        event=dpa.GaussianDpEvent(noise_multiplier=float(noise_multiplier)),
    )
    return dpa.SelfComposedDpEvent(event=step, count=int(steps))


def gaussian_event(*, noise_multiplier: float, count: int = 1) -> dpa.DpEvent:
    """Gaussian noise with standard deviation ``noise_multiplier`` x L2 sensitivity."""
    check_noise_scale("noise_multiplier", noise_multiplier)
    _check_count("count", count)
    event = dpa.GaussianDpEvent(noise_multiplier=float(noise_multiplier))
    return event if count == 1 else dpa.SelfComposedDpEvent(event=event, count=int(count))


def laplace_event(*, noise_multiplier: float, count: int = 1) -> dpa.DpEvent:
    """Laplace noise with scale ``noise_multiplier`` x L1 sensitivity (pure DP)."""
    check_noise_scale("noise_multiplier", noise_multiplier)
    _check_count("count", count)
    event = dpa.LaplaceDpEvent(noise_multiplier=float(noise_multiplier))
    return event if count == 1 else dpa.SelfComposedDpEvent(event=event, count=int(count))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiscreteGaussianDpEvent(dpa.DpEvent):
    """The discrete Gaussian mechanism: integer values plus noise with probability
    proportional to exp(-x^2 / (2 sigma^2)) at every integer x (Canonne, Kamath and
    Steinke 2020). ``sensitivity`` is the largest change, a whole number, that one
    patient makes to the integer values (their L2 norm; for one changed cell, its
    absolute change). ``sigma`` is the distribution's parameter; the noise's standard
    deviation is slightly below it.

    The ledger composes it with dp_accounting's ``from_discrete_gaussian_mechanism``
    (privacy_budgets.composition), which truncates the noise at 11.6 sigma (a mass below
    1e-30 left out, far below any delta a ledger allows).
    """

    sigma: float
    sensitivity: int = 1


def discrete_gaussian_event(*, sigma: float, sensitivity: int = 1, count: int = 1) -> dpa.DpEvent:
    """``count`` releases of integer values with discrete Gaussian noise of parameter
    ``sigma`` and integer ``sensitivity`` (see ``DiscreteGaussianDpEvent``)."""
    check_noise_scale("discrete Gaussian sigma", sigma)
    _check_sensitivity("sensitivity", sensitivity)
    _check_count("count", count)
    event = DiscreteGaussianDpEvent(sigma=float(sigma), sensitivity=int(sensitivity))
    return event if count == 1 else dpa.SelfComposedDpEvent(event=event, count=int(count))


def discrete_laplace_event(*, scale: float, sensitivity: int = 1, count: int = 1) -> dpa.DpEvent:
    """``count`` releases of integer values with discrete Laplace noise of ``scale``
    (probability proportional to exp(-|x| / scale)) and integer ``sensitivity``: pure
    (count x sensitivity / scale)-DP.

    dp_accounting states the distribution by its parameter ``a = 1 / scale``. When
    ``1 / scale`` is not a float, the float just above it is recorded: the ledger then
    charges at most one rounding step more than the noise's exact cost, never less.
    """
    check_noise_scale("discrete Laplace scale", scale)
    _check_sensitivity("sensitivity", sensitivity)
    _check_count("count", count)
    parameter = 1.0 / float(scale)
    if Fraction(parameter) * Fraction(float(scale)) < 1:
        parameter = math.nextafter(parameter, math.inf)
    event = DiscreteLaplaceDpEvent(noise_parameter=parameter, sensitivity=int(sensitivity))
    return event if count == 1 else dpa.SelfComposedDpEvent(event=event, count=int(count))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PrivacyParametersDpEvent(dpa.DpEvent):
    """A release proven (``epsilon``, ``delta``)-differentially private as a whole, whose
    mechanism the ledger cannot compose from its parts (private selection: the best of
    a random number of private runs, bounded in RDP by dp_accounting's
    ``RepeatAndSelectDpEvent`` and converted to one pair; ``privacy_budgets.selection``).

    The ledger composes it as the pessimistic privacy-loss distribution of every
    (epsilon, delta)-DP mechanism (dp_accounting's ``from_privacy_parameters``: loss
    +epsilon or -epsilon, and infinity with probability ``delta``). Its ``delta`` is
    therefore taken out of the dataset's: composed with the rest at the dataset's delta
    D, the other releases keep D - ``delta`` (about); a ``delta`` above D makes the
    history's epsilon infinite, which every cap refuses, and one equal to D leaves
    nothing for any later release (each is then refused).
    """

    epsilon: float
    delta: float


def privacy_parameters_event(*, epsilon: float, delta: float) -> dpa.DpEvent:
    """A release proven (``epsilon``, ``delta``)-DP (see ``PrivacyParametersDpEvent``)."""
    _check_epsilon_of_pair(epsilon)
    _check_delta_of_pair(delta)
    return PrivacyParametersDpEvent(epsilon=float(epsilon), delta=float(delta))


def composed_event(events: list[dpa.DpEvent]) -> dpa.DpEvent:
    """Several releases made together, charged as one entry."""
    return dpa.ComposedDpEvent(events=list(events))


# --- JSON -------------------------------------------------------------------------

_LEAF_FIELDS: dict[type, tuple[str, ...]] = {
    dpa.GaussianDpEvent: ("noise_multiplier",),
    dpa.LaplaceDpEvent: ("noise_multiplier",),
    dpa.NoOpDpEvent: (),
}
_LEAF_FIELDS[DiscreteLaplaceDpEvent] = ("noise_parameter", "sensitivity")
_LEAF_FIELDS[DiscreteGaussianDpEvent] = ("sigma", "sensitivity")
_LEAF_FIELDS[PrivacyParametersDpEvent] = ("epsilon", "delta")
_SUPPORTED = ", ".join(
    sorted([c.__name__ for c in _LEAF_FIELDS] + ["PoissonSampledDpEvent", "SelfComposedDpEvent", "ComposedDpEvent"])
)


def event_to_json(event: dpa.DpEvent) -> dict[str, Any]:
    """A plain, JSON-ready dict for an event (validated on the way out)."""
    validate_event(event)
    return {"format": _EVENT_FORMAT, "event": _to_plain(event)}


def event_from_json(data: dict[str, Any] | str) -> dpa.DpEvent:
    """Rebuild an event written by :func:`event_to_json` (a dict or its JSON text)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise InvalidMechanism(
                f"A mechanism must be JSON written by event_to_json; got unreadable text "
                f"({err}). Re-export the entry from its ledger."
            ) from err
    if not isinstance(data, dict) or data.get("format") != _EVENT_FORMAT:
        raise InvalidMechanism(
            f"A mechanism must carry format '{_EVENT_FORMAT}'; got {str(data)[:120]!r}. "
            "Write it with privacy_budgets.mechanisms.event_to_json."
        )
    event = _from_plain(data.get("event"))
    validate_event(event)
    return event


def canonical_json(event: dpa.DpEvent) -> str:
    """Deterministic JSON text of an event: equal events give equal text."""
    return json.dumps(event_to_json(event), sort_keys=True, separators=(",", ":"))


def _to_plain(event: dpa.DpEvent) -> dict[str, Any]:
    name = type(event).__name__
    if type(event) in _LEAF_FIELDS:
        return {"type": name, **{f: getattr(event, f) for f in _LEAF_FIELDS[type(event)]}}
    if isinstance(event, dpa.PoissonSampledDpEvent):
        return {
            "type": name,
            "sampling_probability": event.sampling_probability,
            "event": _to_plain(event.event),
        }
    if isinstance(event, dpa.SelfComposedDpEvent):
        return {"type": name, "count": event.count, "event": _to_plain(event.event)}
    if isinstance(event, dpa.ComposedDpEvent):
        return {"type": name, "events": [_to_plain(e) for e in event.events]}
    raise InvalidMechanism(f"Mechanism {name} is not supported by the ledger. Supported: {_SUPPORTED}.")


def _from_plain(plain: Any) -> dpa.DpEvent:
    if not isinstance(plain, dict) or "type" not in plain:
        raise InvalidMechanism(f"A mechanism needs a 'type'; got {str(plain)[:120]!r}.")
    name = plain["type"]
    try:
        if name == "GaussianDpEvent":
            return dpa.GaussianDpEvent(noise_multiplier=float(plain["noise_multiplier"]))
        if name == "LaplaceDpEvent":
            return dpa.LaplaceDpEvent(noise_multiplier=float(plain["noise_multiplier"]))
        if name == "NoOpDpEvent":
            return dpa.NoOpDpEvent()
        if name == "DiscreteLaplaceDpEvent":
            return DiscreteLaplaceDpEvent(
                noise_parameter=float(plain["noise_parameter"]), sensitivity=_as_count(plain["sensitivity"])
            )
        if name == "DiscreteGaussianDpEvent":
            return DiscreteGaussianDpEvent(sigma=float(plain["sigma"]), sensitivity=_as_count(plain["sensitivity"]))
        if name == "PrivacyParametersDpEvent":
            return PrivacyParametersDpEvent(epsilon=float(plain["epsilon"]), delta=float(plain["delta"]))
        if name == "PoissonSampledDpEvent":
            return dpa.PoissonSampledDpEvent(
                sampling_probability=float(plain["sampling_probability"]),
                event=_from_plain(plain["event"]),
            )
        if name == "SelfComposedDpEvent":
            return dpa.SelfComposedDpEvent(event=_from_plain(plain["event"]), count=_as_count(plain["count"]))
        if name == "ComposedDpEvent":
            return dpa.ComposedDpEvent(events=[_from_plain(e) for e in plain["events"]])
    except KeyError as missing:
        raise InvalidMechanism(f"Mechanism {name} is missing its field {missing}.") from None
    except (TypeError, ValueError) as err:
        raise InvalidMechanism(f"Mechanism {name} has a field of the wrong type: {err}.") from None
    raise InvalidMechanism(
        f"Unknown mechanism {name!r}: the ledger accepts {_SUPPORTED}. "
        "Describe the release with one of these (see privacy_budgets.mechanisms)."
    )


def _as_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"count must be a whole number, got {value!r}")
    return int(value)


# --- validation -------------------------------------------------------------------


def validate_event(event: dpa.DpEvent) -> None:
    """Raise :class:`InvalidMechanism` unless every parameter of ``event`` is sound."""
    # The continuous kinds keep the rule they were written under (> 0), so a ledger
    # written before the normal-float rule still reads; new events are built through
    # gaussian_event / laplace_event / dpsgd_event, which apply check_noise_scale.
    if isinstance(event, dpa.GaussianDpEvent):
        _check_positive("noise_multiplier", event.noise_multiplier)
    elif isinstance(event, dpa.LaplaceDpEvent):
        _check_positive("Laplace noise_multiplier", event.noise_multiplier)
    elif isinstance(event, DiscreteLaplaceDpEvent):
        check_noise_scale("discrete Laplace noise_parameter", event.noise_parameter)
        _check_sensitivity("discrete Laplace sensitivity", event.sensitivity)
    elif isinstance(event, DiscreteGaussianDpEvent):
        check_noise_scale("discrete Gaussian sigma", event.sigma)
        _check_sensitivity("discrete Gaussian sensitivity", event.sensitivity)
    elif isinstance(event, PrivacyParametersDpEvent):
        _check_epsilon_of_pair(event.epsilon)
        _check_delta_of_pair(event.delta)
    elif isinstance(event, dpa.NoOpDpEvent):
        pass
    elif isinstance(event, dpa.PoissonSampledDpEvent):
        _check_probability("sampling_probability", event.sampling_probability)
        validate_event(event.event)
    elif isinstance(event, dpa.SelfComposedDpEvent):
        _check_count("count", event.count)
        validate_event(event.event)
    elif isinstance(event, dpa.ComposedDpEvent):
        for inner in event.events:
            validate_event(inner)
    else:
        raise InvalidMechanism(
            f"Mechanism {type(event).__name__} is not supported by the ledger. Supported: {_SUPPORTED}."
        )


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMechanism(f"{name} must be a number; got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise InvalidMechanism(
            f"{name} must be a finite number above 0; got {value!r}. "
            "Noise of zero or below gives no privacy: choose a positive noise scale."
        )


def check_noise_scale(name: str, value: Any) -> float:
    """A noise scale (or a noise distribution's parameter) must be a positive, finite,
    normal float: zero, a negative, an infinity, NaN or a subnormal number (below
    ``sys.float_info.min``, where floats lose their precision and products round to 0)
    would release values with no noise at all, or with noise nobody can account for.
    Returns the value as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMechanism(f"{name} must be a number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < sys.float_info.min:
        raise InvalidMechanism(
            f"{name} must be a finite, positive normal number (at least {sys.float_info.min:.3g}); got "
            f"{value!r}. Noise of zero, or too small for a float to hold, gives no privacy: choose a "
            "positive noise scale."
        )
    return value


def _check_epsilon_of_pair(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidMechanism(
            f"a proven (epsilon, delta) pair needs a finite epsilon >= 0; got {value!r}. Fix: state the "
            "epsilon its proof gives (privacy_budgets.selection computes it for a private selection)."
        )


def _check_delta_of_pair(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidMechanism(f"a proven (epsilon, delta) pair needs a number as delta; got {value!r}.")
    if not 0 <= value < 1:
        raise InvalidMechanism(
            f"a proven (epsilon, delta) pair needs delta in [0, 1); got {value!r}. Fix: a small share of "
            "the dataset's delta, e.g. a tenth of it."
        )


def _check_sensitivity(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidMechanism(
            f"{name} must be a whole number >= 1 (the most one patient changes the integer values); got {value!r}."
        )


def _check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMechanism(f"{name} must be a number; got {value!r}.")
    if not math.isfinite(value) or not 0 < value <= 1:
        raise InvalidMechanism(
            f"{name} must lie in (0, 1]; got {value!r}. It is the chance that one "
            "patient's record is used in a step: batch size / number of records."
        )


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMechanism(f"{name} must be a whole number >= 0; got {value!r}.")


# --- composition helpers ------------------------------------------------------------


def base_counts(event: dpa.DpEvent, times: int = 1) -> Counter[str]:
    """Flatten an event into its base mechanisms and how often each runs.

    Composition is commutative, so a history is fully described by this multiset.
    Composing ``SelfComposed(X, a*b)`` rather than ``a`` copies of
    ``SelfComposed(X, b)`` keeps the accountant's arithmetic identical however the
    same steps were split into rounds, and makes composition cost grow with the
    number of distinct mechanisms, not with the number of entries.
    """
    counts: Counter[str] = Counter()
    if isinstance(event, dpa.NoOpDpEvent) or times == 0:
        return counts
    if isinstance(event, dpa.SelfComposedDpEvent):
        return base_counts(event.event, times * event.count)
    if isinstance(event, dpa.ComposedDpEvent):
        for inner in event.events:
            counts.update(base_counts(inner, times))
        return counts
    counts[canonical_json(event)] += times
    return counts


def events_from_counts(counts: Counter[str]) -> list[dpa.DpEvent]:
    """The inverse of :func:`base_counts`: one self-composed event per mechanism, in the
    counts' own order (a ledger's: each mechanism where it last appeared)."""
    events = []
    for text, count in counts.items():
        if count <= 0:
            continue
        base = event_from_json(text)
        events.append(base if count == 1 else dpa.SelfComposedDpEvent(event=base, count=count))
    return events


# --- words --------------------------------------------------------------------------


def describe_event(event: dpa.DpEvent) -> str:
    """The mechanism in words, for privacy statements and reports."""
    if isinstance(event, dpa.NoOpDpEvent):
        return "nothing released under a mechanism"
    if isinstance(event, dpa.GaussianDpEvent):
        return f"Gaussian noise with standard deviation {event.noise_multiplier:g} x sensitivity"
    if isinstance(event, dpa.LaplaceDpEvent):
        return f"Laplace noise with scale {event.noise_multiplier:g} x sensitivity"
    if isinstance(event, DiscreteLaplaceDpEvent):
        return (
            f"discrete Laplace noise with scale {1 / event.noise_parameter:.6g} on integers of "
            f"sensitivity {event.sensitivity}"
        )
    if isinstance(event, DiscreteGaussianDpEvent):
        return f"discrete Gaussian noise with sigma {event.sigma:.6g} on integers of sensitivity {event.sensitivity}"
    if isinstance(event, PrivacyParametersDpEvent):
        return f"a release proven ({event.epsilon:.6g}, {event.delta:.3g})-differentially private as a whole"
    if isinstance(event, dpa.SelfComposedDpEvent):
        inner = event.event
        if isinstance(inner, dpa.PoissonSampledDpEvent) and isinstance(inner.event, dpa.GaussianDpEvent):
            return (
                f"DP-SGD: {event.count} steps, each on a Poisson sample of "
                f"{inner.sampling_probability:.4g} of the records, gradients clipped and "
                f"noised with multiplier {inner.event.noise_multiplier:.4g}"
            )
        return f"{event.count} x ({describe_event(inner)})"
    if isinstance(event, dpa.PoissonSampledDpEvent):
        return f"{describe_event(event.event)}, on a Poisson sample of {event.sampling_probability:.4g} of the records"
    if isinstance(event, dpa.ComposedDpEvent):
        return "; ".join(describe_event(e) for e in event.events)
    return type(event).__name__
