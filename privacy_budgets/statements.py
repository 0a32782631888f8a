"""Each entry in words: what was released, the guarantee, and what it assumes.

>>> from privacy_budgets.entries import LedgerEntry, GENESIS_PREV
>>> from privacy_budgets.mechanisms import canonical_json, dpsgd_event
>>> entry = LedgerEntry.unsigned(seq=9, time="t", kind="commit", site_id="s",
...     dataset="hospital_01", project="quickstart", actor="node", purpose="FedAvg update",
...     run_id="r42", round=3, mechanism=canonical_json(dpsgd_event(
...         noise_multiplier=1.1, sampling_rate=0.01, steps=80)),
...     epsilon=0.42, delta=1e-5, epsilon_after=1.12, project_epsilon_after=0.8,
...     prev_hash=GENESIS_PREV)
>>> print(statement(entry))  # doctest: +NORMALIZE_WHITESPACE
Released for 'FedAvg update' (run r42, round 3): a model update trained with DP-SGD
(80 steps, each on a Poisson sample of 0.01 of the records, noise multiplier 1.1).
Guarantee: (0.42, 1e-05)-differential privacy for each patient of dataset hospital_01
under add/remove-one-patient, for this release; the dataset's total is now epsilon 1.12.
Assumes: one row per patient, gradients clipped per record, sampling as stated.
"""

from __future__ import annotations

import dp_accounting as dpa

from privacy_budgets.entries import LedgerEntry
from privacy_budgets.errors import fmt_epsilon
from privacy_budgets.mechanisms import (
    DiscreteGaussianDpEvent,
    DiscreteLaplaceDpEvent,
    PrivacyParametersDpEvent,
    describe_event,
    event_from_json,
)

RELATION_WORDS = "add/remove-one-patient"


def statement(entry: LedgerEntry) -> str:
    """The privacy statement of one entry, in plain words."""
    kind = entry.kind
    if kind == "genesis":
        d = entry.details
        return (
            f"Ledger created for site {entry.site_id}; every entry is signed with key "
            f"{d.get('fingerprint')}. Unit of privacy: {d.get('unit_of_privacy')}; "
            f"neighbouring relation: {d.get('neighbouring_relation')}; accounting: "
            f"{d.get('accounting')}."
        )
    if kind == "set_cap":
        d = entry.details
        text = (
            f"Cap set by {entry.actor}: dataset {entry.dataset} may spend at most epsilon "
            f"{fmt_epsilon(d['epsilon'])} at delta {entry.delta:g} over its lifetime "
            f"({entry.purpose}). Spent when set: epsilon {fmt_epsilon(d['spent_when_set'])}."
        )
        return text + (
            " This is below what was already spent: the dataset is over its cap." if d.get("below_spent") else ""
        )
    if kind == "allocate":
        d = entry.details
        text = (
            f"Allocation by {entry.actor}: project {entry.project} may spend at most epsilon "
            f"{fmt_epsilon(d['epsilon'])} of dataset {entry.dataset} (at delta "
            f"{entry.delta:g}) ({entry.purpose}). Spent when set: epsilon "
            f"{fmt_epsilon(d['spent_when_set'])}."
        )
        return text + (
            " This is below what the project already spent: it is over its allocation." if d.get("below_spent") else ""
        )
    if kind == "approve":
        d = entry.details
        names = ", ".join(str(r.get("name")) for r in d.get("researchers", []))
        return (
            f"Approval by {entry.actor}: project {entry.project} on dataset {entry.dataset} "
            f"({d.get('purpose')}) may be asked for by researchers {names} ({entry.purpose})."
        )
    if kind == "board":
        return _board_statement(entry)
    if kind == "rotate_key":
        return (
            f"Key rotation by {entry.actor}: the ledger is signed with {entry.details.get('new_fingerprint')} from "
            f"seq {entry.seq + 1} on; the old key signed this handover ({entry.purpose})."
        )
    if kind == "uncovered":
        return (
            f"Released WITHOUT a differential privacy guarantee{_context(entry)}: "
            f"{entry.details.get('what')}. No DP mechanism covers this release; it is "
            "listed so the board can judge it."
        )
    if kind == "abort":
        return (
            f"Reservation {str(entry.reservation_id)[:8]} aborted ({entry.purpose}"
            f"{_where(entry, lead='; ')}): nothing was released. The dataset's total is now "
            f"epsilon {fmt_epsilon(entry.epsilon_after)}."
        )
    event = event_from_json(entry.mechanism)
    guarantee = (
        f"({fmt_epsilon(entry.epsilon)}, {entry.delta:g})-differential privacy for each "
        f"patient of dataset {entry.dataset} under {RELATION_WORDS}, for this release"
    )
    if kind == "reserve":
        return (
            f"Reserved, not yet released{_context(entry)}: {what_released(event)}. Counts as "
            f"spent until committed or aborted: {guarantee}; the dataset's total with it is "
            f"epsilon {fmt_epsilon(entry.epsilon_after)}."
        )
    return (
        f"Released{_context(entry)}: {what_released(event)}. Guarantee: {guarantee}; the "
        f"dataset's total is now epsilon {fmt_epsilon(entry.epsilon_after)}. "
        f"Assumes: {assumptions(event)}."
    )


def _board_statement(entry: LedgerEntry) -> str:
    from privacy_budgets.board import Board

    d = entry.details
    board = Board.from_json(d)
    rule = (
        f"from now on caps and allocations rise, researchers are approved and the board changes only with "
        f"the signatures of {board.quorum} distinct members"
    )
    if d.get("previous") is None:
        return f"Board recorded by {entry.actor}: {board.describe()} ({entry.purpose}); {rule}."
    before = Board.from_json(d["previous"]).describe()
    return f"Board changed by {entry.actor}: now {board.describe()}, was {before} ({entry.purpose}); {rule}."


def safe_statement(entry: LedgerEntry) -> str:
    """``statement``, or a note when the entry is too damaged to be read (see verify)."""
    try:
        return statement(entry)
    except Exception as err:  # noqa: BLE001 - a damaged entry must not stop a listing
        return f"(no statement: this entry cannot be read: {err})"


# Mechanisms that release one (vector of) noisy statistic(s).
_SINGLE_STATISTIC = (dpa.GaussianDpEvent, dpa.LaplaceDpEvent, DiscreteLaplaceDpEvent, DiscreteGaussianDpEvent)


def release_kind(entry: LedgerEntry) -> str:
    """The kind of a release, for counting: DP-SGD updates, statistics by noise, other."""
    try:
        event = event_from_json(entry.mechanism)
    except Exception:  # noqa: BLE001 - a damaged entry is counted apart; verify names it
        return "unreadable mechanism"
    if _dpsgd(event) is not None:
        return "model update (DP-SGD)"
    inner = event.event if isinstance(event, dpa.SelfComposedDpEvent) else event
    if isinstance(inner, dpa.GaussianDpEvent):
        return "statistics, Gaussian noise"
    if isinstance(inner, dpa.LaplaceDpEvent):
        return "statistics, Laplace noise"
    if isinstance(inner, DiscreteGaussianDpEvent):
        return "statistics, discrete Gaussian noise"
    if isinstance(inner, DiscreteLaplaceDpEvent):
        return "statistics, discrete Laplace noise"
    if isinstance(inner, PrivacyParametersDpEvent):
        return "a private selection (proven epsilon, delta)"
    return f"other ({type(inner).__name__})"


def what_released(event: dpa.DpEvent) -> str:
    """The release in words, from its mechanism."""
    dpsgd = _dpsgd(event)
    if dpsgd is not None:
        steps, q, sigma = dpsgd
        return (
            f"a model update trained with DP-SGD ({steps} steps, each on a Poisson sample of "
            f"{q:.4g} of the records, noise multiplier {sigma:.4g})"
        )
    if isinstance(event, PrivacyParametersDpEvent):
        return (
            f"the outcome of a private selection among runs kept at the site, {describe_event(event)} "
            "(proven in Renyi DP, Papernot & Steinke 2022, and converted to this pair)"
        )
    if isinstance(event, _SINGLE_STATISTIC):
        return f"a statistic with {describe_event(event)}"
    if isinstance(event, dpa.SelfComposedDpEvent) and isinstance(event.event, _SINGLE_STATISTIC):
        return f"{event.count} statistics, each with {describe_event(event.event)}"
    return f"several releases together: {describe_event(event)}"


def assumptions(event: dpa.DpEvent) -> str:
    """What the guarantee assumes about the data and the code that ran."""
    if _dpsgd(event) is not None:
        return "one row per patient, gradients clipped per record, sampling as stated"
    if isinstance(event, PrivacyParametersDpEvent):
        return (
            "one row per patient, the number of runs drawn from the stated distribution and every run "
            "within the stated Renyi bound"
        )
    return "one row per patient, each patient's contribution bounded by the sensitivity the noise is scaled to"


def _dpsgd(event: dpa.DpEvent) -> tuple[int, float, float] | None:
    if (
        isinstance(event, dpa.SelfComposedDpEvent)
        and isinstance(event.event, dpa.PoissonSampledDpEvent)
        and isinstance(event.event.event, dpa.GaussianDpEvent)
    ):
        inner = event.event
        return event.count, inner.sampling_probability, inner.event.noise_multiplier
    return None


def _context(entry: LedgerEntry) -> str:
    where = _where(entry, lead="")
    return f" for '{entry.purpose}'" + (f" ({where})" if where else "")


def _where(entry: LedgerEntry, *, lead: str) -> str:
    parts = [
        f"run {entry.run_id}" if entry.run_id else None,
        f"round {entry.round}" if entry.round is not None else None,
        f"query {entry.query_id}" if entry.query_id else None,
    ]
    where = ", ".join(p for p in parts if p)
    return lead + where if where else ""
