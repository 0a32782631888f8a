"""What the entries add up to: caps, allocations, reservations and mechanism counts.

The ledger keeps this derived state in SQLite tables, updated in the same transaction as
each entry, so a check composes a handful of distinct mechanisms rather than every
entry. ``changes_of`` is the one place that says how an entry changes that state; the
ledger writes its result to the tables and verification replays it in memory, then
compares the two, so derived state is never trusted on its own.

>>> from privacy_budgets.entries import LedgerEntry, GENESIS_PREV
>>> from privacy_budgets.mechanisms import canonical_json, gaussian_event
>>> entry = LedgerEntry.unsigned(seq=4, time="t", kind="reserve", site_id="s", dataset="d",
...     project="p", actor="a", purpose="count", reservation_id="r1",
...     mechanism=canonical_json(gaussian_event(noise_multiplier=3.0, count=2)),
...     prev_hash=GENESIS_PREV)
>>> state = State()
>>> state.apply(changes_of(entry, reservation=None))
>>> state.multiset(dataset="d")
Counter({'{"event":{"noise_multiplier":3.0,"type":"GaussianDpEvent"},"format":"dp_accounting/0.6"}': 2})
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from privacy_budgets.accounting import epsilon_of_counts
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.mechanisms import base_counts, event_from_json

DATASET_CAP = ""  # the project column of a dataset's cap row in the limits table
ALL_PROJECTS = "(all projects)"  # status's name for a dataset's total over its projects


@dataclass(frozen=True)
class Limit:
    """A dataset cap (``project == ""``, with its delta) or a project allocation."""

    dataset: str
    project: str
    epsilon: float
    delta: float | None
    seq: int
    actor: str
    time: str


@dataclass(frozen=True)
class ReservationRow:
    """A reservation and where it stands: open, committed or aborted."""

    id: str
    dataset: str
    project: str
    mechanism: str
    seq: int
    status: str
    resolved_seq: int | None


@dataclass(frozen=True)
class Changes:
    """What one entry changes in the derived state."""

    limits: tuple[Limit, ...] = ()
    reservations: tuple[ReservationRow, ...] = ()
    # (dataset, project, state "committed"|"reserved", base mechanism JSON, added count)
    counts: tuple[tuple[str, str, str, str, int], ...] = ()
    seq: int = 0  # the entry's, recorded beside the counts it changes (orders composition)


def changes_of(entry: LedgerEntry, *, reservation: ReservationRow | None) -> Changes:
    """The derived-state changes of ``entry``; ``reservation`` is the one it resolves."""
    if entry.kind == "set_cap":
        details = entry.details
        return Changes(limits=(_limit(entry, DATASET_CAP, details["epsilon"], entry.delta),))
    if entry.kind == "allocate":
        return Changes(limits=(_limit(entry, entry.project, entry.details["epsilon"], None),))
    if entry.kind == "reserve":
        row = ReservationRow(
            id=entry.reservation_id,
            dataset=entry.dataset,
            project=entry.project,
            mechanism=entry.mechanism,
            seq=entry.seq,
            status="open",
            resolved_seq=None,
        )
        return Changes(reservations=(row,), counts=_counted(entry, entry.mechanism, "reserved", 1), seq=entry.seq)
    if entry.kind in ("commit", "abort") and reservation is not None:
        status = "committed" if entry.kind == "commit" else "aborted"
        row = dataclasses.replace(reservation, status=status, resolved_seq=entry.seq)
        counts = _counted(entry, reservation.mechanism, "reserved", -1)
        if entry.kind == "commit":
            counts += _counted(entry, entry.mechanism, "committed", 1)
        return Changes(reservations=(row,), counts=counts, seq=entry.seq)
    return Changes()


def _limit(entry: LedgerEntry, project: str, epsilon: float, delta: float | None) -> Limit:
    return Limit(
        dataset=entry.dataset,
        project=project,
        epsilon=float(epsilon),
        delta=delta,
        seq=entry.seq,
        actor=entry.actor,
        time=entry.time,
    )


def _counted(entry: LedgerEntry, mechanism: str, state: str, sign: int):
    counts = base_counts(event_from_json(mechanism))
    return tuple((entry.dataset, entry.project, state, text, sign * n) for text, n in counts.items())


@dataclass
class State:
    """The derived state rebuilt in memory, as verification replays entries."""

    limits: dict[tuple[str, str], Limit] = field(default_factory=dict)
    reservations: dict[str, ReservationRow] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    last_seq: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # orders only; never compared

    def apply(self, changes: Changes) -> None:
        """Apply one entry's changes (rows whose count reaches 0 disappear)."""
        for limit in changes.limits:
            self.limits[(limit.dataset, limit.project)] = limit
        for row in changes.reservations:
            self.reservations[row.id] = row
        for dataset, project, state, text, n in changes.counts:
            key = (dataset, project, state, text)
            self.counts[key] += n
            self.last_seq[key] = changes.seq
            if self.counts[key] == 0:
                del self.counts[key], self.last_seq[key]

    def multiset(self, *, dataset: str, project: str | None = None, include_reserved: bool = True) -> Counter:
        """Base mechanism -> count for a dataset (or one of its projects), in the ledger's
        order: each mechanism where it last appeared (store.multiset)."""
        out: Counter = Counter()
        last: dict[str, int] = {}
        for key, n in self.counts.items():
            ds, pr, state, text = key
            if ds != dataset or (project is not None and pr != project):
                continue
            if state == "reserved" and not include_reserved:
                continue
            out[text] += n
            last[text] = max(last.get(text, 0), self.last_seq.get(key, 0))
        return Counter({text: out[text] for text in sorted(out, key=last.__getitem__)})  # stable: ties keep first order


def composed_last(counts: Counter, added: Counter) -> Counter:
    """``counts`` plus ``added``, with ``added``'s mechanisms last: the order the ledger reads
    once they are reserved, so a cost check and the reservation after it compose the same key.

    >>> list(composed_last(Counter(a=1, b=2), Counter(a=1)).items())
    [('b', 2), ('a', 2)]
    """
    out = Counter({text: n for text, n in counts.items() if text not in added})
    for text, n in added.items():
        out[text] = counts.get(text, 0) + n
    return out


def totals_after(
    multiset: Callable[..., Counter],
    *,
    dataset: str | None,
    project: str | None,
    delta: float | None,
) -> dict[str, float | None]:
    """The totals an entry reports, open reservations included, at the dataset's delta.

    ``multiset(dataset=, project=)`` gives the composed mechanisms (from the tables when
    writing, from a replay when verifying). ``None`` where there is no dataset, no
    project, or no delta (no cap yet).
    """
    if dataset is None or delta is None:
        return {"epsilon_after": None, "project_epsilon_after": None, "delta": delta}
    total = epsilon_of_counts(counts=multiset(dataset=dataset), delta=delta)
    project_total = (
        None if project is None else epsilon_of_counts(counts=multiset(dataset=dataset, project=project), delta=delta)
    )
    return {"epsilon_after": total, "project_epsilon_after": project_total, "delta": delta}
