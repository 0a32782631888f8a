"""Spend receipts: what a site sends the coordinator with each release.

A receipt names the ledger entry (seq and hash), the mechanism and the epsilons (for a
committed spend) or the uncovered release, and the ledger's head when it was signed
(``head_seq`` and ``head_hash``; the coordinator's mirror chains them, ``head_chain.py``),
and is signed with the site's key. The coordinator keeps them; later they prove what the
site's ledger held, even if its newest entries were removed.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from privacy_budgets.keys import public_hex
>>> key = Ed25519PrivateKey.generate()
>>> receipt = sign_receipt(key, dict(site_id="s", dataset="d", project="p", seq=5,
...     kind="commit", entry_hash="ab" * 32, reservation_id="r1", mechanism="{}", epsilon=0.4,
...     project_epsilon_after=0.4, dataset_epsilon_after=0.9, delta=1e-5, run_id="r42",
...     round=3, query_id=None, time="2026-11-29T10:00:00.000000Z", public_key=public_hex(key)))
>>> receipt.verifies()
True
>>> SpendReceipt.from_dict(receipt.to_dict()) == receipt
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy_budgets.entries import canonical
from privacy_budgets.keys import sign, verify_signature
from privacy_budgets.records import PlainRecord


@dataclass(frozen=True)
class SpendReceipt(PlainRecord):
    """A signed statement of one release; plain fields so it travels as JSON.

    ``kind`` is "commit" (a spend: mechanism and epsilons set) or "uncovered" (a
    release no mechanism covers: no mechanism, no epsilon of its own).
    """

    site_id: str
    dataset: str
    project: str
    seq: int
    kind: str
    entry_hash: str
    reservation_id: str | None
    mechanism: str | None
    epsilon: float | None
    project_epsilon_after: float | None
    dataset_epsilon_after: float | None
    delta: float | None
    run_id: str | None
    round: int | None
    query_id: str | None
    time: str
    public_key: str
    signature: str
    # The ledger's head (seq, hash) when the receipt was signed; None in a receipt made
    # before heads travelled (then they are left out of the signed message).
    head_seq: int | None = None
    head_hash: str | None = None

    def signed_message(self) -> bytes:
        """Canonical JSON of every field but the signature (and an absent ledger head)."""
        data = dataclasses.asdict(self)
        del data["signature"]
        for name in _HEAD_FIELDS:
            if data[name] is None:
                del data[name]
        return canonical(data).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpendReceipt:
        """Inverse of ``to_dict``; a receipt from before ledger heads has none."""
        return super().from_dict({**dict.fromkeys(_HEAD_FIELDS), **data})

    def verifies(self, public_key: str | None = None) -> bool:
        """Whether the signature holds under ``public_key`` (hex; default: the one inside)."""
        return verify_signature(
            public_key=public_key or self.public_key,
            signature=self.signature,
            message=self.signed_message(),
        )


_HEAD_FIELDS = ("head_seq", "head_hash")


def sign_receipt(key: Ed25519PrivateKey, fields: dict[str, Any]) -> SpendReceipt:
    """A receipt with ``fields`` signed by ``key``."""
    unsigned = SpendReceipt(**fields, signature="")
    return dataclasses.replace(unsigned, signature=sign(key, unsigned.signed_message()))


def as_receipt(item: SpendReceipt | dict[str, Any]) -> SpendReceipt:
    """Accept a receipt or its dict (as mirrored by a coordinator)."""
    return item if isinstance(item, SpendReceipt) else SpendReceipt.from_dict(dict(item))
