"""Signed checkpoints: "at this time the ledger's head was seq N with hash H".

A checkpoint kept away from the site (by the ethics board, say) catches a ledger whose
newest entries were later removed, which the hash chain alone cannot see.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from privacy_budgets.keys import public_hex
>>> key = Ed25519PrivateKey.generate()
>>> cp = make_checkpoint(key, site_id="s", seq=7, head_hash="ab" * 32, public_key=public_hex(key))
>>> checkpoint_verifies(cp, public_key=public_hex(key))
True
>>> checkpoint_verifies({**cp, "seq": 6}, public_key=public_hex(key))
False
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy_budgets.entries import canonical
from privacy_budgets.errors import LedgerError
from privacy_budgets.keys import sign, verify_signature
from privacy_budgets.records import utc_now

CHECKPOINT_FIELDS = ("site_id", "seq", "head_hash", "time", "public_key", "signature")


def make_checkpoint(
    key: Ed25519PrivateKey, *, site_id: str, seq: int, head_hash: str, public_key: str
) -> dict[str, Any]:
    """A checkpoint dict signed by ``key``."""
    body = {
        "site_id": site_id,
        "seq": seq,
        "head_hash": head_hash,
        "time": utc_now(),
        "public_key": public_key,
    }
    return {**body, "signature": sign(key, canonical(body).encode())}


def checkpoint_verifies(checkpoint: dict[str, Any], *, public_key: str) -> bool:
    """Whether the checkpoint's signature holds under ``public_key`` (hex)."""
    body = {k: checkpoint[k] for k in CHECKPOINT_FIELDS if k != "signature"}
    return verify_signature(
        public_key=public_key,
        signature=str(checkpoint["signature"]),
        message=canonical(body).encode(),
    )


def load_checkpoint(source: Path | str | dict[str, Any]) -> dict[str, Any]:
    """A checkpoint from a dict or a JSON file, with its fields checked."""
    if isinstance(source, dict):
        data = source
    else:
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise LedgerError(
                f"A checkpoint must be a JSON file written by Ledger.checkpoint; "
                f"cannot read {source} ({err}). Check the path."
            ) from None
    missing = [k for k in CHECKPOINT_FIELDS if k not in data]
    if missing or not isinstance(data.get("seq"), int):
        raise LedgerError(
            f"A checkpoint needs the fields {list(CHECKPOINT_FIELDS)} with an integer seq; "
            f"missing {missing} in {str(data)[:120]!r}. Use a file written by Ledger.checkpoint."
        )
    return data
