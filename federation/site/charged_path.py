"""The one charged path: every release a site makes goes through ``charged_release``.

A training round, an evaluation, a range finding and an analytics answer all run the
same transaction, in this order, and no handler writes its own:

1. the site's per-request cap, on the event the handler computed itself from the
   parameters it will execute (``request_cap``);
2. a reservation in the site's ledger (or a budget refusal in the requesting
   project's own numbers: never the dataset's cap nor another project's spending);
3. the release is computed (``run``); a failure aborts the reservation: nothing left;
4. the event that actually ran is committed (it may cost less than reserved, never
   more), and any release the site's policy lets go without noise (an explicit
   opt-in, ``[training] uncovered_releases``) is recorded beside it as uncovered;
5. the signed receipts of both go back with the reply.

What happens before (the policy gate, the request's limits) raises a refusal before
anything is reserved; what happens after (building the reply) only reads the result.
``already_charged`` tells a handler whether a release with the same identity (a
run's round, say) was already reserved or made: a coordinator replaying round 1
forever is refused, not charged again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import dp_accounting as dpa

from federation.errors import BudgetRefused, InternalFault, Refused
from federation.site.anchors import record_last_head, refuse_charge_if_behind
from federation.site.request_cap import check_request_cap
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.errors import BudgetRefused as LedgerRefused
from privacy_budgets.errors import fmt_epsilon

T = TypeVar("T")


@dataclass(frozen=True)
class Charge:
    """What a release will cost and why: the event the site computed itself, the
    project it is charged to, and the words the ledger keeps."""

    project: str
    actor: str
    event: dpa.DpEvent
    purpose: str
    run_id: str | None = None
    round: int | None = None
    query_id: str | None = None


@dataclass(frozen=True)
class Declared:
    """A number released without noise (only where the site's policy opts in)."""

    what: str
    purpose: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ran(Generic[T]):
    """What ``run`` made: the value to reply with, the event that actually ran (None:
    the reserved one) and any uncovered release beside it."""

    value: T
    event: dpa.DpEvent | None = None
    declared: tuple[Declared, ...] = ()


@dataclass(frozen=True)
class Charged(Generic[T]):
    """A committed release: its value, its ledger entry and the receipts to send."""

    value: T
    entry: LedgerEntry
    receipts: list[dict[str, Any]]

    @property
    def epsilon(self) -> float:
        return float(self.entry.epsilon or 0.0)

    @property
    def project_epsilon(self) -> float:
        return float(self.entry.project_epsilon_after or 0.0)


def charged_release(*, ledger: Ledger, site: SiteConfig, charge: Charge, run: Callable[[], Ran[T]]) -> Charged[T]:
    """Run one release through the site's transaction (see the module docstring).

    Raises a ``BudgetRefused`` (per-request cap, cap or allocation: its public text in
    the project's own numbers), the ``Refused`` that ``run`` raised (after aborting),
    or an ``InternalFault`` whose message stays at the site (after aborting).
    """
    refuse_charge_if_behind(ledger=ledger, site=site)  # anchors.py; the gate ran the whole check
    try:
        check_request_cap(ledger=ledger, site=site, project=charge.project, event=charge.event)
        reservation = ledger.reserve(
            dataset=site.dataset,
            project=charge.project,
            event=charge.event,
            actor=charge.actor,
            purpose=charge.purpose,
            run_id=charge.run_id,
            round=charge.round,
            query_id=charge.query_id,
        )
    except LedgerRefused as err:
        raise budget_refusal(ledger=ledger, site=site, project=charge.project, error=err) from None
    try:
        ran = run()
    except (Refused, InternalFault) as err:  # already in words the site chose: pass them on
        ledger.abort(reservation, reason=f"stopped before any release: {type(err).__name__}: {err}")
        raise
    except Exception as err:
        ledger.abort(reservation, reason=f"failed before any release: {type(err).__name__}: {err}")
        raise InternalFault(
            f"site {site.site_id} could not complete {charge.purpose}: {type(err).__name__}: {err}"
        ) from err
    entry = ledger.commit(reservation, event=ran.event)
    # Receipts speak of this release and its project: the dataset's total (every
    # project's spending) stays at the site.
    receipts = [ledger.receipt(entry, dataset_total=False).to_dict()]
    for declared in ran.declared:
        recorded = ledger.record_uncovered(
            dataset=site.dataset,
            project=charge.project,
            what=declared.what,
            actor=charge.actor,
            purpose=declared.purpose,
            run_id=charge.run_id,
            round=charge.round,
            details=declared.details,
        )
        receipts.append(ledger.receipt(recorded, dataset_total=False).to_dict())
    last = receipts[-1]
    # The key folder remembers the newest head (anchors.py): a ledger put back behind it is refused.
    record_last_head(site, seq=last["head_seq"], head_hash=last["head_hash"], time=last["time"])
    return Charged(value=ran.value, entry=entry, receipts=receipts)


def budget_refusal(*, ledger: Ledger, site: SiteConfig, project: str, error: BaseException) -> BudgetRefused:
    """A budget refusal whose public text holds the project's own numbers only.

    The ledger's message (kept for the audit log) names the dataset's cap, who set it
    and the dataset's total: none of that leaves the site. A refusal already in the
    project's words (the per-request cap, a spent project) keeps its own.
    """
    public = getattr(error, "public", None)
    if isinstance(error, BudgetRefused) and public:
        return error
    requested = getattr(error, "requested_epsilon", None)
    try:
        spent = ledger.spent(dataset=site.dataset, project=project)
        allocation = ledger.allocation(dataset=site.dataset, project=project)
    except Exception:  # a ledger that cannot answer: say only what was refused
        spent, allocation = None, None
    if allocation is None:
        words = f"project '{project}' has no allocation at site {site.site_id}, so nothing may be released for it"
        fix = "its ethics board at the site allocates one"
    else:
        cost = f"; this release would cost epsilon {fmt_epsilon(requested)}" if requested is not None else ""
        words = (
            f"the site's privacy limits refuse this release for project '{project}' at site {site.site_id}: the "
            f"project has spent epsilon {fmt_epsilon(spent)} of its allocation of {fmt_epsilon(allocation)} there{cost}"
        )
        fix = "ask the site's ethics board for more, or plan a cheaper release (more noise, fewer steps)"
    return BudgetRefused(str(error), public=f"{words}. Nothing was released or charged. Fix: {fix}.")


def already_charged(*, ledger: Ledger, dataset: str, query_id: str) -> bool:
    """Whether a release with this identity was reserved and not aborted (it ran, or runs now)."""
    reserved, aborted = set(), set()
    for entry in ledger.entries(dataset=dataset, query_id=query_id):
        if entry.kind == "reserve":
            reserved.add(entry.reservation_id)
        elif entry.kind == "abort":
            aborted.add(entry.reservation_id)
    return bool(reserved - aborted)


def uncovered_left(*, ledger: Ledger, dataset: str, run_id: str, allowed: int) -> int:
    """How many more uncovered releases the run may make under the site's opt-in."""
    if allowed <= 0:
        return 0
    made = sum(1 for e in ledger.entries(dataset=dataset, run_id=run_id) if e.kind == "uncovered")
    return max(0, allowed - made)


__all__ = [
    "Charge",
    "Charged",
    "Declared",
    "Ran",
    "already_charged",
    "budget_refusal",
    "charged_release",
    "uncovered_left",
]
