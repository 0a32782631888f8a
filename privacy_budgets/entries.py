"""One ledger entry: its fields, its hash and its signature.

An entry's hash is SHA-256 over a canonical JSON of every field but the hash and the
signature, ``prev_hash`` included, so each entry vouches for the whole history before
it. The signature is Ed25519 over the 32 bytes of that hash.

>>> entry = LedgerEntry.unsigned(seq=1, time="2026-11-29T10:00:00.000000Z", kind="genesis",
...     site_id="hospital_01", actor="site", purpose="ledger created", prev_hash=GENESIS_PREV)
>>> entry.entry_hash == entry.compute_hash()
True
>>> entry.to_dict()["kind"]
'genesis'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import dp_accounting as dpa

from privacy_budgets.errors import LedgerError
from privacy_budgets.mechanisms import event_from_json

ENTRY_KINDS = (
    "genesis",
    "set_cap",
    "allocate",
    "reserve",
    "commit",
    "abort",
    "uncovered",
    "approve",
    "board",
    "rotate_key",
)
GENESIS_PREV = "0" * 64
LEDGER_FORMAT = "privacy_budgets.ledger/1"


def canonical(data: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger, exactly as hashed and signed.

    ``epsilon`` is the release alone (reserve, commit); ``epsilon_after`` and
    ``project_epsilon_after`` are the dataset's and the project's totals after this
    entry, open reservations included, at the dataset's ``delta``.
    """

    seq: int
    time: str
    kind: str
    site_id: str
    dataset: str | None
    project: str | None
    actor: str
    purpose: str
    run_id: str | None
    round: int | None
    query_id: str | None
    mechanism: str | None
    reservation_id: str | None
    epsilon: float | None
    delta: float | None
    epsilon_after: float | None
    project_epsilon_after: float | None
    details_json: str
    prev_hash: str
    entry_hash: str
    signature: str

    @classmethod
    def unsigned(cls, **fields: Any) -> LedgerEntry:
        """An entry with its hash computed and an empty signature (see ``signed``)."""
        values = {f.name: None for f in dataclasses.fields(cls)}
        values.update(details_json="{}", entry_hash="", signature="")
        values.update(fields)
        entry = cls(**values)
        return dataclasses.replace(entry, entry_hash=entry.compute_hash())

    def content(self) -> dict[str, Any]:
        """Every field the hash covers."""
        data = dataclasses.asdict(self)
        del data["entry_hash"], data["signature"]
        return data

    def compute_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of ``content()``."""
        return hashlib.sha256(canonical(self.content()).encode()).hexdigest()

    def signed_message(self) -> bytes:
        """The bytes the signature covers: the hash as 32 raw bytes."""
        return bytes.fromhex(self.entry_hash)

    @property
    def event(self) -> dpa.DpEvent | None:
        """The mechanism as a DpEvent (reserve and commit entries), else None."""
        return None if self.mechanism is None else event_from_json(self.mechanism)

    @property
    def details(self) -> dict[str, Any]:
        """A fresh dict of the entry's details."""
        return json.loads(self.details_json)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, ready for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        """Inverse of ``to_dict``; unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        missing = names - set(data)
        if unknown or missing:
            raise LedgerError(
                "A ledger entry must have exactly the ledger's fields; "
                f"unknown {sorted(unknown)}, missing {sorted(missing)}. "
                "Export entries with Ledger.export()."
            )
        return cls(**data)


ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(LedgerEntry))
