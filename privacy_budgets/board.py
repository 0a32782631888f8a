"""A site's ethics board as its ledger holds it: members (a name and an OpenSSH public
key each) and a quorum, k of n.

A roster travels as JSON, the same shape in a roster file, in a ``set_board`` proposal
and in the ledger's ``board`` entry:

    {"quorum": 2, "members": [{"name": "Dr A. Example", "key": "ssh-ed25519 AAAA... a@x"}, ...]}

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from privacy_budgets.signatures import public_key_of
>>> keys = [public_key_of(Ed25519PrivateKey.generate()).openssh() for _ in range(3)]
>>> board = Board.from_json({"quorum": 2, "members": [
...     {"name": n, "key": k} for n, k in zip(["Ada", "Ben", "Cy"], keys)]})
>>> board.describe()
'2 of 3: Ada, Ben, Cy'
>>> Board.from_json({"quorum": 4, "members": board.to_json()["members"]})
Traceback (most recent call last):
...
privacy_budgets.board.BoardInvalid: A board's quorum is a whole number from 1 to its number of members (3); got 4. Fix: lower the quorum or add members.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privacy_budgets.errors import PrivacyBudgetError
from privacy_budgets.signatures import SignatureInvalid, SshPublicKey

MAX_MEMBERS = 50


class BoardInvalid(PrivacyBudgetError, ValueError):
    """A roster that breaks a rule: no members, a bad quorum, a repeated key or name."""


@dataclass(frozen=True)
class Member:
    """One board member: a name people read and the key that signs for them."""

    name: str
    key: SshPublicKey

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "key": self.key.openssh(comment=False)}


@dataclass(frozen=True)
class Board:
    """Members and the quorum: ``quorum`` distinct members must sign a decision."""

    members: tuple[Member, ...]
    quorum: int

    def __post_init__(self) -> None:
        n = len(self.members)
        if not 1 <= n <= MAX_MEMBERS:
            raise BoardInvalid(
                f"A board has from 1 to {MAX_MEMBERS} members; got {n}. Fix: list each member's name and key."
            )
        if isinstance(self.quorum, bool) or not isinstance(self.quorum, int) or not 1 <= self.quorum <= n:
            raise BoardInvalid(
                f"A board's quorum is a whole number from 1 to its number of members ({n}); got {self.quorum!r}. "
                "Fix: lower the quorum or add members."
            )
        for what, values in (
            ("name", [m.name for m in self.members]),
            ("key", [m.fingerprint for m in self.members]),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise BoardInvalid(
                    f"Each board member has their own {what}; {repeated[0]!r} appears twice. A member counts once "
                    "towards the quorum, so a shared key would let one person count twice. Fix: one line per person."
                )

    @classmethod
    def from_json(cls, data: Any) -> Board:
        """From ``{"quorum": k, "members": [{"name": ..., "key": "ssh-ed25519 ..."}]}``."""
        if not isinstance(data, dict) or not isinstance(data.get("members"), list):
            raise BoardInvalid(
                'A board roster is a JSON object {"quorum": K, "members": [{"name": ..., "key": ...}, ...]}; '
                f"got {str(data)[:80]!r}."
            )
        members = []
        for item in data["members"]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
                raise BoardInvalid(f"Each board member has a non-empty name and a key; got {str(item)[:80]!r}.")
            try:
                key = SshPublicKey.from_openssh(str(item.get("key", "")))
            except SignatureInvalid as err:
                raise BoardInvalid(f"Board member {item['name']!r}: {err}") from None
            members.append(Member(name=item["name"].strip(), key=key))
        return cls(members=tuple(members), quorum=data.get("quorum"))

    @classmethod
    def load(cls, path: Path | str) -> Board:
        """Read a roster file (JSON)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BoardInvalid(f"A board roster must be a readable JSON file; {path} is not ({err}).") from None
        return cls.from_json(data)

    def to_json(self) -> dict[str, Any]:
        return {"quorum": self.quorum, "members": [m.to_json() for m in self.members]}

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def member(self, key: SshPublicKey) -> Member | None:
        """The member holding ``key``, if any."""
        return next((m for m in self.members if m.key == key), None)

    @property
    def fingerprints(self) -> set[str]:
        return {m.fingerprint for m in self.members}

    def describe(self) -> str:
        """``k of n: names``."""
        return f"{self.quorum} of {len(self.members)}: " + ", ".join(m.name for m in self.members)
