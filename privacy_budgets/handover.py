"""A key handover: what a site sends its coordinator after rotating its ledger key, and
the check that lets the coordinator accept the new key only through that chain.

The coordinator pins each site's ledger key (``register-node --ledger-key``) and refuses
receipts under any other. After a rotation (``Ledger.rotate_key``) the site's receipts
are signed by the new key, so the coordinator must learn it, but never from a reply that
merely carries a new key (a forger signs with its own). A handover file holds every
``rotate_key`` entry of the ledger, each with the board in force when it was written;
``follow_handover`` accepts a new key only when, from the key the coordinator pinned:

1. the ``rotate_key`` entry is intact (its hash) and signed by the pinned key (the old
   key signs the new one);
2. the new key signed its takeover of this ledger (``possession``: whoever names a key
   holds it, and the proof is bound to the ledger);
3. the entry carries a proposal for exactly this rotation, for this site and ledger,
   signed by a quorum of the board (distinct members, valid at the entry's time: the
   same rules ``Ledger.verify`` applies). A rotation made without a board is refused:
   its only authority is one person.

Rotations before the pinned key are skipped; several after it are followed in order,
so one file serves however many rotations the coordinator missed.

The board: without a pin, the roster counted comes from the site's ledger, signed by the
old key, so whoever holds the old key alone could state a roster of their own. With a
``pinned`` board (privacy_budgets/board_pin.py: the coordinator pinned it at
registration) the quorum is counted against the pinned board only: the handover also
carries every ``board`` entry, and one after the pin counts only when it is signed by the
key in force and approved by a quorum of the pinned board (it then becomes the pinned
board); a rotation whose stated board is not the pinned one is refused (THREAT_MODEL.md,
rule A6).

>>> import tempfile, pathlib
>>> from privacy_budgets.ledger import Ledger
>>> from privacy_budgets.proposals import rotation_action
>>> from privacy_budgets.keys import load_or_create_key, public_hex
>>> from privacy_budgets.simulated_board import SimulatedBoard
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> board = SimulatedBoard.create(folder / "board")
>>> with Ledger.open(folder / "site.ledger", site_id="site") as ledger:
...     _ = board.establish(ledger)
...     pinned = ledger.public_key  # what the coordinator registered
...     new = public_hex(load_or_create_key(key_path=folder / "new.key", create=True))
...     proposal = board.sign(ledger.propose(action=rotation_action(new_public_key=new), reason="yearly",
...                                          proposed_by="IT"))
...     _ = ledger.rotate_key(new_key_path=folder / "new.key", proposal=proposal)
...     handover = key_handover(ledger.entries())
>>> accepted = follow_handover(handover, site_id="site", registered_key=pinned)
>>> accepted.new_key == new, accepted.steps[0].signers
(True, ['Member A (simulated)', 'Member B (simulated)'])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privacy_budgets.authority import GOVERNED_KINDS, Governance
from privacy_budgets.board import Board, BoardInvalid
from privacy_budgets.board_pin import BoardPin, same_board
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.errors import PrivacyBudgetError
from privacy_budgets.keys import fingerprint, rotation_message, verify_signature

HANDOVER_FORMAT = "privacy_budgets.key_handover/1"


class HandoverRefused(PrivacyBudgetError, ValueError):
    """A handover that does not chain from the pinned key (the message says which rule broke)."""


@dataclass(frozen=True)
class Step:
    """One rotation followed: ledger seq, the old and new keys (hex), who approved it."""

    seq: int
    time: str
    old_key: str
    new_key: str
    signers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "old_key": self.old_key,
            "new_key": self.new_key,
            "new_fingerprint": fingerprint(self.new_key),
            "signers": list(self.signers),
        }


@dataclass(frozen=True)
class BoardChange:
    """A board change followed: approved by a quorum of the board pinned before it."""

    seq: int
    time: str
    board: Board
    signers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "board": self.board.describe(), "signers": list(self.signers)}


@dataclass(frozen=True)
class Accepted:
    """The chain followed from the pinned key: ``new_key`` is its end; ``pinned`` the board
    to pin from now on (None when none was pinned), ``board_changes`` how it got there."""

    site_id: str
    ledger_id: str
    steps: tuple[Step, ...]
    pinned: BoardPin | None = None
    board_changes: tuple[BoardChange, ...] = ()

    @property
    def new_key(self) -> str:
        return self.steps[-1].new_key


def key_handover(entries: list[LedgerEntry]) -> dict[str, Any]:
    """Every rotation among a ledger's ``entries`` (all of them, in order: ``Ledger.entries()``
    or ``exports.read_entries``), each with the board in force when it was written (JSON)."""
    if not entries or entries[0].kind != "genesis":
        raise HandoverRefused("A key handover is made from a whole ledger, from its genesis entry; this one has none.")
    governance = Governance.replay([])
    current = str(entries[0].details.get("public_key", ""))
    rotations, boards = [], []
    for entry in entries:
        if entry.kind == "genesis":
            governance.ledger_id = entry.entry_hash
        elif entry.kind == "rotate_key":
            board = governance.board
            rotations.append({"entry": entry.to_dict(), "board": None if board is None else board.to_json()})
            current = str(entry.details.get("new_public_key", ""))
        elif entry.kind == "board":
            boards.append(entry.to_dict())  # a coordinator with a pinned board follows changes only through these
        if entry.kind in GOVERNED_KINDS:
            governance.record(entry)
    return {
        "format": HANDOVER_FORMAT,
        "site_id": entries[0].site_id,
        "ledger_id": entries[0].entry_hash,
        "current_public_key": current,
        "rotations": rotations,
        "board_entries": boards,
    }


def write_handover(entries: list[LedgerEntry], *, out: Path | str) -> Path:
    """``key_handover`` as a JSON file (public keys and signatures only: nothing secret)."""
    path = Path(out)
    path.write_text(json.dumps(key_handover(entries), indent=2) + "\n")
    return path


def load_handover(path: Path | str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise HandoverRefused(
            f"A key handover is the JSON file `workbench budget handover --ledger LEDGER --out FILE` writes at the "
            f"site; cannot read {path} ({err})."
        ) from None
    return data


def follow_handover(
    data: dict[str, Any], *, site_id: str, registered_key: str, pinned: BoardPin | None = None
) -> Accepted:
    """The rotations in ``data`` that chain from ``registered_key``, counted against the
    ``pinned`` board when there is one (see the module docstring); raises HandoverRefused
    naming the rule, the entry and the fix."""
    if not isinstance(data, dict) or data.get("format") != HANDOVER_FORMAT:
        raise HandoverRefused(
            f"A key handover says format {HANDOVER_FORMAT!r}; this file says {str(data.get('format') if isinstance(data, dict) else data)[:60]!r}. "
            "Fix: the site's IT writes it with `workbench budget handover --ledger LEDGER --out FILE`."
        )
    if data.get("site_id") != site_id:
        raise HandoverRefused(
            f"This handover is of site {data.get('site_id')!r}, not {site_id!r}: a site's new key is accepted only "
            "from its own ledger's handover."
        )
    ledger_id = str(data.get("ledger_id", ""))
    rotations = data.get("rotations")
    if not isinstance(rotations, list):
        raise HandoverRefused("A key handover lists its rotations under 'rotations'; this one has none.")
    if pinned is not None and pinned.ledger_id and pinned.ledger_id != ledger_id:
        raise HandoverRefused(
            f"This handover is of ledger {ledger_id[:12]}; the board pinned for site {site_id} belongs to ledger "
            f"{pinned.ledger_id[:12]}. Nothing was changed. Fix: the site's IT writes the handover from the ledger "
            "it registered (`workbench budget handover --ledger LEDGER --out FILE`)."
        )
    events = [("rotate_key", _entry(item, "rotation"), item.get("board")) for item in rotations]
    if pinned is not None:
        board_entries = data.get("board_entries") or []
        if not isinstance(board_entries, list):
            raise HandoverRefused("A key handover lists its board entries under 'board_entries' as a list.")
        events += [("board", _entry({"entry": item}, "board entry"), None) for item in board_entries]
    events.sort(key=lambda event: event[1].seq)
    current, steps, changes = registered_key, [], []
    for kind, entry, board_json in events:
        if kind == "board":
            if entry.seq > pinned.since_seq:  # at or before: history the pin already covers
                pinned, change = _board_change(entry, pinned, site_id=site_id, ledger_id=ledger_id, key=current)
                changes.append(change)
            continue
        if entry.details.get("old_public_key") != current:
            continue  # before the pinned key (already followed), or not of this chain
        steps.append(_step(entry, board_json, site_id=site_id, ledger_id=ledger_id, old_key=current, pinned=pinned))
        current = steps[-1].new_key
    if not steps:
        newest = data.get("current_public_key")
        if newest == registered_key:
            raise HandoverRefused(
                f"Site {site_id}'s ledger is still signed by the registered key {fingerprint(registered_key)}: "
                "there is no new key to accept."
            )
        raise HandoverRefused(
            f"No rotation in this handover hands over from site {site_id}'s registered ledger key "
            f"{fingerprint(registered_key)}: a new key is accepted only when the registered key signed its "
            "rotation. Nothing was changed. If the key registered here is not the site's, check it with the site's "
            "IT (`workbench budget board --ledger LEDGER`)."
        )
    return Accepted(
        site_id=site_id, ledger_id=ledger_id, steps=tuple(steps), pinned=pinned, board_changes=tuple(changes)
    )


def _entry(item: Any, what: str) -> LedgerEntry:
    try:
        return LedgerEntry.from_dict(item["entry"])
    except (KeyError, TypeError, PrivacyBudgetError) as err:
        raise HandoverRefused(f"A {what} in this handover is not a ledger entry ({err}).") from None


def _check_signed(entry: LedgerEntry, *, key: str, refuse: Any) -> None:
    """The entry intact (its hash) and signed by ``key``, the ledger key in force then."""
    if entry.compute_hash() != entry.entry_hash:
        raise refuse("was altered: its content no longer matches its hash")
    try:
        signed = bytes.fromhex(entry.entry_hash)
    except ValueError:
        signed = b""
    if not verify_signature(public_key=key, signature=entry.signature, message=signed):
        raise refuse(f"is not signed by the registered key {fingerprint(key)} (the old key signs the new one)")


def _board_change(
    entry: LedgerEntry, pinned: BoardPin, *, site_id: str, ledger_id: str, key: str
) -> tuple[BoardPin, BoardChange]:
    """A board entry after the pin, followed only with a quorum of the pinned board."""

    def refuse(rule: str) -> HandoverRefused:
        return HandoverRefused(
            f"Refused: the board entry seq {entry.seq} of site {site_id} {rule}. Nothing was changed; the registered "
            f"key and the pinned board ({pinned.board.describe()}) stay."
        )

    if entry.kind != "board" or entry.site_id != site_id:
        raise refuse(f"is a {entry.kind} entry of site {entry.site_id!r}, not a board change of this site")
    _check_signed(entry, key=key, refuse=refuse)
    problems = Governance(ledger_id=ledger_id, board=pinned.board).problems(entry, limits={})
    if problems:
        raise refuse(
            f"changes the board without the approval of the pinned board's quorum: {'; '.join(problems)}. Fix: the "
            "new board counts here only through a `workbench budget propose board` proposal that a quorum of the "
            "pinned board signed"
        )
    try:
        board = Board.from_json(entry.details)
    except BoardInvalid as err:
        raise refuse(f"holds a board that cannot be read ({err})") from None
    signed_by = entry.details.get("authority", {}).get("signed_by", [])
    signers = [str(s.get("name")) for s in signed_by if isinstance(s, dict)]
    change = BoardChange(seq=entry.seq, time=entry.time, board=board, signers=signers)
    return BoardPin(ledger_id=ledger_id, since_seq=entry.seq, board=board), change


def _step(
    entry: LedgerEntry, board_json: Any, *, site_id: str, ledger_id: str, old_key: str, pinned: BoardPin | None
) -> Step:
    where = f"the rotate_key entry seq {entry.seq} of site {site_id}"

    def refuse(rule: str) -> HandoverRefused:
        return HandoverRefused(f"Refused: {where} {rule}. Nothing was changed; the registered key stays.")

    if entry.kind != "rotate_key" or entry.site_id != site_id:
        raise refuse(f"is a {entry.kind} entry of site {entry.site_id!r}, not a key rotation of this site")
    _check_signed(entry, key=old_key, refuse=refuse)
    new_key = entry.details.get("new_public_key")
    message = rotation_message(ledger_id=ledger_id, old_public_key=old_key, new_public_key=str(new_key))
    if not isinstance(new_key, str) or not verify_signature(
        public_key=new_key, signature=str(entry.details.get("possession", "")), message=message
    ):
        raise refuse("names a new key that did not sign its takeover of this ledger (a key nobody holds)")
    if board_json is None:
        raise refuse(
            "was made without an ethics board (one person's decision): the coordinator accepts a new key only when a "
            "board quorum approved it. Fix: the site records its board (`workbench budget propose board`), then "
            "rotates with a proposal its quorum signed"
        )
    try:
        board = Board.from_json(board_json)
    except BoardInvalid as err:
        raise refuse(f"comes with a board that cannot be read ({err})") from None
    if pinned is not None:
        if not same_board(board, pinned.board):
            raise refuse(
                f"counts its quorum against the board {board.describe()}, which is not the board pinned here "
                f"({pinned.board.describe()}) and was not approved by a quorum of it (a board stated in entries "
                "signed by the old key alone proves nothing). Fix: the site's board changes only through a "
                "proposal its pinned board's quorum signs, carried in the handover; if the pinned board is wrong, "
                "the operator re-registers the site with `register-node --board`"
            )
        board = pinned.board
    governance = Governance(ledger_id=ledger_id, board=board)
    problems = governance.problems(entry, limits={})
    if problems:
        raise refuse(f"is not approved by the board's quorum: {'; '.join(problems)}")
    signed_by = entry.details.get("authority", {}).get("signed_by", [])
    return Step(
        seq=entry.seq,
        time=entry.time,
        old_key=old_key,
        new_key=new_key,
        signers=[str(s.get("name")) for s in signed_by if isinstance(s, dict)],
    )


__all__ = [
    "HANDOVER_FORMAT",
    "Accepted",
    "BoardChange",
    "HandoverRefused",
    "Step",
    "follow_handover",
    "key_handover",
    "load_handover",
    "write_handover",
]
