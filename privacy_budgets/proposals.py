"""Proposals: the board's decisions as documents its members sign, one by one.

A proposal is canonical JSON in the namespace ``hospital-dp-workbench/proposal@v1``:

    {"format": "hospital-dp-workbench/proposal@v1",
     "site_id": "hospital_01", "ledger_id": "<hash of the ledger's genesis entry>",
     "action": {"kind": "set_cap", "dataset": "cardio", "epsilon": 12.0, "delta": 1e-05},
     "reason": "protocol EB-2026-117", "proposed_by": "Dr A. Example",
     "nonce": "<32 hex>", "created": "2026-11-29T10:00:00Z", "expires": "2026-12-13T10:00:00Z"}

It names one ledger (a proposal for one site's ledger cannot be applied to another), is
applied at most once (its nonce), and only before it expires. Actions:

- ``set_cap``: dataset, epsilon, delta (a raise, or a first cap; lowering needs no board)
- ``allocate``: dataset, project, epsilon (idem)
- ``approve``: dataset, project, purpose, researchers [{name, key}]: the researchers whose
  signed requests the site may serve for the project (the list after the decision)
- ``set_board``: members [{name, key}], quorum: the board after the decision (membership
  changes, a member's new key, a new quorum)

A proposal file carries the document and the signatures gathered so far:

    {"format": "hospital-dp-workbench/proposal-file@v1", "proposal": {...}, "signatures": ["<base64>", ...]}

>>> from datetime import timedelta
>>> p = propose(site_id="hospital_01", ledger_id="ab" * 32, action=cap_action(dataset="cardio",
...     epsilon=12.0, delta=1e-5), reason="EB-117", proposed_by="Dr A", expires_in=timedelta(days=7))
>>> describe_action(p.document["action"])
'set the cap of dataset cardio to epsilon 12.00 at delta 1e-05'
>>> len(p.signatures)
0
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from privacy_budgets.board import Board, BoardInvalid
from privacy_budgets.errors import PrivacyBudgetError, fmt_epsilon
from privacy_budgets.signatures import (
    PROPOSAL_NAMESPACE,
    DocumentInvalid,
    SignatureInvalid,
    Signer,
    SshPublicKey,
    SshSig,
    canonical_bytes,
    dearmor,
    new_document,
    verify,
)

FILE_FORMAT = "hospital-dp-workbench/proposal-file@v1"
ACTIONS = ("set_cap", "allocate", "approve", "set_board", "rotate_key")
DEFAULT_EXPIRY = timedelta(days=14)


class ProposalInvalid(PrivacyBudgetError, ValueError):
    """A proposal or proposal file that breaks a rule of its format."""


# --- actions ----------------------------------------------------------------------------


def cap_action(*, dataset: str, epsilon: float, delta: float) -> dict[str, Any]:
    """Set a dataset's lifetime cap."""
    return check_action({"kind": "set_cap", "dataset": dataset, "epsilon": epsilon, "delta": delta})


def allocation_action(*, dataset: str, project: str, epsilon: float) -> dict[str, Any]:
    """Set a project's allocation on a dataset."""
    return check_action({"kind": "allocate", "dataset": dataset, "project": project, "epsilon": epsilon})


def approval_action(
    *, dataset: str, project: str, purpose: str, researchers: list[tuple[str, SshPublicKey | str]]
) -> dict[str, Any]:
    """Approve a project for named researcher keys (the full list after the decision)."""
    listed = [
        {
            "name": name,
            "key": (key if isinstance(key, SshPublicKey) else SshPublicKey.from_openssh(key)).openssh(comment=False),
        }
        for name, key in researchers
    ]
    return check_action(
        {"kind": "approve", "dataset": dataset, "project": project, "purpose": purpose, "researchers": listed}
    )


def rotation_action(*, new_public_key: str) -> dict[str, Any]:
    """Sign the ledger with a new key from now on (hex of its 32 raw Ed25519 bytes)."""
    return check_action({"kind": "rotate_key", "new_public_key": new_public_key})


def board_action(*, board: Board) -> dict[str, Any]:
    """Replace the board: its members and quorum after the decision."""
    return check_action({"kind": "set_board", **board.to_json()})


def check_action(action: Any) -> dict[str, Any]:
    """The action with its fields checked and normalised (floats, sorted lists)."""
    if not isinstance(action, dict) or action.get("kind") not in ACTIONS:
        raise ProposalInvalid(f"A proposal's action has a kind among {', '.join(ACTIONS)}; got {str(action)[:80]!r}.")
    kind = action["kind"]
    fields = {
        "set_cap": {"kind", "dataset", "epsilon", "delta"},
        "allocate": {"kind", "dataset", "project", "epsilon"},
        "approve": {"kind", "dataset", "project", "purpose", "researchers"},
        "set_board": {"kind", "members", "quorum"},
        "rotate_key": {"kind", "new_public_key"},
    }[kind]
    if set(action) != fields:
        raise ProposalInvalid(
            f"A {kind} action has exactly the fields {sorted(fields)}; got {sorted(action)}. Write it with "
            "`workbench budget propose`."
        )
    out = {"kind": kind}
    for name in ("dataset", "project", "purpose"):
        if name in fields:
            out[name] = _text(action[name], name)
    if "epsilon" in fields:
        out["epsilon"] = _number(action["epsilon"], "epsilon", low=0.0, high=math.inf)
    if "delta" in fields:
        out["delta"] = _number(action["delta"], "delta", low=0.0, high=1.0)
    if kind == "approve":
        out["researchers"] = _researchers(action["researchers"])
    if kind == "rotate_key":
        key = action["new_public_key"]
        if not isinstance(key, str) or len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ProposalInvalid(
                f"A key rotation names the new Ed25519 public key as 64 lowercase hex digits; got {str(key)[:80]!r}. "
                "Write it with `workbench budget propose rotate-key`."
            )
        out["new_public_key"] = key
    if kind == "set_board":
        try:
            board = Board.from_json({"members": action["members"], "quorum": action["quorum"]})
        except BoardInvalid as err:
            raise ProposalInvalid(str(err)) from None
        out.update(board.to_json())
    return out


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProposalInvalid(f"A proposal's {name} is a non-empty string; got {value!r}.")
    return value


def _number(value: Any, name: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < float(value) < high:
        raise ProposalInvalid(f"A proposal's {name} is a number above {low:g} and below {high:g}; got {value!r}.")
    return float(value)


def _researchers(items: Any) -> list[dict[str, str]]:
    if not isinstance(items, list) or not items:
        raise ProposalInvalid(
            "An approval names at least one researcher as {name, key}; to withdraw every researcher, lower "
            "the project's allocation to its spending instead."
        )
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"name", "key"}:
            raise ProposalInvalid(f"A researcher is {{name, key}}; got {str(item)[:80]!r}.")
        try:
            key = SshPublicKey.from_openssh(item["key"])
        except SignatureInvalid as err:
            raise ProposalInvalid(f"Researcher {item['name']!r}: {err}") from None
        out.append({"name": _text(item["name"], "researcher name"), "key": key.openssh(comment=False)})
    keys = [r["key"] for r in out]
    if len(set(keys)) != len(keys):
        raise ProposalInvalid("An approval lists each researcher's key once; one key appears twice.")
    return sorted(out, key=lambda r: (r["name"], r["key"]))


def describe_action(action: dict[str, Any]) -> str:
    """The action in words."""
    kind = action.get("kind")
    if kind == "set_cap":
        return (
            f"set the cap of dataset {action['dataset']} to epsilon {fmt_epsilon(action['epsilon'])} "
            f"at delta {action['delta']:g}"
        )
    if kind == "allocate":
        return (
            f"allocate project {action['project']} epsilon {fmt_epsilon(action['epsilon'])} "
            f"of dataset {action['dataset']}"
        )
    if kind == "approve":
        names = ", ".join(r["name"] for r in action["researchers"])
        return (
            f"approve project {action['project']} on dataset {action['dataset']} ({action['purpose']}) "
            f"for researchers {names}"
        )
    if kind == "set_board":
        return f"set the board to {Board.from_json(action).describe()}"
    if kind == "rotate_key":
        from privacy_budgets.keys import fingerprint

        return f"rotate the ledger's signing key to {fingerprint(action['new_public_key'])}"
    return f"an unknown action {kind!r}"


# --- documents and files ----------------------------------------------------------------


def propose(
    *,
    site_id: str,
    ledger_id: str,
    action: dict[str, Any],
    reason: str,
    proposed_by: str,
    expires_in: timedelta = DEFAULT_EXPIRY,
    now: datetime | None = None,
) -> SignedProposal:
    """A new proposal for one ledger, with no signatures yet."""
    body = {
        "site_id": _text(site_id, "site_id"),
        "ledger_id": _ledger_id(ledger_id),
        "action": check_action(action),
        "reason": _text(reason, "reason"),
        "proposed_by": _text(proposed_by, "proposed_by"),
    }
    try:
        document = new_document(namespace=PROPOSAL_NAMESPACE, body=body, expires_in=expires_in, now=now)
    except DocumentInvalid as err:
        raise ProposalInvalid(str(err)) from None
    return SignedProposal(document=document)


def _ledger_id(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ProposalInvalid(
            f"A proposal names its ledger by the hash of the ledger's genesis entry (64 hex characters); got "
            f"{value!r}. Fix: read it with `workbench budget board --ledger PATH`."
        )
    return value


def proposal_id(document: dict[str, Any]) -> str:
    """SHA-256 hex of the signed bytes: names one proposal exactly."""
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


@dataclass(frozen=True)
class SignedProposal:
    """A proposal document and the signatures gathered for it (each an SSHSIG blob)."""

    document: dict[str, Any]
    signatures: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return proposal_id(self.document)

    @property
    def message(self) -> bytes:
        """The exact bytes each member signs."""
        return canonical_bytes(self.document)

    @property
    def action(self) -> dict[str, Any]:
        return self.document["action"]

    def sign(self, signer: Signer) -> SignedProposal:
        """This proposal with one more signature (``signer``'s); a key that already
        signed it has its earlier signature replaced (it counts once anyway)."""
        signature = signer.sign(self.message, namespace=PROPOSAL_NAMESPACE)
        return self.with_signatures([signature])

    def with_signatures(self, signatures: list[str]) -> SignedProposal:
        """Add signatures (armored or base64), each checked against this document first.

        A signature over another document, or in another namespace, is refused here
        with the reason, so that a member learns at once that theirs would not count.
        """
        kept = {self._signer(s): s for s in self.signatures}
        for signature in signatures:
            blob = _compact(signature)
            verified = verify(self.message, blob, namespace=PROPOSAL_NAMESPACE)
            kept[verified.key.fingerprint] = blob
        return SignedProposal(document=self.document, signatures=tuple(kept.values()))

    @staticmethod
    def _signer(signature: str) -> str:
        try:
            return SshSig.parse(signature).key.fingerprint
        except SignatureInvalid:
            return signature  # kept as it is; the ledger says what is wrong with it

    def to_json(self) -> dict[str, Any]:
        return {"format": FILE_FORMAT, "proposal": self.document, "signatures": list(self.signatures)}

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, data: Any) -> SignedProposal:
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ProposalInvalid(
                f"A proposal file carries format {FILE_FORMAT!r}; got {str(data)[:80]!r}. Write one with "
                "`workbench budget propose`."
            )
        document, signatures = data.get("proposal"), data.get("signatures")
        if not isinstance(document, dict) or document.get("format") != PROPOSAL_NAMESPACE:
            raise ProposalInvalid(f"A proposal file holds a document of format {PROPOSAL_NAMESPACE!r}.")
        if not isinstance(signatures, list) or not all(isinstance(s, str) for s in signatures):
            raise ProposalInvalid("A proposal file's signatures are a list of strings (SSH signatures).")
        return cls(document=document, signatures=tuple(signatures))

    @classmethod
    def load(cls, path: Path | str) -> SignedProposal:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ProposalInvalid(f"A proposal file must be readable JSON; {path} is not ({err}).") from None
        return cls.from_json(data)

    def describe(self) -> str:
        """What signing this proposal means, in words (shown before a member signs)."""
        d = self.document
        return (
            f"Proposal {self.id[:12]} for site {d.get('site_id')} (ledger {str(d.get('ledger_id'))[:12]}): "
            f"{describe_action(d.get('action', {}))}. Reason: {d.get('reason')}. Proposed by "
            f"{d.get('proposed_by')} on {d.get('created')}; expires {d.get('expires')}. "
            f"{len(self.signatures)} signature(s) so far."
        )


def _compact(signature: str) -> str:
    """The base64 of an SSHSIG blob, one line."""
    import base64

    return base64.b64encode(dearmor(signature)).decode()
