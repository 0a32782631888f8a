"""The board a coordinator pins for a site: the roster it counts rotation signatures against.

A handover states the board in force at each rotation, but that statement lives in
entries signed by the OLD ledger key: whoever holds that key alone could state a board of
their own keys and "approve" a rotation to a key they control. So the coordinator pins
the board once, at registration (``register-node --board``, from ``workbench budget board
--ledger L --json`` at the site), and from then on counts a rotation's quorum only
against the pinned board. A board change counts only when a quorum of the pinned board
approved it; it then becomes the pinned board (privacy_budgets/handover.py).

``since_seq`` is the ledger seq of the pinned board's own entry: board entries at or
before it are history the pin already covers; every later one must be approved.

>>> import tempfile, pathlib
>>> from privacy_budgets.simulated_board import SimulatedBoard
>>> roster = SimulatedBoard.create(pathlib.Path(tempfile.mkdtemp())).roster()
>>> listing = {"ledger_id": "ab" * 32, "ledger_key": "cd" * 32,
...            "board": {"quorum": 2, "since_seq": 1, **{"members": roster.to_json()["members"]}}}
>>> pin = BoardPin.from_listing(listing)
>>> pin.board.describe(), pin.since_seq
('2 of 3: Member A (simulated), Member B (simulated), Member C (simulated)', 1)
>>> BoardPin.from_json(pin.to_json()) == pin
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privacy_budgets.board import Board, BoardInvalid
from privacy_budgets.errors import PrivacyBudgetError


class BoardPinInvalid(PrivacyBudgetError, ValueError):
    """A board listing the coordinator cannot pin (no board, no keys, unreadable)."""


@dataclass(frozen=True)
class BoardPin:
    """The pinned roster, the ledger it belongs to and the seq of its board entry."""

    ledger_id: str
    since_seq: int
    board: Board

    @classmethod
    def from_listing(cls, data: Any) -> BoardPin:
        """From the JSON ``workbench budget board --ledger L --json`` prints at the site."""
        fix = "Fix: the site's IT writes it with `workbench budget board --ledger LEDGER --json > board.json`."
        if not isinstance(data, dict) or "board" not in data:
            raise BoardPinInvalid(
                f"A board to pin is the output of `budget board --json`; got {str(data)[:80]!r}. {fix}"
            )
        board = data["board"]
        if board is None:
            raise BoardPinInvalid(
                "This site's ledger has no board (legacy mode), so there is none to pin. Fix: register it without "
                "--board (`coordinator status` then lists it as having no pinned board), or have the site record "
                "its board first (`workbench budget establish-board`)."
            )
        if not isinstance(board, dict) or any(
            not isinstance(m, dict) or not m.get("key") for m in board.get("members") or [None]
        ):
            raise BoardPinInvalid(
                "A pinned board needs each member's public key (the coordinator verifies their signatures); this "
                f"listing gives {str(board)[:80]!r}. {fix}"
            )
        try:
            roster = Board.from_json({"quorum": board.get("quorum"), "members": board["members"]})
        except BoardInvalid as err:
            raise BoardPinInvalid(f"The board to pin is not a valid roster: {err}") from None
        since = board.get("since_seq")
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise BoardPinInvalid(f"A board listing names the seq of its board entry (since_seq); got {since!r}. {fix}")
        return cls(ledger_id=str(data.get("ledger_id") or ""), since_seq=since, board=roster)

    @classmethod
    def load_listing(cls, path: Path | str) -> tuple[BoardPin, str]:
        """The pin and the listing's ledger key (hex) from a ``budget board --json`` file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise BoardPinInvalid(
                f"--board is the JSON file `workbench budget board --ledger LEDGER --json` writes; cannot read {path} "
                f"({err})."
            ) from None
        return cls.from_listing(data), str(data.get("ledger_key") or "").strip().lower()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BoardPin:
        """From nodes.json (what ``to_json`` wrote)."""
        return cls(
            ledger_id=str(data["ledger_id"]), since_seq=int(data["since_seq"]), board=Board.from_json(data["board"])
        )

    def to_json(self) -> dict[str, Any]:
        return {"ledger_id": self.ledger_id, "since_seq": self.since_seq, "board": self.board.to_json()}


def same_board(a: Board, b: Board) -> bool:
    """The same members (name and key) and quorum, in any order."""
    return a.quorum == b.quorum and {(m.name, m.fingerprint) for m in a.members} == {
        (m.name, m.fingerprint) for m in b.members
    }


__all__ = ["BoardPin", "BoardPinInvalid", "same_board"]
