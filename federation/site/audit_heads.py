"""Signed audit heads: the audit log's chain, and the ledger's head, signed with the node's key.

An unkeyed hash chain proves only that the lines agree with each other: whoever can
write the file can remove lines and compute the chain again. So at every start, at
every ``node check`` and at least every ``audit.HEAD_EVERY`` lines, the node appends a
line of kind ``audit_head`` that signs, with the ledger's key from the key folder
(``ledger_keys.py``), the seq and hash of the line before it and the ledger's head at
that moment. A re-chained log no longer matches the heads signed after the change, and
``verify_audit`` names the first line after the last good signature.

Someone who holds the key itself (the node's service account, root) could sign again
locally: the heads also travel to the coordinator with the receipts (``anchors.py``),
and copies outside the site catch that (THREAT_MODEL.md, rules A1-A6).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from federation.site.audit import Seal, append_audit, audit_path, utc_now
from federation.site.site_config import SiteConfig
from privacy_budgets.head_chain import AUDIT_HEAD_KIND, audit_head_message
from privacy_budgets.keys import load_key, public_hex, sign, verify_signature

HEAD_KIND = AUDIT_HEAD_KIND
AUDIT_HEAD_KEY = "audit-head"  # the reply's site record carries the newest head under this key
head_message = audit_head_message  # shared with the coordinator's mirror (privacy_budgets/head_chain.py)


def head_problem(record: dict[str, Any], *, seq_before: int, hash_before: str, keys: set[str] | None) -> str | None:
    """Why a head line does not prove the lines before it (None: it does)."""
    if record.get("signed_seq") != seq_before or record.get("signed_hash") != hash_before:
        return (
            f"it signed line {record.get('signed_seq')} with hash {str(record.get('signed_hash'))[:12]}..., but the "
            f"line before it is now line {seq_before} with hash {hash_before[:12]}...: lines before it were "
            "changed and the chain computed again"
        )
    public = str(record.get("public_key", ""))
    if keys is not None and public not in keys:
        return f"it is signed by a key that is not the ledger's ({public[:16]}...)"
    if not verify_signature(
        public_key=public, signature=str(record.get("signature", "")), message=head_message(record)
    ):
        return "its signature does not verify"
    return None


def ledger_head(ledger_path: Path) -> tuple[int, str] | None:
    """(seq, entry_hash) of the ledger's newest entry, read-only; None without a ledger."""
    if not Path(ledger_path).exists():
        return None
    try:
        conn = sqlite3.connect(f"{Path(ledger_path).resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            row = conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None  # not readable now: the head line says so (None), verification of the ledger says why
    return None if row is None else (int(row[0]), str(row[1]))


def sealer(site: SiteConfig) -> Seal | None:
    """The ``seal`` for ``append_audit`` of a process holding the site's key (None: no key here)."""
    from privacy_budgets.errors import LedgerError

    key_path = site.ledger_key_path
    try:
        key = load_key(key_path=key_path)
    except (OSError, LedgerError):
        return None  # not this process's to sign (no key here): the next writer that holds it signs
    public = public_hex(key)

    def seal(seq: int, line_hash: str) -> dict[str, Any]:
        head = ledger_head(site.ledger_path)
        record = {
            "kind": HEAD_KIND,
            "time": utc_now(),
            "site": site.site_id,
            "signed_seq": seq,
            "signed_hash": line_hash,
            "ledger_seq": None if head is None else head[0],
            "ledger_hash": None if head is None else head[1],
            "public_key": public,
        }
        if head is not None:
            from federation.site.anchors import record_last_head

            record_last_head(site, seq=head[0], head_hash=head[1], time=record["time"])
        return {**record, "signature": sign(key, head_message(record))}

    return seal


def sign_audit_head(site: SiteConfig) -> dict[str, Any] | None:
    """Append a signed head now (at a start, at a check); None when the key is not here."""
    seal = sealer(site)
    if seal is None:
        return None
    return append_audit(path=audit_path(site.state_dir), entry=None, seal=seal)


def last_signed_head(path: Path, *, limit: int = 10_000) -> dict[str, Any] | None:
    """The newest head line among the last ``limit`` lines (None: none)."""
    from federation.site.audit import recent_entries

    for record in recent_entries(path=path, limit=limit):
        if record.get("kind") == HEAD_KIND:
            return record
    return None
