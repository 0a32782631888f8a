"""Three kinds of trouble, one base each: a user's bad input, a refusal, an internal fault.

Every error the workbench raises on purpose sits under one of them, so a command or a
notebook catches one base per kind, and a site's refusal reply takes its kind from the
class, never from a free string:

- ``BadInput``: what a person gave breaks a rule (a node.toml, a data dictionary, a
  query, a study's parameters, a coordinator folder). The message states the rule,
  the bad value and the fix.
- ``Refused``: a clear no by policy or budget. ``kind`` is the word a site's refusal
  reply carries ("policy", "budget", "paused"); a request the site cannot read, or
  one outside the site's limits on what a request may ask, is an ``InvalidRequest``
  ("invalid").
- ``InternalFault``: something broke that the person did not cause; travels as "error".
  ``PartyFailed`` is the part of it where another party is at fault (a site that did
  not answer, a node or an engine that would not start, a coordinator that stopped).

Besides the three, ``Cancelled`` says a person stopped it (not trouble of any kind).

A refusal has two texts. Its message (``reason``) is the whole story, for the site's
audit log and for a person at the site. ``public`` is what may leave the site: words
built only from the request itself, the site's policy and the requesting project's
own budget, never from the data (a value, a row, a path, another project's spend or
the dataset's cap). Without ``public`` a requester learns only the kind and an
incident id (``public_reason``): exception texts never leave a site.

The bases are plain ``Exception`` classes: each error keeps its builtin base as well
(``ValueError``, ``RuntimeError``), so existing ``except ValueError`` clauses catch
what they caught before. ``privacy_budgets`` keeps its own hierarchy under
``PrivacyBudgetError`` (it stands alone, without this package); its classes read as
the same kinds: ``InvalidBudget``, ``InvalidMechanism`` and ``LedgerError`` are bad
input, ``BudgetExceeded`` and ``ProjectBudgetSpent`` refusals ("budget"), ``LedgerIntegrityError`` an internal
fault. ``refusal_kind`` maps any error to the word of a refusal reply. This module
imports nothing (``federation.data`` stays free of the ledger package).
"""

from __future__ import annotations

from typing import ClassVar


class BadInput(Exception):
    """What a person gave breaks a rule; the message states the rule, the value and the fix."""


class Refused(Exception):
    """A clear no by policy or budget. ``kind`` is the word a refusal reply carries."""

    kind: ClassVar[str] = "policy"

    def __init__(self, reason: str, *, public: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        #: What may be sent to the requester (None: only the kind and an incident id).
        self.public = public


class PolicyRefused(Refused):
    """The site's policy does not allow this (a task kind, a misconfigured rule)."""

    kind = "policy"


class InvalidRequest(PolicyRefused):
    """A request the site cannot read, one that contradicts itself, or one outside the
    site's limits on what a request may ask (sent as "invalid")."""

    kind = "invalid"


class RequestExpired(PolicyRefused):
    """A request past its own deadline: its run was cancelled or abandoned (sent as "policy")."""


class BudgetRefused(Refused):
    """A cap, an allocation or the site's per-request cap would be exceeded."""

    kind = "budget"


class PausedRefused(Refused):
    """The site's kill switch is on: it serves no task."""

    kind = "paused"


class InternalFault(Exception):
    """Something broke that the person did not cause; nothing was released. Its text
    stays at the site: a requester learns only the kind, an incident id and, where
    given, ``public``: words about the site's state that hold no value of the data
    (its audit log cannot be written; its data does not validate)."""

    kind: ClassVar[str] = "error"

    def __init__(self, reason: str = "", *, public: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.public = public


# What a requester is told when a refusal carries no public text of its own.
_GENERIC = {
    "policy": "the site's policy does not allow this request",
    "invalid": "the site cannot accept this request as sent",
    "budget": "the project's privacy budget at this site cannot pay for this release",
    "paused": "the site is paused by its IT and serves no task until resumed",
    "error": "the site could not complete this request; nothing was released",
}


def public_reason(error: BaseException) -> str:
    """The words about ``error`` that may leave a site: its own ``public`` text when it
    has one (a refusal built from the request, the policy and the project's own budget),
    else one sentence for its kind. Never an exception's message."""
    public = getattr(error, "public", None)
    if isinstance(error, (Refused, InternalFault)) and public:
        return str(public)
    return _GENERIC[refusal_kind(error)] + "."


class PartyFailed(InternalFault):
    """Another party did not answer or failed: a site, a node, the coordinator, an engine.

    The command's exit code says so (federation/cli_support.py: 3), apart from the
    workbench's own faults (4)."""


class Cancelled(Exception):
    """Not trouble: a person stopped it (Ctrl-C, ``workbench study cancel``), or it was
    abandoned (no client followed it). Commands exit with 130 (cli_support.EXIT_CODES)."""


def refusal_kind(error: BaseException) -> str:
    """The word a site's refusal reply carries for ``error``: a refusal's own kind,
    "budget" for the ledger's refusals (BudgetExceeded, ProjectBudgetSpent), "invalid" for
    a request that breaks a rule (bad input from the sender), "error" for everything else."""
    from privacy_budgets.errors import BudgetRefused as LedgerRefused

    if isinstance(error, Refused):
        return error.kind
    if isinstance(error, LedgerRefused):
        return BudgetRefused.kind
    if isinstance(error, BadInput):
        return InvalidRequest.kind
    return InternalFault.kind
