"""Who may change a ledger's limits, approvals and board: the rules the ledger enforces
when it writes, and verification enforces again when it replays.

A ledger runs in one of two modes:

- **legacy** (no board recorded; every ledger made before boards existed): caps,
  allocations and approvals are one-person entries, as before. A proposal may still be
  applied; its signatures must then verify, though nobody's membership can be checked.
- **board** (from the ledger's first ``board`` entry on): raising or setting a cap,
  allocating more, approving researchers and changing the board need a proposal signed
  by ``quorum`` distinct current members. Lowering a cap or an allocation, and
  withdrawing researchers from an approval, stay one-person entries: they only protect.

The first ``board`` entry is made once, by whoever holds the ledger's key (at ``node
init``, or later to migrate a legacy ledger): in a board-less ledger that person already
holds every power, and recording a board only takes powers away. A ``set_board``
proposal may also establish it, signed by a quorum of the new members. Every later
change to the board is a proposal signed by a quorum of the current members, in which
each member who joins (or brings a new key) signs too: a key nobody holds never
becomes a member.

Each decision entry holds ``details["authority"]``: the proposal document, its id, the
signatures (SSHSIG blobs, base64) and whom they count for; ``actor`` names the signers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from privacy_budgets.board import Board, BoardInvalid
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.errors import LedgerError, fmt_epsilon
from privacy_budgets.proposals import (
    ProposalInvalid,
    SignedProposal,
    check_action,
    describe_action,
    proposal_id,
)
from privacy_budgets.signatures import (
    PROPOSAL_NAMESPACE,
    DocumentInvalid,
    SignatureInvalid,
    check_document,
    parse_document_time,
    verify,
)

GOVERNED_KINDS = ("set_cap", "allocate", "approve", "board", "rotate_key")
ACTION_OF_KIND = {
    "set_cap": "set_cap",
    "allocate": "allocate",
    "approve": "approve",
    "board": "set_board",
    "rotate_key": "rotate_key",
}


class AuthorityError(LedgerError):
    """A decision the ledger refuses: it needs the board's signatures and lacks them, or
    its proposal does not hold (expired, for another ledger, already applied)."""


@dataclass(frozen=True)
class Signer:
    """A signature that counted: the member, and an ``sk-`` key's flags and counter."""

    name: str
    fingerprint: str
    flags: int | None = None
    counter: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "flags": self.flags, "counter": self.counter}


@dataclass(frozen=True)
class Tally:
    """The signatures of one proposal against one board."""

    counted: tuple[Signer, ...]
    refused: tuple[str, ...]  # one sentence per signature that does not count
    quorum: int | None  # None: no board to count against (legacy)
    signed_keys: frozenset[str] = field(default_factory=frozenset)  # every key whose signature verified

    @property
    def met(self) -> bool:
        return self.quorum is not None and len(self.counted) >= self.quorum

    def actor(self) -> str:
        names = ", ".join(s.name for s in self.counted) or "nobody"
        if self.quorum is None:
            return f"signed by {names}"
        return f"board ({len(self.counted)} of quorum {self.quorum}): {names}"


def tally(proposal: SignedProposal, *, board: Board | None) -> Tally:
    """Count distinct members' valid signatures; say why each other one does not count."""
    counted: dict[str, Signer] = {}
    refused: list[str] = []
    signed: set[str] = set()
    for index, signature in enumerate(proposal.signatures, start=1):
        try:
            verified = verify(proposal.message, signature, namespace=PROPOSAL_NAMESPACE)
        except SignatureInvalid as err:
            refused.append(f"signature {index} does not count: {err}")
            continue
        fp = verified.key.fingerprint
        signed.add(fp)
        if board is None:
            name = verified.key.comment or fp
        else:
            member = board.member(verified.key)
            if member is None:
                refused.append(f"signature {index} does not count: key {fp} is not a member of the current board")
                continue
            name = member.name
        if fp in counted:
            refused.append(
                f"signature {index} does not count again: {name} ({fp}) already signed (a member counts once)"
            )
            continue
        counted[fp] = Signer(name=name, fingerprint=fp, flags=verified.flags, counter=verified.counter)
    return Tally(
        counted=tuple(counted.values()),
        refused=tuple(refused),
        quorum=None if board is None else board.quorum,
        signed_keys=frozenset(signed),
    )


@dataclass
class Approval:
    """Researchers approved for a project on a dataset, and why."""

    dataset: str
    project: str
    purpose: str
    researchers: tuple[dict[str, str], ...]
    seq: int

    @property
    def keys(self) -> set[str]:
        return {r["key"] for r in self.researchers}


@dataclass
class Governance:
    """The board, approvals, used proposals and hardware-key counters, as entries left them."""

    ledger_id: str | None = None
    board: Board | None = None
    board_seq: int | None = None
    approvals: dict[tuple[str, str], Approval] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)  # proposal nonce -> seq
    counters: dict[tuple[str, int], str] = field(default_factory=dict)  # (fingerprint, counter) -> nonce

    @classmethod
    def replay(cls, entries: Iterable[LedgerEntry]) -> Governance:
        """Rebuild from the genesis entry and the governed entries (trusting them)."""
        state = cls()
        for entry in entries:
            if entry.kind == "genesis":
                state.ledger_id = entry.entry_hash
            elif entry.kind in GOVERNED_KINDS:
                state.record(entry)
        return state

    # --- the rules ----------------------------------------------------------------------

    def problems(self, entry: LedgerEntry, *, limits: dict[tuple[str, str], Any]) -> list[str]:
        """Why ``entry`` may not stand here (empty when it may). ``limits`` is the
        (dataset, project) -> Limit state before it; the dataset cap is under project ""."""
        if entry.kind not in GOVERNED_KINDS:
            return []
        try:
            details = entry.details
        except ValueError:
            return ["its details are not JSON"]
        authority = details.get("authority")
        if authority is None:
            return self._one_person(entry, details, limits)
        return self._signed(entry, details, authority)

    def _one_person(self, entry: LedgerEntry, details: dict, limits) -> list[str]:
        if entry.kind == "board":
            if self.board is not None:
                return [
                    f"the board ({self.board.describe()}) is changed only by a proposal signed by {self.board.quorum} "
                    "of its members; this change carries no signatures"
                ]
            return []
        if self.board is None:
            return []  # legacy mode: one-person decisions, as before boards existed
        need = f"a proposal signed by {self.board.quorum} of the board's {len(self.board.members)} members"
        if entry.kind == "set_cap":
            old = limits.get((entry.dataset, ""))
            new = details.get("epsilon")
            if old is None:
                return [f"a first cap on dataset '{entry.dataset}' lets releases begin, so it needs {need}"]
            if entry.delta != old.delta:
                return [f"changing the delta of dataset '{entry.dataset}' needs {need}"]
            if not isinstance(new, (int, float)) or new > old.epsilon:
                return [
                    f"raising the cap of dataset '{entry.dataset}' from {fmt_epsilon(old.epsilon)} to "
                    f"{fmt_epsilon(new)} needs {need}"
                ]
            return []
        if entry.kind == "allocate":
            old = limits.get((entry.dataset, entry.project))
            new = details.get("epsilon")
            if old is None:
                return [f"a first allocation for project '{entry.project}' lets it spend, so it needs {need}"]
            if not isinstance(new, (int, float)) or new > old.epsilon:
                return [
                    f"raising the allocation of project '{entry.project}' from {fmt_epsilon(old.epsilon)} to "
                    f"{fmt_epsilon(new)} needs {need}"
                ]
            return []
        if entry.kind == "rotate_key":
            return [f"rotating the ledger's signing key needs {need}"]
        if entry.kind == "approve":
            old = self.approvals.get((entry.dataset, entry.project))
            keys = {r.get("key") for r in details.get("researchers", [])}
            if old is None or not keys <= old.keys:
                return [f"approving researchers for project '{entry.project}' needs {need}"]
            return []
        return []

    def _signed(self, entry: LedgerEntry, details: dict, authority: Any) -> list[str]:
        if not isinstance(authority, dict) or not isinstance(authority.get("proposal"), dict):
            return ["its authority holds no proposal document"]
        proposal = SignedProposal(
            document=authority["proposal"], signatures=tuple(str(s) for s in authority.get("signatures", []))
        )
        document = proposal.document
        try:
            check_document(document, namespace=PROPOSAL_NAMESPACE, now=parse_document_time(entry.time, field="time"))
            action = check_action(document.get("action"))
        except (DocumentInvalid, ProposalInvalid) as err:
            return [str(err)]
        out = []
        if authority.get("proposal_id") != proposal.id:
            out.append("its proposal_id is not the hash of its proposal")
        if document.get("site_id") != entry.site_id or document.get("ledger_id") != self.ledger_id:
            out.append(
                f"its proposal is for site {document.get('site_id')!r}, ledger {str(document.get('ledger_id'))[:12]}; "
                f"this is site {entry.site_id!r}, ledger {str(self.ledger_id)[:12]} (a proposal is applied to the "
                "ledger it names only)"
            )
        if document["nonce"] in self.applied:
            out.append(
                f"its proposal was already applied at seq {self.applied[document['nonce']]} (each proposal once)"
            )
        mismatch = _mismatch(entry, details, action)
        if mismatch:
            out.append(f"the entry does not record what was signed: {mismatch}")
        if entry.purpose != document.get("reason"):
            out.append("its purpose is not the proposal's reason")
        establishing = self.board is None and action["kind"] == "set_board"
        counting = Board.from_json(action) if establishing else self.board
        result = tally(proposal, board=counting)
        if counting is None:
            if result.refused or not result.counted:
                out.append(
                    "in a ledger without a board, a proposal is applied with at least one signature, and every one "
                    "must verify: " + ("; ".join(result.refused) or "it has none")
                )
        elif not result.met:
            whose = "the new board's" if establishing else "the board's"
            out.append(
                f"it needs signatures of {counting.quorum} distinct members of {whose} {len(counting.members)} "
                f"({counting.describe()}); it has {len(result.counted)}"
                + (f" ({', '.join(s.name for s in result.counted)})" if result.counted else "")
                + (f"; {'; '.join(result.refused)}" if result.refused else "")
            )
        if action["kind"] == "set_board" and not establishing and self.board is not None:
            joining = Board.from_json(action).fingerprints - self.board.fingerprints
            unsigned = sorted(joining - result.signed_keys)
            if unsigned:
                out.append(
                    f"each member who joins the board (or brings a new key) signs the proposal too; {unsigned[0]} "
                    "has not"
                )
        for signer in result.counted:
            if signer.counter:
                seen = self.counters.get((signer.fingerprint, signer.counter))
                if seen is not None and seen != document["nonce"]:
                    out.append(
                        f"hardware key {signer.fingerprint} ({signer.name}) shows counter {signer.counter} again, on "
                        "another proposal: an authenticator never repeats its counter, so the key may be cloned"
                    )
        recorded = authority.get("signed_by")
        if not out and recorded != [s.to_json() for s in result.counted]:
            out.append("its list of signers is not the one its signatures give")
        if not out and entry.actor != result.actor():
            out.append(f"its actor must name the signers ({result.actor()!r})")
        return out

    # --- after an entry stands ----------------------------------------------------------

    def record(self, entry: LedgerEntry) -> None:
        """Take in a governed entry that stands."""
        try:
            details = entry.details
        except ValueError:
            return
        authority = details.get("authority")
        if isinstance(authority, dict) and isinstance(authority.get("proposal"), dict):
            nonce = authority["proposal"].get("nonce")
            self.applied[str(nonce)] = entry.seq
            for signer in authority.get("signed_by") or []:
                if isinstance(signer, dict) and signer.get("counter"):
                    self.counters[(str(signer.get("fingerprint")), int(signer["counter"]))] = str(nonce)
        if entry.kind == "board":
            try:
                self.board = Board.from_json(details)
                self.board_seq = entry.seq
            except BoardInvalid:
                pass
        elif entry.kind == "approve":
            self.approvals[(entry.dataset, entry.project)] = Approval(
                dataset=entry.dataset,
                project=entry.project,
                purpose=str(details.get("purpose", "")),
                researchers=tuple(details.get("researchers", [])),
                seq=entry.seq,
            )

    def refuse_unsigned(self, *, what: str, fix: str) -> AuthorityError:
        """The error for a one-person call that needs the board."""
        board = self.board
        return AuthorityError(
            f"Refused: this ledger has a board ({board.describe()}), and {what} needs a proposal signed by "
            f"{board.quorum} distinct members. Nothing was written. Fix: {fix}"
        )


def _mismatch(entry: LedgerEntry, details: dict, action: dict[str, Any]) -> str | None:
    if ACTION_OF_KIND.get(entry.kind) != action["kind"]:
        return f"a {entry.kind} entry for a {action['kind']} proposal"
    expected = {"dataset": action.get("dataset"), "project": action.get("project")}
    got = {"dataset": entry.dataset, "project": entry.project}
    if action["kind"] in ("set_cap", "allocate", "approve") and any(
        expected[k] != got[k] for k in expected if k in action
    ):
        return f"it names {got}, the proposal {expected}"
    if action["kind"] == "set_cap" and (details.get("epsilon") != action["epsilon"] or entry.delta != action["delta"]):
        return f"cap {details.get('epsilon')} at delta {entry.delta} instead of {describe_action(action)}"
    if action["kind"] == "allocate" and details.get("epsilon") != action["epsilon"]:
        return f"allocation {details.get('epsilon')} instead of {describe_action(action)}"
    if action["kind"] == "approve" and (
        details.get("researchers") != action["researchers"] or details.get("purpose") != action["purpose"]
    ):
        return "other researchers or another purpose than the proposal's"
    if action["kind"] == "set_board" and (
        details.get("members") != action["members"] or details.get("quorum") != action["quorum"]
    ):
        return "another board than the proposal's"
    if action["kind"] == "rotate_key" and details.get("new_public_key") != action["new_public_key"]:
        return "another new key than the proposal's"
    return None


def authority_details(proposal: SignedProposal, result: Tally) -> dict[str, Any]:
    """What a decision entry holds under ``details["authority"]``."""
    return {
        "proposal": proposal.document,
        "proposal_id": proposal_id(proposal.document),
        "signatures": list(proposal.signatures),
        "signed_by": [s.to_json() for s in result.counted],
    }


def check_before_writing(
    governance: Governance, proposal: SignedProposal, *, site_id: str, now: datetime
) -> tuple[dict[str, Any], Tally]:
    """Refuse early, with the fix, what the entry rules would refuse; the checked action."""
    document = proposal.document
    try:
        check_document(document, namespace=PROPOSAL_NAMESPACE, now=now)
        action = check_action(document.get("action"))
    except (DocumentInvalid, ProposalInvalid) as err:
        raise AuthorityError(f"Refused: {err}") from None
    if document.get("site_id") != site_id or document.get("ledger_id") != governance.ledger_id:
        raise AuthorityError(
            f"Refused: a proposal is applied only to the ledger it names; this one names site "
            f"{document.get('site_id')!r}, ledger {str(document.get('ledger_id'))[:12]}, and this ledger is site "
            f"{site_id!r}, ledger {str(governance.ledger_id)[:12]}. Nothing was written. Fix: propose again "
            "for this ledger (`workbench budget propose ... --ledger PATH`)."
        )
    if document["nonce"] in governance.applied:
        raise AuthorityError(
            f"Refused: a proposal is applied once; this one was applied at seq {governance.applied[document['nonce']]}. "
            "Nothing was written."
        )
    establishing = governance.board is None and action["kind"] == "set_board"
    counting = Board.from_json(action) if establishing else governance.board
    result = tally(proposal, board=counting)
    if counting is not None and not result.met:
        have = ", ".join(s.name for s in result.counted) or "none"
        why = f" Not counted: {'; '.join(result.refused)}." if result.refused else ""
        raise AuthorityError(
            f"Refused: {describe_action(action)} needs signatures of {counting.quorum} distinct members of the "
            f"{'new ' if establishing else ''}board ({counting.describe()}); it has {len(result.counted)} ({have}).{why} "
            "Nothing was written. Fix: ask more members to run `workbench budget sign PROPOSAL --key KEY`, then "
            "apply again."
        )
    if counting is None and (result.refused or not result.counted):
        raise AuthorityError(
            "Refused: in a ledger without a board a proposal is applied with at least one signature, and every one "
            f"must verify: {'; '.join(result.refused) or 'it has none'}. Nothing was written."
        )
    return action, result
