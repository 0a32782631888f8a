"""Verification: recompute everything from the entries and trust nothing else.

For each entry in seq order: contiguous seq, hash of its content, link to the previous
hash, Ed25519 signature under the genesis key (or the key a ``rotate_key`` entry handed
over to: the old key signs that entry, the new key signs every entry after it); then replay it (caps, allocations,
reservations, mechanism counts) and check the ledger's rules held. At the end the
replayed state must equal the derived tables, and the totals the newest entries report
must equal the totals recomputed from the replay (every entry's, with ``deep=True``).
A checkpoint or the coordinator's receipts catch entries removed from the end.

>>> report = VerificationReport(ok=False, entries_checked=9, first_bad_seq=4,
...     problem="entry seq 4 was altered: its content no longer matches its hash.",
...     head_hash="ab" * 32, head_seq=9, site_id="s", public_key_fingerprint="ed25519:SHA256:00",
...     problems=("entry seq 4 was altered: its content no longer matches its hash.",), checks=())
>>> print(report)
FAILED at seq 4: entry seq 4 was altered: its content no longer matches its hash.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privacy_budgets.accounting import epsilon_of_counts
from privacy_budgets.authority import GOVERNED_KINDS, Governance
from privacy_budgets.checkpoints import checkpoint_verifies, load_checkpoint
from privacy_budgets.entries import ENTRY_KINDS, GENESIS_PREV, LedgerEntry
from privacy_budgets.errors import LedgerIntegrityError, PrivacyBudgetError
from privacy_budgets.keys import fingerprint, matches, rotation_message, verify_signature
from privacy_budgets.mechanisms import base_counts
from privacy_budgets.receipts import SpendReceipt, as_receipt
from privacy_budgets.state import DATASET_CAP, State, changes_of, totals_after

# Epsilons are recomputed on the verifier's machine; allow for a different BLAS.
RECOMPUTE_RTOL = 1e-6
# The ledger's own check allows this much rounding over a cap.
CAP_RTOL = 1e-9


@dataclass(frozen=True)
class VerificationReport:
    """The verdict on a ledger: ``ok``, or the first bad entry and what is wrong with it."""

    ok: bool
    entries_checked: int
    first_bad_seq: int | None
    problem: str | None
    head_hash: str | None
    head_seq: int
    site_id: str | None
    public_key_fingerprint: str | None
    problems: tuple[str, ...]
    checks: tuple[str, ...]

    def __str__(self) -> str:
        if self.ok:
            return (
                f"OK: {self.entries_checked} entries of site '{self.site_id}' verify "
                f"({', '.join(self.checks)}); head seq {self.head_seq} "
                f"{(self.head_hash or '')[:16]}..., key {self.public_key_fingerprint}."
            )
        where = f"at seq {self.first_bad_seq}" if self.first_bad_seq is not None else "(derived state)"
        return f"FAILED {where}: {self.problem}"

    def raise_if_failed(self) -> VerificationReport:
        """Raise LedgerIntegrityError naming the first problem; return self when ok."""
        if not self.ok:
            raise LedgerIntegrityError(
                f"A ledger must verify before it is trusted; {self}. Keep the file as it is (it is the "
                "evidence) and release nothing more from it; the ethics board compares it with the site's last "
                "checkpoint and receipts. Never replace it with an older copy: that would erase recorded spending."
            )
        return self

    def _repr_html_(self) -> str:
        colour, word = ("#1a7f37", "verified") if self.ok else ("#cf222e", "FAILED")
        items = "".join(f"<li>{html.escape(p)}</li>" for p in self.problems[:10])
        return (
            f'<div style="border-left:6px solid {colour};padding:4px 10px">'
            f'<b style="color:{colour}">Ledger {word}</b>: {html.escape(str(self))}'
            + (f"<ul>{items}</ul>" if items else "")
            + "</div>"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, ready for JSON."""
        data = dataclasses.asdict(self)
        data["problems"], data["checks"] = list(self.problems), list(self.checks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerificationReport:
        """Inverse of ``to_dict``."""
        return cls(**{**data, "problems": tuple(data["problems"]), "checks": tuple(data["checks"])})


def verify_entries(
    entries: Iterable[LedgerEntry],
    *,
    derived: State | None = None,
    checkpoint: Path | str | dict | None = None,
    receipts: Iterable[SpendReceipt | dict] = (),
    public_key: str | None = None,
    deep: bool = False,
) -> VerificationReport:
    """Verify ``entries`` (seq order), and ``derived`` tables, checkpoint and receipts."""
    verifier = _Verifier(deep=deep)
    for entry in entries:
        verifier.entry(entry)
    return verifier.finish(derived=derived, checkpoint=checkpoint, receipts=receipts, public_key=public_key)


class _Verifier:
    def __init__(self, *, deep: bool) -> None:
        self.deep = deep
        self.problems: list[tuple[int | None, str]] = []
        self.state = State()
        self.hashes: dict[int, str] = {}
        self.prev_hash = GENESIS_PREV
        self.expected_seq = 1
        self.public_key: str | None = None
        self.keys: list[str] = []  # every key the ledger was signed with, oldest first
        self.site_id: str | None = None
        self.reserved_datasets: set[str] = set()
        self.last_of_dataset: dict[str, LedgerEntry] = {}
        self.last_of_project: dict[tuple[str, str], LedgerEntry] = {}
        self.governance = Governance()
        self.checks = ["seq", "hash chain", "signatures", "rules", "board quorum"]

    def bad(self, seq: int | None, sentence: str) -> None:
        self.problems.append((seq, sentence))

    # --- one entry ------------------------------------------------------------------

    def entry(self, e: LedgerEntry) -> None:
        seq = e.seq
        if seq != self.expected_seq:
            self.bad(
                self.expected_seq,
                f"entry seq {self.expected_seq} is missing: the ledger jumps from seq "
                f"{self.expected_seq - 1} to {seq} (a row was deleted or renumbered).",
            )
        self.expected_seq = seq + 1
        if e.compute_hash() != e.entry_hash:
            self.bad(seq, f"entry seq {seq} was altered: its content no longer matches its hash.")
        elif e.prev_hash != self.prev_hash:
            self.bad(
                seq,
                f"entry seq {seq} does not follow the entry before it: its prev_hash differs "
                "from that entry's hash (a row was inserted, removed or reordered).",
            )
        if not self.hashes:
            self._genesis(e)
        if self.public_key and not verify_signature(
            public_key=self.public_key, signature=e.signature, message=_message(e)
        ):
            self.bad(
                seq,
                f"entry seq {seq} has a signature that does not verify under the ledger's key "
                f"{fingerprint(self.public_key)} (forged, or signed by another key).",
            )
        self.prev_hash = e.entry_hash
        self.hashes[seq] = e.entry_hash
        try:
            self._replay(e)
        except (PrivacyBudgetError, ValueError, KeyError, TypeError) as err:
            self.bad(seq, f"entry seq {seq} ({e.kind}) cannot be replayed: {err}")

    def _genesis(self, e: LedgerEntry) -> None:
        self.site_id = e.site_id
        self.governance.ledger_id = e.entry_hash
        try:
            self.public_key = str(e.details["public_key"])
            fingerprint(self.public_key)
            self.keys = [self.public_key]
        except (ValueError, KeyError, TypeError):
            self.public_key = None
        if e.kind != "genesis" or e.seq != 1 or self.public_key is None:
            self.bad(
                e.seq,
                f"entry seq {e.seq} should be the genesis entry holding the site's public key; "
                f"it is a '{e.kind}' entry without one.",
            )

    def _replay(self, e: LedgerEntry) -> None:
        seq, kind = e.seq, e.kind
        if kind not in ENTRY_KINDS:
            self.bad(seq, f"entry seq {seq} has unknown kind {kind!r}.")
            return
        if e.site_id != self.site_id:
            self.bad(seq, f"entry seq {seq} names site {e.site_id!r}, not {self.site_id!r}.")
        if kind == "genesis":
            if seq != 1:
                self.bad(seq, f"entry seq {seq} is a second genesis entry.")
            return
        limits = self.state.limits
        reservation = None
        if kind in ("commit", "abort"):
            reservation = self.state.reservations.get(e.reservation_id)
            if reservation is None or reservation.status != "open":
                state = "unknown" if reservation is None else reservation.status
                self.bad(seq, f"entry seq {seq} {kind}s reservation {e.reservation_id!r}, which is {state}, not open.")
                return
            if (reservation.dataset, reservation.project) != (e.dataset, e.project):
                self.bad(seq, f"entry seq {seq} {kind}s a reservation of another dataset/project.")
        if kind == "reserve":
            if e.reservation_id in self.state.reservations:
                self.bad(seq, f"entry seq {seq} reuses reservation id {e.reservation_id!r}.")
            for project, word in ((DATASET_CAP, "cap"), (e.project, "allocation")):
                if (e.dataset, project) not in limits:
                    self.bad(seq, f"entry seq {seq} reserves without a {word} in place.")
        if kind in GOVERNED_KINDS:
            for problem in self.governance.problems(e, limits=limits):
                self.bad(seq, f"entry seq {seq} ({kind}) breaks the board's rule: {problem}.")
            self.governance.record(e)
        if kind == "rotate_key":
            self._rotation(e)
        if kind == "set_cap":
            old = limits.get((e.dataset, DATASET_CAP))
            if old and old.delta != e.delta and e.dataset in self.reserved_datasets:
                self.bad(
                    seq,
                    f"entry seq {seq} changes the delta of dataset '{e.dataset}' after releases were reserved on it.",
                )
        self.state.apply(changes_of(e, reservation=reservation))
        if kind == "reserve":
            self.reserved_datasets.add(e.dataset)
        cap = limits.get((e.dataset, DATASET_CAP))
        if cap is not None and e.delta != cap.delta:
            self.bad(seq, f"entry seq {seq} reports delta {e.delta!r}, but the dataset's delta is {cap.delta!r}.")
        self.last_of_dataset[e.dataset] = e
        if e.project is not None:
            self.last_of_project[(e.dataset, e.project)] = e
        if self.deep:
            self._numbers(e)

    def _rotation(self, e: LedgerEntry) -> None:
        """The old key signed this entry (checked above); the new key must prove it is held."""
        details = e.details
        old, new = details.get("old_public_key"), details.get("new_public_key")
        if old != self.public_key:
            self.bad(
                e.seq, f"entry seq {e.seq} (rotate_key) hands over from a key that is not the ledger's current one."
            )
            return
        message = rotation_message(
            ledger_id=str(self.governance.ledger_id), old_public_key=old, new_public_key=str(new)
        )
        if not isinstance(new, str) or not verify_signature(
            public_key=new, signature=str(details.get("possession", "")), message=message
        ):
            self.bad(
                e.seq,
                f"entry seq {e.seq} (rotate_key) names a new key that did not sign its takeover of this ledger "
                "(a key nobody holds, or a proof copied from another ledger).",
            )
            return
        self.public_key = new
        self.keys.append(new)

    # --- epsilons -------------------------------------------------------------------

    def _numbers(self, e: LedgerEntry, *, fields: tuple[str, ...] | None = None) -> None:
        """Check the epsilons ``e`` reports against the replayed state after it."""
        cap = self.state.limits.get((e.dataset, DATASET_CAP))
        delta = None if cap is None else cap.delta
        expected = totals_after(self.state.multiset, dataset=e.dataset, project=e.project, delta=delta)
        expected["epsilon"] = None
        if e.kind in ("reserve", "commit") and delta is not None:
            expected["epsilon"] = epsilon_of_counts(counts=base_counts(e.event), delta=delta)
        for name in fields or tuple(expected):
            reported = getattr(e, name)
            if not _close(reported, expected[name]):
                self.bad(
                    e.seq,
                    f"entry seq {e.seq} reports {name} {reported!r}, but its entries compose to {expected[name]!r}.",
                )
        if e.kind == "reserve" and self.deep:
            self._within_limits(e, expected)

    def _within_limits(self, e: LedgerEntry, totals: dict[str, float | None]) -> None:
        limits = self.state.limits
        for key, name, word in (
            ((e.dataset, DATASET_CAP), "epsilon_after", "dataset cap"),
            ((e.dataset, e.project), "project_epsilon_after", "project allocation"),
        ):
            limit = limits.get(key)
            total = totals[name]
            if limit is not None and total is not None and total > limit.epsilon * (1 + CAP_RTOL):
                self.bad(
                    e.seq, f"entry seq {e.seq} reserved past the {word}: total {total:.6g} over {limit.epsilon:.6g}."
                )

    # --- the end --------------------------------------------------------------------

    def finish(self, *, derived, checkpoint, receipts, public_key) -> VerificationReport:
        head_seq = max(self.hashes, default=0)
        if not self.hashes:
            self.bad(1, "the ledger has no entries, not even its genesis entry.")
        if public_key is not None:
            self.checks.append("expected key")
            if self.public_key is None or not any(matches(expected=public_key, public_key_hex=k) for k in self.keys):
                found = fingerprint(self.public_key) if self.public_key else "no key"
                self.bad(
                    1,
                    f"the ledger is signed by {found}, not the expected key "
                    f"{public_key}: it was re-signed, or is another site's ledger.",
                )
        if not self.deep:
            self.checks.append("epsilons at head")
            for fields, last in (
                (("epsilon_after", "delta"), self.last_of_dataset.values()),
                (("project_epsilon_after",), self.last_of_project.values()),
            ):
                for e in last:
                    try:
                        self._numbers(e, fields=fields)
                    except (PrivacyBudgetError, ValueError, KeyError, TypeError) as err:
                        self.bad(e.seq, f"entry seq {e.seq}: its totals cannot be recomputed ({err}).")
        else:
            self.checks.append("every epsilon")
        if derived is not None:
            self.checks.append("derived tables")
            self._compare(derived)
        trusted_key = self.public_key
        if checkpoint is not None:
            self.checks.append("checkpoint")
            self._checkpoint(load_checkpoint(checkpoint), head_seq, trusted_key)
        n_receipts = 0
        for item in receipts:
            n_receipts += 1
            self._receipt(as_receipt(item), head_seq, trusted_key)
        if n_receipts:
            self.checks.append(f"{n_receipts} receipts")
        ordered = sorted(self.problems, key=lambda p: (p[0] is None, p[0] or 0))
        first = ordered[0] if ordered else (None, None)
        return VerificationReport(
            ok=not ordered,
            entries_checked=len(self.hashes),
            first_bad_seq=first[0],
            problem=first[1],
            head_hash=self.hashes.get(head_seq),
            head_seq=head_seq,
            site_id=self.site_id,
            public_key_fingerprint=fingerprint(self.public_key) if self.public_key else None,
            problems=tuple(p[1] for p in ordered),
            checks=tuple(self.checks),
        )

    def _compare(self, derived: State) -> None:
        for table, mine, theirs in (
            ("limits", self.state.limits, derived.limits),
            ("reservations", self.state.reservations, derived.reservations),
            ("counts", dict(self.state.counts), dict(derived.counts)),
        ):
            if mine == theirs:
                continue
            keys = sorted({k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}, key=str)
            k = keys[0]
            self.bad(
                None,
                f"the derived table '{table}' disagrees with the entries at {k!r}: "
                f"table has {theirs.get(k)!r}, entries give {mine.get(k)!r}.",
            )

    def _checkpoint(self, cp: dict, head_seq: int, key: str | None) -> None:
        seq = cp["seq"]
        if key is None or not any(checkpoint_verifies(cp, public_key=k) for k in self.keys):
            self.bad(seq, f"the checkpoint for seq {seq} is not signed by this ledger's key.")
        elif seq > head_seq:
            self.bad(
                head_seq + 1,
                f"the ledger ends at seq {head_seq}, but the checkpoint of "
                f"{cp['time']} records seq {seq}: entries {head_seq + 1} to "
                f"{seq} were removed.",
            )
        elif self.hashes.get(seq) != cp["head_hash"]:
            self.bad(seq, f"entry seq {seq} differs from the checkpoint of {cp['time']}.")

    def _receipt(self, r: SpendReceipt, head_seq: int, key: str | None) -> None:
        if r.site_id != self.site_id:
            self.bad(r.seq, f"the receipt for seq {r.seq} names site {r.site_id!r}, not {self.site_id!r}.")
        elif key is None or not any(r.verifies(k) for k in self.keys):
            self.bad(r.seq, f"the receipt for seq {r.seq} is not signed by this ledger's key.")
        elif r.seq > head_seq:
            self.bad(
                head_seq + 1,
                f"the ledger ends at seq {head_seq}, but the coordinator "
                f"holds a receipt for seq {r.seq}: newer entries were removed.",
            )
        elif self.hashes.get(r.seq) != r.entry_hash:
            self.bad(
                r.seq,
                f"entry seq {r.seq} differs from the receipt the coordinator holds "
                f"(hash {str(self.hashes.get(r.seq))[:12]}... vs {r.entry_hash[:12]}...).",
            )


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=RECOMPUTE_RTOL, abs_tol=1e-12)


def _message(e: LedgerEntry) -> bytes:
    try:
        return e.signed_message()
    except ValueError:
        return b""
