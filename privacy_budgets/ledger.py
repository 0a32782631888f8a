"""The site's privacy budget ledger: caps, allocations, reservations, spends, proofs.

One SQLite file per site holds an append-only, hash-chained list of entries signed with
the site's Ed25519 key. Every release is reserved first (checked against the dataset's
cap and the project's allocation, composed with PLD at the dataset's delta, inside one
write transaction), then committed with the mechanism that actually ran, or aborted.
A reservation counts as spent until it is resolved, even if its process died.
The neighbouring relation is add or remove one patient.

>>> import tempfile, pathlib
>>> from privacy_budgets.mechanisms import gaussian_event
>>> path = pathlib.Path(tempfile.mkdtemp()) / "hospital_01.ledger"
>>> with Ledger.open(path, site_id="hospital_01") as ledger:
...     _ = ledger.set_cap(dataset="heart", epsilon=3.0, delta=1e-5, actor="site-admin",
...                        reason="board decision 2026-11")
...     _ = ledger.allocate(dataset="heart", project="survival", epsilon=1.0,
...                         actor="ethics-board", reason="protocol 12")
...     r = ledger.reserve(dataset="heart", project="survival", actor="analyst",
...                        event=gaussian_event(noise_multiplier=8.0), purpose="count of patients")
...     _ = ledger.commit(r)
...     print(round(ledger.spent(dataset="heart"), 3), ledger.verify().ok)
0.434 True
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dp_accounting as dpa

from privacy_budgets import store, validation
from privacy_budgets.accounting import check_delta, check_epsilon, epsilon_of_counts
from privacy_budgets.authority import (
    GOVERNED_KINDS,
    Approval,
    AuthorityError,
    Governance,
    authority_details,
    check_before_writing,
)
from privacy_budgets.board import Board
from privacy_budgets.checkpoints import make_checkpoint
from privacy_budgets.entries import LEDGER_FORMAT, LedgerEntry, canonical
from privacy_budgets.errors import (
    BudgetExceeded,
    LedgerError,
    LedgerIntegrityError,
    environment_problem,
    fmt_epsilon,
)
from privacy_budgets.exports import is_sqlite
from privacy_budgets.keys import (
    default_key_path,
    fingerprint,
    load_or_create_key,
    public_hex,
    rotation_message,
    sign,
    verify_signature,
)
from privacy_budgets.mechanisms import (
    NEIGHBOURING_RELATION,
    base_counts,
    canonical_json,
    event_from_json,
    events_from_counts,
)
from privacy_budgets.proposals import DEFAULT_EXPIRY, SignedProposal, propose
from privacy_budgets.receipts import SpendReceipt, sign_receipt
from privacy_budgets.records import TIME_FORMAT, CostEstimate, Reservation, utc_now
from privacy_budgets.state import DATASET_CAP, Limit, changes_of, composed_last, totals_after
from privacy_budgets.verification import CAP_RTOL, VerificationReport, verify_entries

if TYPE_CHECKING:
    import pandas as pd

ACCOUNTING = "PLD (dp_accounting 0.6, value discretisation 1e-3, pessimistic); RDP cross-check"


class Ledger:
    """A site's privacy budget ledger. Open with :meth:`Ledger.open`; one per process."""

    def __init__(self, *, conn: sqlite3.Connection, path: Path, site_id: str, key: Any) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._key = key
        self.path = path
        self.site_id = site_id
        self.public_key = public_hex(key)
        self.public_key_fingerprint = fingerprint(self.public_key)

    # --- opening --------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        site_id: str,
        key_path: Path | str | None = None,
        create: bool = True,
    ) -> Ledger:
        """Open the site's ledger at ``path``, creating it (and its key) when allowed.

        The signing key lives at ``key_path`` (mode 0600). Default: the key a site keeps in
        its key folder, when there is one (``default_key_path``), else ``<path>.key``.
        """
        path = Path(path)
        site_id = validation.text("site_id", site_id)
        key_path = Path(key_path) if key_path is not None else default_key_path(path)
        try:
            return cls._open(path=path, site_id=site_id, key_path=key_path, create=create)
        except (OSError, sqlite3.OperationalError) as err:
            unavailable = environment_problem(err, path=path)
            if unavailable is None:
                raise
            raise unavailable from None

    @classmethod
    def _open(cls, *, path: Path, site_id: str, key_path: Path, create: bool) -> Ledger:
        found = _probe(path)
        if found != "ledger" and not create:
            raise LedgerError(
                f"No ledger at {path}: opening one needs an existing file when create=False. "
                "Check the path, or pass create=True to start a new ledger."
            )
        key = load_or_create_key(key_path=key_path, create=found != "ledger")
        if found == "absent":
            _create_owner_only(path)
        conn = None
        try:
            conn = store.connect(path)
            with store.write_transaction(conn):
                if not store.has_schema(conn):
                    if store.table_names(conn):
                        raise _not_a_ledger(path, "it is an SQLite database without ledger tables")
                    _create(conn, site_id=site_id, key=key)
            ledger = cls(conn=conn, path=path, site_id=site_id, key=key)
            ledger._check_identity(key_path)
            if not store.has_last_seq(conn):  # only once the file is known to be this site's ledger
                with store.write_transaction(conn):
                    store.upgrade(conn)
        except BaseException as err:
            if conn is not None:
                conn.close()
            if isinstance(err, sqlite3.DatabaseError) and environment_problem(err, path=path) is None:
                raise _not_a_ledger(path, f"SQLite says: {err}") from None
            raise
        return ledger

    def _check_identity(self, key_path: Path) -> None:
        meta = store.read_meta(self._conn)
        if meta.get("format") != LEDGER_FORMAT:
            raise _not_a_ledger(self.path, f"its format is {meta.get('format')!r}")
        if meta.get("site_id") != self.site_id:
            raise LedgerError(
                f"A ledger is opened by its own site only: {self.path} belongs to site "
                f"{meta.get('site_id')!r}, not {self.site_id!r}. Open it with that site_id."
            )
        genesis = store.entry_at(self._conn, 1)
        try:
            str(genesis.details["public_key"])
            recorded = store.public_keys(self._conn)[-1]  # the genesis key, or the last rotated in
            shown = fingerprint(recorded)
        except (AttributeError, KeyError, ValueError):
            raise LedgerIntegrityError(
                f"A ledger starts with a genesis entry holding the site's public key; the one "
                f"in {self.path} is missing or unreadable. Keep the file as it is (it is the evidence); "
                "never replace it with an older copy: that would erase recorded spending."
            ) from None
        if recorded != self.public_key:
            if self.public_key in store.public_keys(self._conn):
                raise LedgerError(
                    f"A ledger is written with its current key: the key at {key_path} "
                    f"({self.public_key_fingerprint}) was rotated out of {self.path}, which is now signed by "
                    f"{shown}. Pass key_path= to the current key (the site's key folder holds it as ledger.key)."
                )
            raise LedgerError(
                f"A ledger is written with the key it was created with: {self.path} was "
                f"created with {shown}, but {key_path} is {self.public_key_fingerprint}. "
                "Pass key_path= to the site's original key (after a key rotation: its current key)."
            )
        self._check_head(store.newest_entry(self._conn))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger(site_id={self.site_id!r}, path={str(self.path)!r})"

    # --- limits ---------------------------------------------------------------------

    def set_cap(self, *, dataset: str, epsilon: float, delta: float, actor: str, reason: str) -> LedgerEntry:
        """Set the dataset's lifetime cap; all its epsilons are reported at ``delta``.

        A cap below what is already spent is recorded (the dataset is then over cap);
        changing delta once releases were reserved is refused. Once the ledger has a
        board, only lowering a cap (same delta) is a one-person call: anything else is a
        proposal the board signs (``apply``).
        """
        with self._write() as conn:
            return self._set_cap(
                conn,
                dataset=dataset,
                epsilon=epsilon,
                delta=delta,
                actor=validation.text("actor", actor),
                reason=reason,
            )

    def _set_cap(self, conn, *, dataset, epsilon, delta, actor, reason, authority=None, time=None) -> LedgerEntry:
        dataset = validation.text("dataset", dataset)
        epsilon = check_epsilon(epsilon, name="cap epsilon")
        delta = check_delta(delta)
        old = store.limits_of(conn, dataset=dataset).get(DATASET_CAP)
        if old is not None and old.delta != delta and store.has_reserves(conn, dataset=dataset):
            raise LedgerError(
                f"A dataset's delta is fixed once releases are reserved on it: dataset "
                f"'{dataset}' has delta {old.delta:g}, the new cap asks {delta:g}. Its "
                "epsilons already reported would change meaning. Keep delta "
                f"{old.delta:g} and change only epsilon."
            )
        spent = epsilon_of_counts(counts=store.multiset(conn, dataset=dataset), delta=delta)
        details = {
            "epsilon": epsilon,
            "previous_epsilon": None if old is None else old.epsilon,
            "spent_when_set": spent,
            "below_spent": spent > epsilon,
        }
        if authority is not None:
            details["authority"] = authority
        return self._append(
            conn,
            kind="set_cap",
            dataset=dataset,
            actor=actor,
            purpose=validation.text("reason", reason),
            details=details,
            delta=delta,
            time=time,
        )

    def allocate(self, *, dataset: str, project: str, epsilon: float, actor: str, reason: str) -> LedgerEntry:
        """Set a project's allocation on a dataset (the ethics board's decision).

        Once the ledger has a board, only lowering an allocation is a one-person call:
        a first allocation or a raise is a proposal the board signs (``apply``).
        """
        with self._write() as conn:
            return self._allocate(
                conn,
                dataset=dataset,
                project=project,
                epsilon=epsilon,
                actor=validation.text("actor", actor),
                reason=reason,
            )

    def _allocate(self, conn, *, dataset, project, epsilon, actor, reason, authority=None, time=None) -> LedgerEntry:
        dataset, project = validation.text("dataset", dataset), validation.project(project)
        epsilon = check_epsilon(epsilon, name="allocation epsilon")
        limits = store.limits_of(conn, dataset=dataset)
        if DATASET_CAP not in limits:
            raise LedgerError(
                f"An allocation is read at its dataset's delta, so the dataset needs a cap "
                f"first: dataset '{dataset}' has none. Fix: set_cap(dataset='{dataset}', ...)."
            )
        old = limits.get(project)
        spent = epsilon_of_counts(
            counts=store.multiset(conn, dataset=dataset, project=project),
            delta=limits[DATASET_CAP].delta,
        )
        details = {
            "epsilon": epsilon,
            "previous_epsilon": None if old is None else old.epsilon,
            "spent_when_set": spent,
            "below_spent": spent > epsilon,
        }
        if authority is not None:
            details["authority"] = authority
        return self._append(
            conn,
            kind="allocate",
            dataset=dataset,
            project=project,
            actor=actor,
            purpose=validation.text("reason", reason),
            details=details,
            time=time,
        )

    # --- the board and its decisions ---------------------------------------------------

    @property
    def ledger_id(self) -> str:
        """The hash of the genesis entry: what a proposal names this ledger by."""
        with self._read() as conn:
            return store.entry_at(conn, 1).entry_hash

    def board(self) -> Board | None:
        """The board as the newest ``board`` entry left it; None in a legacy ledger."""
        with self._read() as conn:
            return self._governance(conn).board

    def approval(self, *, dataset: str, project: str) -> Approval | None:
        """The researchers approved for a project on a dataset (None: no approval)."""
        with self._read() as conn:
            return self._governance(conn).approvals.get((dataset, project))

    def establish_board(self, *, board: Board, actor: str, reason: str) -> LedgerEntry:
        """Record the ledger's first board (once; at ``node init``, or to migrate a
        legacy ledger). From then on caps, allocations, approvals and the board itself
        change only by proposals a quorum of members signs."""
        with self._write() as conn:
            governance = self._governance(conn)
            if governance.board is not None:
                raise AuthorityError(
                    f"Refused: a ledger's first board is recorded once; this ledger has one since seq "
                    f"{governance.board_seq} ({governance.board.describe()}). Nothing was written. Fix: change it "
                    "with a set_board proposal signed by a quorum (`workbench budget propose board`)."
                )
            return self._set_board(
                conn, board=board, actor=validation.text("actor", actor), reason=reason, previous=None
            )

    def _set_board(self, conn, *, board: Board, actor, reason, previous: Board | None, authority=None, time=None):
        details: dict[str, Any] = {
            **board.to_json(),
            "previous": None if previous is None else previous.to_json(),
        }
        if authority is not None:
            details["authority"] = authority
        return self._append(
            conn,
            kind="board",
            actor=actor,
            purpose=validation.text("reason", reason),
            details=details,
            time=time,
        )

    def approve(
        self,
        *,
        dataset: str,
        project: str,
        purpose: str,
        researchers: list[dict[str, str]],
        actor: str,
        reason: str,
    ) -> LedgerEntry:
        """Record the researchers approved for a project, one-person: in a legacy ledger,
        or (with a board) to withdraw researchers from an approval. Approving anyone
        new in a ledger with a board is a proposal (``apply``)."""
        from privacy_budgets.proposals import check_action

        action = check_action(
            {"kind": "approve", "dataset": dataset, "project": project, "purpose": purpose, "researchers": researchers}
        )
        with self._write() as conn:
            return self._approve(conn, action=action, actor=validation.text("actor", actor), reason=reason)

    def _approve(self, conn, *, action, actor, reason, authority=None, time=None) -> LedgerEntry:
        details: dict[str, Any] = {"purpose": action["purpose"], "researchers": action["researchers"]}
        if authority is not None:
            details["authority"] = authority
        return self._append(
            conn,
            kind="approve",
            dataset=validation.text("dataset", action["dataset"]),
            project=validation.project(action["project"]),
            actor=actor,
            purpose=validation.text("reason", reason),
            details=details,
            time=time,
        )

    def propose(
        self,
        *,
        action: dict[str, Any],
        reason: str,
        proposed_by: str,
        expires_in: timedelta = DEFAULT_EXPIRY,
    ) -> SignedProposal:
        """A proposal naming this ledger, with no signatures yet (see ``proposals``)."""
        return propose(
            site_id=self.site_id,
            ledger_id=self.ledger_id,
            action=action,
            reason=reason,
            proposed_by=proposed_by,
            expires_in=expires_in,
        )

    def apply(self, proposal: SignedProposal) -> LedgerEntry:
        """Record a signed proposal as one entry holding its signatures.

        Refused (AuthorityError, nothing written) unless it names this ledger, has not
        expired, was never applied, and carries signatures of ``quorum`` distinct
        current members (in a ledger without a board: at least one, all valid).
        """
        now = datetime.now(UTC)
        time = now.strftime(TIME_FORMAT)
        with self._write() as conn:
            governance = self._governance(conn)
            action, result = check_before_writing(governance, proposal, site_id=self.site_id, now=now)
            authority = authority_details(proposal, result)
            reason = proposal.document["reason"]
            common = dict(actor=result.actor(), reason=reason, authority=authority, time=time)
            kind = action["kind"]
            if kind == "set_cap":
                return self._set_cap(
                    conn, dataset=action["dataset"], epsilon=action["epsilon"], delta=action["delta"], **common
                )
            if kind == "allocate":
                return self._allocate(
                    conn, dataset=action["dataset"], project=action["project"], epsilon=action["epsilon"], **common
                )
            if kind == "approve":
                return self._approve(conn, action=action, **common)
            if kind == "rotate_key":
                raise AuthorityError(
                    "Refused: a key rotation is applied with the new key at hand, which apply() does not have. "
                    "Nothing was written. Fix: `workbench budget rotate-key --proposal PROPOSAL --ledger PATH` "
                    "(or Ledger.rotate_key(new_key_path=..., proposal=...))."
                )
            return self._set_board(conn, board=Board.from_json(action), previous=governance.board, **common)

    def rotate_key(
        self,
        *,
        new_key_path: Path | str,
        proposal: SignedProposal | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> LedgerEntry:
        """Sign the ledger with a new key from now on (made at ``new_key_path``, 0600, when absent).

        One ``rotate_key`` entry, signed by the old key (the last it signs), names the new
        key, and holds the new key's signature over (ledger, old key, new key): the old
        key signs the new one, and the new key's holder shows they have it. With a board
        it needs ``proposal`` (action ``rotate_key`` naming the new key) signed by a quorum;
        in a ledger without a board, ``actor`` and ``reason`` suffice. The coordinator
        learns the new key from the next receipts and audit heads, which the rotation
        entry links to the old key.
        """
        new_key = load_or_create_key(key_path=Path(new_key_path), create=True)
        new_public = public_hex(new_key)
        now = datetime.now(UTC)
        with self._write() as conn:
            authority = None
            if proposal is not None:
                action, result = check_before_writing(self._governance(conn), proposal, site_id=self.site_id, now=now)
                if action["kind"] != "rotate_key" or action["new_public_key"] != new_public:
                    raise AuthorityError(
                        f"Refused: this proposal does not rotate to the key at {new_key_path} "
                        f"({fingerprint(new_public)}); it proposes: {proposal.describe()}. Nothing was written."
                    )
                authority = authority_details(proposal, result)
                actor, reason = result.actor(), proposal.document["reason"]
            if actor is None or reason is None:
                raise LedgerError("A key rotation without a proposal names its actor= and reason=.")
            if new_public == self.public_key:
                raise LedgerError(f"A key rotation names a new key; {new_key_path} is the current key.")
            ledger_id = store.entry_at(conn, 1).entry_hash
            details: dict[str, Any] = {
                "old_public_key": self.public_key,
                "new_public_key": new_public,
                "new_fingerprint": fingerprint(new_public),
                "possession": sign(
                    new_key,
                    rotation_message(ledger_id=ledger_id, old_public_key=self.public_key, new_public_key=new_public),
                ),
            }
            if authority is not None:
                details["authority"] = authority
            entry = self._append(
                conn,
                kind="rotate_key",
                actor=validation.text("actor", actor),
                purpose=validation.text("reason", reason),
                details=details,
                time=now.strftime(TIME_FORMAT),
            )
        self._key = new_key
        self.public_key = new_public
        self.public_key_fingerprint = fingerprint(new_public)
        return entry

    def _governance(self, conn: sqlite3.Connection) -> Governance:
        return Governance.replay(store.governed_entries(conn, kinds=GOVERNED_KINDS))

    # --- spending -------------------------------------------------------------------

    def reserve(
        self,
        *,
        dataset: str,
        project: str,
        event: dpa.DpEvent,
        actor: str,
        purpose: str,
        run_id: str | None = None,
        round: int | None = None,
        query_id: str | None = None,
    ) -> Reservation:
        """Hold ``event`` against the cap and the allocation, or raise BudgetExceeded.

        Composes committed + open reservations + this event for the dataset and for the
        project, atomically with appending the 'reserve' entry.
        """
        dataset, project = validation.text("dataset", dataset), validation.project(project)
        mechanism = canonical_json(event)
        fields = dict(
            kind="reserve",
            dataset=dataset,
            project=project,
            actor=validation.text("actor", actor),
            purpose=validation.text("purpose", purpose),
            run_id=validation.optional("run_id", run_id),
            round=validation.round_number(round),
            query_id=validation.optional("query_id", query_id),
            mechanism=mechanism,
            reservation_id=uuid.uuid4().hex,
        )
        with self._write() as conn:
            limits = store.limits_of(conn, dataset=dataset)
            cap, allocation = limits.get(DATASET_CAP), limits.get(project)
            for limit, kind in ((cap, "dataset cap"), (allocation, "project allocation")):
                if limit is None:
                    raise _missing_limit(kind, dataset, project, event, cap)
            entry = self._append(conn, **fields, check_limits=(cap, allocation))
        return self._reservation(entry)

    def commit(self, reservation: Reservation | str, *, event: dpa.DpEvent | None = None) -> LedgerEntry:
        """Record that the release ran, with the mechanism that actually ran.

        ``event`` defaults to the reserved one; it may cost less, never more.
        """
        rid = _reservation_id(reservation)
        with self._write() as conn:
            row, reserve_entry = self._open_reservation(conn, rid, action="commit")
            mechanism = row.mechanism if event is None else canonical_json(event)
            delta = store.limits_of(conn, dataset=row.dataset)[DATASET_CAP].delta
            if mechanism != row.mechanism:
                before = self._totals(conn, row.dataset, row.project, delta)
                self._check_not_larger(row, mechanism, delta)
            else:
                before = None
            return self._append(
                conn,
                kind="commit",
                dataset=row.dataset,
                project=row.project,
                actor=reserve_entry.actor,
                purpose=reserve_entry.purpose,
                run_id=reserve_entry.run_id,
                round=reserve_entry.round,
                query_id=reserve_entry.query_id,
                mechanism=mechanism,
                reservation_id=rid,
                reservation=row,
                not_above=before,
            )

    def abort(self, reservation: Reservation | str, *, reason: str, actor: str | None = None) -> LedgerEntry:
        """Record that nothing was released; the reservation stops counting."""
        rid = _reservation_id(reservation)
        reason = validation.text("reason", reason)
        with self._write() as conn:
            row, reserve_entry = self._open_reservation(conn, rid, action="abort")
            return self._append(
                conn,
                kind="abort",
                dataset=row.dataset,
                project=row.project,
                actor=reserve_entry.actor if actor is None else validation.text("actor", actor),
                purpose=reason,
                run_id=reserve_entry.run_id,
                round=reserve_entry.round,
                query_id=reserve_entry.query_id,
                reservation_id=rid,
                reservation=row,
            )

    def record_uncovered(
        self,
        *,
        dataset: str,
        project: str,
        what: str,
        actor: str,
        purpose: str,
        run_id: str | None = None,
        round: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record a release no mechanism covers (no epsilon; listed in the statement)."""
        extra = dict(details or {})
        extra["what"] = validation.text("what", what)
        try:
            canonical(extra)
        except (TypeError, ValueError) as err:
            raise LedgerError(
                f"details must be plain JSON (str, numbers, lists, dicts) so it can be hashed; "
                f"got {str(details)[:120]!r} ({err}). Convert values to str or float."
            ) from None
        with self._write() as conn:
            return self._append(
                conn,
                kind="uncovered",
                dataset=validation.text("dataset", dataset),
                project=validation.project(project),
                actor=validation.text("actor", actor),
                purpose=validation.text("purpose", purpose),
                run_id=validation.optional("run_id", run_id),
                round=validation.round_number(round),
                details=extra,
            )

    def open_reservations(self) -> list[Reservation]:
        """Reservations neither committed nor aborted, oldest first (see ``age_s``)."""
        with self._read() as conn:
            rows = store.open_reservation_rows(conn)
            return [self._reservation(store.entry_at(conn, row.seq)) for row in rows]

    # --- reading --------------------------------------------------------------------

    def spent(
        self,
        *,
        dataset: str,
        project: str | None = None,
        include_reserved: bool = True,
        accountant: Literal["pld", "rdp"] = "pld",
    ) -> float:
        """Epsilon composed so far at the dataset's delta (0.0 for a dataset without a cap)."""
        with self._read() as conn:
            cap = store.limits_of(conn, dataset=dataset).get(DATASET_CAP)
            counts = store.multiset(conn, dataset=dataset, project=project, include_reserved=include_reserved)
        if cap is None:
            return 0.0
        return epsilon_of_counts(counts=counts, delta=cap.delta, accountant=accountant)

    def remaining(self, *, dataset: str, project: str | None = None) -> float:
        """Cap (or allocation, with ``project``) minus what is spent or reserved.

        Negative when a limit was lowered below what was spent; 0.0 without a limit
        (nothing may be released then).
        """
        with self._read() as conn:
            limit = store.limits_of(conn, dataset=dataset).get(DATASET_CAP if project is None else project)
        if limit is None:
            return 0.0
        return limit.epsilon - self.spent(dataset=dataset, project=project)

    def cost(self, *, dataset: str, project: str, event: dpa.DpEvent) -> CostEstimate:
        """What ``event`` would cost and whether it fits, without spending anything."""
        mechanism = canonical_json(event)
        with self._read() as conn:
            limits = store.limits_of(conn, dataset=dataset)
            cap, allocation = limits.get(DATASET_CAP), limits.get(project)
            if cap is None:
                raise _missing_limit("dataset cap", dataset, project, event, None)
            added = base_counts(event)
            ds = composed_last(store.multiset(conn, dataset=dataset), added)
            pr = composed_last(store.multiset(conn, dataset=dataset, project=project), added)
        delta = cap.delta
        alone = epsilon_of_counts(counts=added, delta=delta)
        ds_total = epsilon_of_counts(counts=ds, delta=delta)
        pr_total = epsilon_of_counts(counts=pr, delta=delta)
        ds_left = cap.epsilon - ds_total
        pr_left = (allocation.epsilon if allocation else 0.0) - pr_total
        if allocation is None:
            binding, fits = f"project '{project}' has no allocation (fail closed)", False
        else:
            fits = _fits(ds_total, cap) and _fits(pr_total, allocation)
            binding = (
                f"dataset cap {fmt_epsilon(cap.epsilon)} (remaining after {fmt_epsilon(ds_left)})"
                if ds_left / cap.epsilon <= pr_left / allocation.epsilon
                else f"project allocation {fmt_epsilon(allocation.epsilon)} (remaining after {fmt_epsilon(pr_left)})"
            )
        return CostEstimate(
            dataset=dataset,
            project=project,
            mechanism=mechanism,
            epsilon=alone,
            delta=delta,
            dataset_total_after=ds_total,
            project_total_after=pr_total,
            dataset_remaining_after=ds_left,
            project_remaining_after=pr_left,
            fits=fits,
            binding=binding,
        )

    def cap(self, *, dataset: str) -> float | None:
        """The dataset's lifetime cap on epsilon, or None when it has none."""
        with self._read() as conn:
            limit = store.limits_of(conn, dataset=dataset).get(DATASET_CAP)
        return None if limit is None else limit.epsilon

    def allocation(self, *, dataset: str, project: str) -> float | None:
        """The project's allocation on the dataset, or None when it has none."""
        with self._read() as conn:
            limit = store.limits_of(conn, dataset=dataset).get(validation.project(project))
        return None if limit is None else limit.epsilon

    def dataset_delta(self, *, dataset: str) -> float:
        """The delta all of the dataset's epsilons are stated at (set with its cap)."""
        with self._read() as conn:
            limit = store.limits_of(conn, dataset=dataset).get(DATASET_CAP)
        if limit is None:
            raise LedgerError(
                f"A dataset's delta is set with its cap; dataset '{dataset}' has no cap yet. "
                f"Fix: set_cap(dataset='{dataset}', epsilon=..., delta=..., ...)."
            )
        return limit.delta

    def events(self, *, dataset: str, project: str | None = None, include_reserved: bool = True) -> list[dpa.DpEvent]:
        """What the dataset (or project) has composed so far, as DpEvents.

        One self-composed event per base mechanism, in the ledger's order (each where it
        last appeared): pass them as ``prior_events`` to calibration and it does the
        ledger's exact arithmetic.
        """
        with self._read() as conn:
            counts = store.multiset(conn, dataset=dataset, project=project, include_reserved=include_reserved)
        return events_from_counts(counts)

    def entries(
        self, *, dataset: str | None = None, query_id: str | None = None, run_id: str | None = None
    ) -> list[LedgerEntry]:
        """Every entry (or one dataset's, one release identity's, one run's), in seq order."""
        with self._read() as conn:
            return list(store.iter_entries(conn, dataset=dataset, query_id=query_id, run_id=run_id))

    def status(self) -> pd.DataFrame:
        """One row per dataset ("(all projects)") and per project: limits, spent, remaining."""
        from privacy_budgets.views import status_frame

        with self._read() as conn:
            return status_frame(conn)

    def history(self, *, dataset: str | None = None) -> pd.DataFrame:
        """Every entry as a row, with its mechanism JSON and privacy statement."""
        from privacy_budgets.views import history_frame

        return history_frame(self.entries(dataset=dataset))

    # --- proofs ---------------------------------------------------------------------

    def verify(
        self,
        *,
        checkpoint: Path | str | dict | None = None,
        receipts: Iterable[SpendReceipt | dict] = (),
        public_key: str | None = None,
        deep: bool = False,
    ) -> VerificationReport:
        """Recompute the chain, signatures, rules, derived tables and totals from entries.

        ``deep`` recomputes every entry's epsilons (slower); by default the totals the
        newest entries report are recomputed.
        """
        with self._read() as conn:
            return verify_entries(
                store.iter_entries(conn),
                derived=store.read_derived(conn),
                checkpoint=checkpoint,
                receipts=receipts,
                public_key=public_key,
                deep=deep,
            )

    @staticmethod
    def verify_file(
        path: Path | str,
        *,
        public_key: str | None = None,
        checkpoint: Path | str | dict | None = None,
        receipts: Iterable[SpendReceipt | dict] = (),
        deep: bool = False,
    ) -> VerificationReport:
        """Verify a ledger file or an export read-only, without the site's private key."""
        from privacy_budgets.exports import verify_path

        return verify_path(Path(path), public_key=public_key, checkpoint=checkpoint, receipts=receipts, deep=deep)

    def head(self) -> tuple[int, str]:
        """(seq, entry_hash) of the newest entry."""
        with self._read() as conn:
            return store.head(conn)

    def hash_at(self, seq: int) -> str | None:
        """The entry_hash at ``seq`` (None: no entry there)."""
        with self._read() as conn:
            entry = store.entry_at(conn, seq)
        return None if entry is None else entry.entry_hash

    def checkpoint(self, *, out: Path | str | None = None) -> dict[str, Any]:
        """A signed statement of the current head; written as JSON when ``out`` is given."""
        with self._read() as conn:
            seq, head_hash = store.head(conn)
        cp = make_checkpoint(
            self._key,
            site_id=self.site_id,
            seq=seq,
            head_hash=head_hash,
            public_key=self.public_key,
        )
        if out is not None:
            Path(out).write_text(json.dumps(cp, indent=2) + "\n")
        return cp

    def receipt(self, entry: LedgerEntry, *, dataset_total: bool = True) -> SpendReceipt:
        """The signed receipt of a commit or an uncovered release, to send with it.

        ``dataset_total=False`` leaves the dataset's total (every project's spending)
        out of the receipt, as a site does for a receipt that goes to a requester: it
        then speaks of the release and of its own project only (reconciliation skips
        what a receipt does not state).
        """
        if entry.kind not in ("commit", "uncovered"):
            raise LedgerError(
                f"A receipt proves a release (a commit or an uncovered release); entry seq "
                f"{entry.seq} is a '{entry.kind}' entry. Pass the entry that commit() or "
                "record_uncovered() returned."
            )
        with self._read() as conn:
            stored = store.entry_at(conn, entry.seq)
            head_seq, head_hash = store.head(conn)
        if stored != entry:
            raise LedgerError(
                f"A receipt is signed only for an entry of this ledger; entry seq {entry.seq} "
                f"({entry.entry_hash[:12]}...) is not the one stored here. Pass the entry that "
                "commit() or record_uncovered() returned."
            )
        return sign_receipt(
            self._key,
            dict(
                site_id=entry.site_id,
                dataset=entry.dataset,
                project=entry.project,
                seq=entry.seq,
                kind=entry.kind,
                entry_hash=entry.entry_hash,
                reservation_id=entry.reservation_id,
                mechanism=entry.mechanism,
                epsilon=entry.epsilon,
                project_epsilon_after=entry.project_epsilon_after,
                dataset_epsilon_after=entry.epsilon_after if dataset_total else None,
                delta=entry.delta,
                run_id=entry.run_id,
                round=entry.round,
                query_id=entry.query_id,
                time=entry.time,
                public_key=self.public_key,
                # The whole ledger's head: its seq says how many entries the site's ledger holds (all
                # projects together, as the receipt's own seq already does), nothing of what they are.
                head_seq=head_seq,
                head_hash=head_hash,
            ),
        )

    def export(self, *, out: Path | str | None = None) -> dict[str, Any]:
        """Every entry and the public key as a dict (and a JSON file when ``out`` given)."""
        from privacy_budgets.exports import export_dict

        data = export_dict(site_id=self.site_id, public_key=self.public_key, entries=self.entries())
        if out is not None:
            Path(out).write_text(json.dumps(data) + "\n")
        return data

    # --- internals ------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, store.write_transaction(self._conn) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, store.read_transaction(self._conn) as conn:
            yield conn

    def _append(
        self,
        conn: sqlite3.Connection,
        *,
        details: dict[str, Any] | None = None,
        reservation: store.ReservationRow | None = None,
        check_limits: tuple[Limit, Limit] | None = None,
        not_above: dict[str, float | None] | None = None,
        time: str | None = None,
        **fields: Any,
    ) -> LedgerEntry:
        """Append one entry and its derived state; compute the totals it reports.

        The derived tables are updated first, so the totals (and the limit check of a
        reservation) are read from the state this entry leaves; any refusal raises and
        rolls the whole transaction back.
        """
        head = store.newest_entry(conn)
        self._check_head(head)
        draft = LedgerEntry.unsigned(
            seq=head.seq + 1,
            time=time or utc_now(),
            site_id=self.site_id,
            prev_hash=head.entry_hash,
            details_json=canonical(details or {}),
            **fields,
        )
        if draft.kind in GOVERNED_KINDS:
            self._check_authority(conn, draft)
        store.apply_changes(conn, changes_of(draft, reservation=reservation))
        cap = None
        if draft.dataset is not None:
            cap = store.limits_of(conn, dataset=draft.dataset).get(DATASET_CAP)
        delta = None if cap is None else cap.delta
        totals = self._totals(conn, draft.dataset, draft.project, delta)
        alone = None
        if draft.mechanism is not None:
            alone = epsilon_of_counts(counts=base_counts(draft.event), delta=delta)
        if check_limits is not None:
            self._check_limits(conn, draft, check_limits, totals, alone)
        if not_above is not None:
            self._check_totals_not_raised(draft, not_above, totals)
        entry = dataclasses.replace(draft, epsilon=alone, **totals)
        entry = dataclasses.replace(entry, entry_hash=entry.compute_hash())
        entry = dataclasses.replace(entry, signature=sign(self._key, entry.signed_message()))
        store.insert_entry(conn, entry)
        return entry

    def _check_authority(self, conn: sqlite3.Connection, draft: LedgerEntry) -> None:
        """The board's rules (``authority``), as verification will apply them to this entry."""
        before = {}
        if draft.dataset is not None:
            before = {(draft.dataset, p): limit for p, limit in store.limits_of(conn, dataset=draft.dataset).items()}
        problems = self._governance(conn).problems(draft, limits=before)
        if problems:
            raise AuthorityError(
                f"Refused: {'; '.join(problems)}. Nothing was written. Fix: propose it "
                f"(`workbench budget propose ... --ledger {self.path}`, or Ledger.propose), have members sign it "
                "(`workbench budget sign PROPOSAL --key KEY`), then apply it (`workbench budget apply`, or "
                "Ledger.apply)."
            )

    def _check_head(self, head: LedgerEntry | None) -> None:
        """Refuse to extend a chain whose newest entry does not prove itself."""
        signer = self.public_key
        if head is not None and head.kind == "rotate_key":  # the last entry the old key signs
            signer = str(head.details.get("old_public_key", ""))
        if (
            head is not None
            and head.compute_hash() == head.entry_hash
            and verify_signature(public_key=signer, signature=head.signature, message=_signed(head))
        ):
            return
        where = (
            "has no entries"
            if head is None
            else (f"ends with entry seq {head.seq}, which does not match its hash or signature")
        )
        raise LedgerIntegrityError(
            f"A new entry only extends a chain that verifies; {self.path} {where}. Nothing was "
            f"written. Run `workbench budget verify --ledger {self.path}` to find the first bad "
            "entry; keep the file as it is (it is the evidence). Never replace it with an older copy: that "
            "would erase recorded spending."
        )

    def _totals(self, conn, dataset, project, delta) -> dict[str, float | None]:
        return totals_after(functools.partial(store.multiset, conn), dataset=dataset, project=project, delta=delta)

    def _check_limits(self, conn, draft, limits, totals, alone) -> None:
        cap, allocation = limits
        for limit, total_name, kind in (
            (cap, "epsilon_after", "dataset cap"),
            (allocation, "project_epsilon_after", "project allocation"),
        ):
            total = totals[total_name]
            if _fits(total, limit):
                continue
            before = store.multiset(
                conn,
                dataset=draft.dataset,
                project=None if kind == "dataset cap" else draft.project,
            ) - base_counts(draft.event)
            spent_before = epsilon_of_counts(counts=before, delta=cap.delta)
            raise BudgetExceeded(
                requested_epsilon=alone,
                total_after=total,
                remaining=limit.epsilon - spent_before,
                cap=limit.epsilon,
                delta=cap.delta,
                limit_kind=kind,
                dataset=draft.dataset,
                project=draft.project,
                set_by=limit.actor,
                set_on=limit.time,
            )

    def _check_not_larger(self, row: store.ReservationRow, mechanism: str, delta: float) -> None:
        reserved, actual = (
            epsilon_of_counts(counts=base_counts(event_from_json(text)), delta=delta)
            for text in (row.mechanism, mechanism)
        )
        if actual > reserved * (1 + CAP_RTOL):
            raise LedgerError(_larger_message(row.id, reserved, actual))

    def _check_totals_not_raised(self, draft, before, after) -> None:
        for name in ("epsilon_after", "project_epsilon_after"):
            if after[name] > before[name] * (1 + CAP_RTOL):
                raise LedgerError(_larger_message(draft.reservation_id, before[name], after[name], total=True))

    def _open_reservation(self, conn, rid: str, *, action: str):
        row = store.reservation_row(conn, rid)
        if row is None:
            raise LedgerError(
                f"Only a reservation of this ledger can be {action}ed; {rid!r} is unknown here. "
                "Pass the Reservation that reserve() returned (or its id)."
            )
        if row.status != "open":
            raise LedgerError(
                f"A reservation is resolved once: {rid!r} was already {row.status} at seq "
                f"{row.resolved_seq}. Nothing to {action}."
            )
        return row, store.entry_at(conn, row.seq)

    def _reservation(self, entry: LedgerEntry) -> Reservation:
        return Reservation(
            id=entry.reservation_id,
            seq=entry.seq,
            site_id=entry.site_id,
            dataset=entry.dataset,
            project=entry.project,
            mechanism=entry.mechanism,
            epsilon=entry.epsilon,
            delta=entry.delta,
            dataset_epsilon_after=entry.epsilon_after,
            project_epsilon_after=entry.project_epsilon_after,
            actor=entry.actor,
            purpose=entry.purpose,
            run_id=entry.run_id,
            round=entry.round,
            query_id=entry.query_id,
            time=entry.time,
        )


# --- helpers ------------------------------------------------------------------------


def _create(conn: sqlite3.Connection, *, site_id: str, key: Any) -> None:
    public = public_hex(key)
    store.create_schema(conn, site_id=site_id, public_key=public)
    genesis = LedgerEntry.unsigned(
        seq=1,
        time=utc_now(),
        kind="genesis",
        site_id=site_id,
        actor="ledger",
        purpose="ledger created",
        prev_hash="0" * 64,
        details_json=canonical(
            {
                "format": LEDGER_FORMAT,
                "public_key": public,
                "fingerprint": fingerprint(public),
                "unit_of_privacy": "one patient (one row per patient)",
                "neighbouring_relation": NEIGHBOURING_RELATION,
                "accounting": ACCOUNTING,
            }
        ),
    )
    genesis = dataclasses.replace(genesis, signature=sign(key, genesis.signed_message()))
    store.insert_entry(conn, genesis)


def _reservation_id(reservation: Reservation | str) -> str:
    if isinstance(reservation, Reservation):
        return reservation.id
    return validation.text("reservation", reservation)


def _signed(entry: LedgerEntry) -> bytes:
    try:
        return entry.signed_message()
    except ValueError:  # an entry_hash that is not hex
        return b""


def _fits(total: float, limit: Limit) -> bool:
    return total <= limit.epsilon * (1 + CAP_RTOL)


def _larger_message(rid: str, reserved: float, actual: float, *, total: bool = False) -> str:
    return (
        f"A commit may charge less than its reservation, never more: reservation {rid!r} "
        f"held epsilon {reserved:.6g}{' composed' if total else ''}, the mechanism that ran "
        f"gives {actual:.6g}. The reservation stays open and counts as spent. Fix: commit "
        "the mechanism that ran, at most the one reserved; if more ran, commit this "
        "reservation, then reserve and commit the extra as a new release."
    )


def _missing_limit(kind, dataset, project, event, cap) -> BudgetExceeded:
    requested = None  # no cap, no delta: no epsilon to state
    if cap is not None:
        requested = epsilon_of_counts(counts=base_counts(event), delta=cap.delta)
    return BudgetExceeded(
        requested_epsilon=requested,
        total_after=None,
        remaining=0.0,
        cap=None,
        delta=None if cap is None else cap.delta,
        limit_kind=kind,
        dataset=dataset,
        project=project,
        set_by=None,
        set_on=None,
    )


def _create_owner_only(path: Path) -> None:
    """Create the ledger file mode 0600 before SQLite opens it: SQLite makes its -wal and
    -shm files with the database's mode, so no local user but the owner reads any of them."""
    import os

    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an empty file left, or another process creating it now


def _probe(path: Path) -> Literal["absent", "empty", "ledger"]:
    """What is at ``path``, read-only (a foreign database is never switched to WAL)."""
    if not path.exists() or path.stat().st_size == 0:
        return "absent"
    if not is_sqlite(path):
        raise _not_a_ledger(path, "it is not an SQLite file")
    try:
        conn = store.connect(path, read_only=True)
        try:
            names = store.table_names(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        if environment_problem(err, path=path) is not None:
            raise
        raise _not_a_ledger(path, f"SQLite says: {err}") from None
    if "meta" in names:
        return "ledger"
    if names:
        raise _not_a_ledger(path, "it is an SQLite database without ledger tables")
    return "empty"  # another process is creating it right now, or it was left empty


def _not_a_ledger(path: Path, why: str) -> LedgerError:
    return LedgerError(
        f"A ledger file must be a privacy_budgets SQLite ledger; {path} is not ({why}). "
        "Check the path (and [site]/[state] in node.toml). Never replace a ledger with an older copy: that "
        "would erase recorded spending."
    )
