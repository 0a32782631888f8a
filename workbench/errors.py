"""Errors a notebook user meets, as one paragraph with what to do next.

IPython shows an exception's ``_render_traceback_`` instead of its traceback: a
refused budget or an unreachable site is the user's situation to act on, not a bug
to debug through Flower's internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from federation.errors import BadInput, BudgetRefused, Cancelled, InternalFault, PartyFailed, Refused


class WorkbenchError(Exception):
    """A situation the user can act on; its message says what happened and what next.

    Shown without a traceback in a notebook. Each subclass also sits under one of the
    three kinds of federation/errors.py (bad input, refusal, internal fault), or is a
    ``Cancelled``. ``charges``: for a study that stopped, what each site's receipts say
    it was charged, and what could not be confirmed (run_folder.SiteCharge)."""

    def __init__(self, message: str, *, charges: list[Any] | None = None) -> None:
        super().__init__(message)
        self.charges = list(charges or [])

    def charges_text(self) -> str:
        if not self.charges:
            return ""
        lines = "\n".join(f"  {c.line()}" for c in self.charges)
        return f"what each site was charged (its signed receipts, as the coordinator mirrors them):\n{lines}"

    def _render_traceback_(self) -> list[str]:
        extra = self.charges_text()
        return [f"{type(self).__name__}: {self}", *([extra] if extra else [])]


class StudyRefused(WorkbenchError, Refused):
    """The sites refused the study before anything was trained."""

    def __init__(self, message: str, *, charges: list[Any] | None = None) -> None:
        WorkbenchError.__init__(self, message, charges=charges)
        self.reason = message


class SiteUnreachable(WorkbenchError, PartyFailed):
    """A site, or the coordinator, did not answer in time or stopped."""


class StudyCancelled(WorkbenchError, Cancelled):
    """The study was cancelled (Ctrl-C, `workbench study cancel`, its timeout, no client
    following it); its Flower run was stopped."""


class StudyFailed(WorkbenchError, InternalFault, RuntimeError):
    """The coordinator's ServerApp failed; the message carries its error."""


class PlanDoesNotFit(WorkbenchError, BudgetRefused):
    """A planned training would go beyond a site's cap or the project's allocation."""


class NotAvailable(WorkbenchError, BadInput):
    """What was asked is not done by this back end (the message says where it is done)."""


def refused_paragraph(*, stopped_reason: str) -> str:
    return (
        f"No hospital trained the model, so nothing was released. {stopped_reason} "
        "What to do: read each site's reason above; for a budget refusal ask the ethics board "
        "for an allocation (wb.allocate in a simulation) or plan a cheaper study with "
        "wb.plan_training(...); for a policy refusal ask the site's IT which tasks it allows."
    )


@contextmanager
def as_workbench_errors() -> Iterator[None]:
    """Turn the engine's timeouts into a paragraph a notebook user can act on."""
    try:
        yield
    except TimeoutError as err:
        raise SiteUnreachable(
            f"{err} No data was touched by the missing sites and nothing was charged for this step. "
            "What to do: check the node's status with `workbench node status --config node.toml` "
            "at that hospital, or run again with fewer sites."
        ) from None
