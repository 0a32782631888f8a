"""Small frozen records a ledger hands out: reservations and cost estimates.

Both travel as plain dicts (``to_dict``/``from_dict``), e.g. in a Flower message or a
notebook's JSON.

>>> from privacy_budgets.mechanisms import canonical_json, gaussian_event
>>> r = Reservation(id="r1", seq=4, site_id="s", dataset="d", project="p",
...     mechanism=canonical_json(gaussian_event(noise_multiplier=2.0)), epsilon=2.3,
...     delta=1e-5, dataset_epsilon_after=2.3, project_epsilon_after=2.3, actor="a",
...     purpose="count", run_id=None, round=None, query_id="q1", time="2026-11-29T10:00:00.000000Z")
>>> Reservation.from_dict(r.to_dict()) == r
True
>>> r.event
GaussianDpEvent(noise_multiplier=2.0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dp_accounting as dpa

from privacy_budgets.errors import LedgerError, fmt_epsilon
from privacy_budgets.mechanisms import describe_event, event_from_json

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> str:
    """Now, as the ledger writes times: UTC ISO 8601 with microseconds and a Z."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Inverse of ``utc_now``'s format."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


class PlainRecord:
    """``to_dict``/``from_dict`` for a frozen dataclass of plain fields."""

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, ready for JSON."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of ``to_dict``; unknown or missing fields are refused."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if set(data) != names:
            raise LedgerError(
                f"A {cls.__name__} needs exactly the fields {sorted(names)}; got "
                f"unknown {sorted(set(data) - names)}, missing {sorted(names - set(data))}. "
                f"Build it with {cls.__name__}.to_dict()."
            )
        return cls(**data)


@dataclass(frozen=True)
class Reservation(PlainRecord):
    """A release held against the budget: it counts as spent until committed or aborted."""

    id: str
    seq: int
    site_id: str
    dataset: str
    project: str
    mechanism: str
    epsilon: float
    delta: float
    dataset_epsilon_after: float
    project_epsilon_after: float
    actor: str
    purpose: str
    run_id: str | None
    round: int | None
    query_id: str | None
    time: str

    @property
    def event(self) -> dpa.DpEvent:
        """The reserved mechanism."""
        return event_from_json(self.mechanism)

    @property
    def age_s(self) -> float:
        """Seconds since it was reserved."""
        return (datetime.now(UTC) - parse_time(self.time)).total_seconds()


@dataclass(frozen=True)
class CostEstimate(PlainRecord):
    """What a release would cost, without spending anything (``Ledger.cost``)."""

    dataset: str
    project: str
    mechanism: str
    epsilon: float
    delta: float | None
    dataset_total_after: float
    project_total_after: float
    dataset_remaining_after: float
    project_remaining_after: float
    fits: bool
    binding: str

    def __str__(self) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        return (
            f"{describe_event(event_from_json(self.mechanism))}: epsilon "
            f"{fmt_epsilon(self.epsilon)} alone; dataset '{self.dataset}' total after "
            f"{fmt_epsilon(self.dataset_total_after)}, project '{self.project}' total after "
            f"{fmt_epsilon(self.project_total_after)}. It {verdict}; binding limit: {self.binding}."
        )
