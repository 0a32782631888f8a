"""A simulated ethics board with real keys, for simulations, notebooks and tests.

Its members' Ed25519 keys are generated once into a folder of their own (never beside a
ledger), unencrypted (mode 0600): a simulation has no people to type passphrases. Its
decisions go through the same proposals, signatures and ``Ledger.apply`` as a real
board's; nothing about it is trusted by a ledger beyond the roster recorded there.

>>> import tempfile, pathlib
>>> from privacy_budgets.ledger import Ledger
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> board = SimulatedBoard.create(folder / "board")
>>> board.roster().describe()
'2 of 3: Member A (simulated), Member B (simulated), Member C (simulated)'
>>> with Ledger.open(folder / "site.ledger", site_id="site") as ledger:
...     _ = board.establish(ledger)
...     entry = board.decide(ledger, action=cap_action(dataset="d", epsilon=2.0, delta=1e-5), reason="r")
...     print(entry.actor, ledger.verify().ok)
board (2 of quorum 2): Member A (simulated), Member B (simulated) True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privacy_budgets.board import Board, Member
from privacy_budgets.proposals import SignedProposal, cap_action  # noqa: F401 - cap_action for the doctest
from privacy_budgets.signatures import KeySigner, SshPublicKey, generate_key_pair, load_private_key

if TYPE_CHECKING:
    from privacy_budgets.entries import LedgerEntry
    from privacy_budgets.ledger import Ledger

NAMES = ("Member A (simulated)", "Member B (simulated)", "Member C (simulated)")
ROSTER = "board.json"


@dataclass(frozen=True)
class SimulatedBoard:
    """Members' key files in ``folder`` and the roster (``board.json``) they form."""

    folder: Path

    @classmethod
    def create(cls, folder: Path | str, *, names: tuple[str, ...] = NAMES, quorum: int = 2) -> SimulatedBoard:
        """Generate the members' keys (or reuse the ones already in ``folder``)."""
        folder = Path(folder)
        if (folder / ROSTER).exists():
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        members = []
        for index, name in enumerate(names):
            path = folder / f"member_{index + 1}"
            public = SshPublicKey.load(f"{path}.pub") if path.exists() else None
            public = public or generate_key_pair(path=path, passphrase=None, comment=name)
            members.append(Member(name=name, key=public))
        Board(members=tuple(members), quorum=quorum).save(folder / ROSTER)
        return cls(folder)

    def roster(self) -> Board:
        return Board.load(self.folder / ROSTER)

    def key_path(self, name: str) -> Path:
        """The private key file of the member called ``name``."""
        for index, member in enumerate(self.roster().members):
            if member.name == name:
                return self.folder / f"member_{index + 1}"
        raise KeyError(f"no simulated member {name!r}; members are {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.roster().members]

    def signer(self, name: str) -> KeySigner:
        return KeySigner(load_private_key(path=self.key_path(name), passphrase=None))

    def sign(self, proposal: SignedProposal, *, members: list[str] | None = None) -> SignedProposal:
        """``proposal`` signed by ``members`` (by default the first ``quorum`` of them)."""
        roster = self.roster()
        chosen = members if members is not None else self.names[: roster.quorum]
        for name in chosen:
            proposal = proposal.sign(self.signer(name))
        return proposal

    def establish(self, ledger: Ledger) -> LedgerEntry | None:
        """Record this board in ``ledger`` if it has none yet (the creator's one-time entry)."""
        if ledger.board() is not None:
            return None
        return ledger.establish_board(
            board=self.roster(), actor="ledger creator (simulated)", reason="the simulated ethics board"
        )

    def decide(
        self,
        ledger: Ledger,
        *,
        action: dict[str, Any],
        reason: str,
        proposed_by: str | None = None,
        expires_in: timedelta = timedelta(days=1),
    ) -> LedgerEntry:
        """Propose ``action`` for ``ledger``, have a quorum sign it, apply it."""
        proposal = ledger.propose(
            action=action, reason=reason, proposed_by=proposed_by or self.names[0], expires_in=expires_in
        )
        return ledger.apply(self.sign(proposal))

    def describe(self) -> dict[str, Any]:
        roster = self.roster()
        return {
            "folder": str(self.folder),
            "quorum": roster.quorum,
            "members": [{"name": m.name, "fingerprint": m.fingerprint} for m in roster.members],
        }

    def __repr__(self) -> str:
        return f"SimulatedBoard({json.dumps(self.describe())})"
