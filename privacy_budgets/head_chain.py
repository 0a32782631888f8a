"""The coordinator's chain of ledger heads: each site's heads, per project, in the order
they arrived, and the two things a ledger's heads never do: go backwards, or fork.

Every receipt carries the ledger's head when it was signed (``receipts.py``:
``head_seq`` and ``head_hash``, signed with the receipt). A site's ledger only grows, so
for one site:

- **fork**: two receipts that name the same seq with different hashes (as an entry, or
  as a head) prove that the site's ledger was rewritten between them: a history was
  replaced, or a rolled-back ledger was written on;
- **backwards**: a project's receipt whose head is below the head of an earlier receipt
  of the same project proves that the ledger was rolled back before it was signed.

Only receipts whose signature verifies under the key they name are counted: a relay
cannot frame a site with receipts of its own making. What a head reveals is in
federation/THREAT_MODEL.md (A5): the number of entries the site's ledger holds.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from privacy_budgets.keys import public_hex
>>> from privacy_budgets.receipts import sign_receipt
>>> key = Ed25519PrivateKey.generate()
>>> def receipt(seq, h, head_seq, head_hash):
...     return sign_receipt(key, dict(site_id="s", dataset="d", project="p", seq=seq, kind="commit",
...         entry_hash=h, reservation_id="r", mechanism="{}", epsilon=0.1, project_epsilon_after=0.1,
...         dataset_epsilon_after=None, delta=1e-5, run_id=None, round=None, query_id=None,
...         time="2026-12-01T10:00:00.000000Z", public_key=public_hex(key),
...         head_seq=head_seq, head_hash=head_hash))
>>> [p["problem"] for p in head_problems([receipt(5, "a" * 64, 5, "a" * 64), receipt(5, "b" * 64, 5, "b" * 64)])]
['head_fork']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from privacy_budgets.keys import verify_signature
from privacy_budgets.receipts import SpendReceipt, as_receipt

# A site's signed audit head (federation/site/audit_heads.py): the seq and hash of its
# audit log's line before it and the ledger's head, signed with the ledger's key.
AUDIT_HEAD_KIND = "audit_head"
AUDIT_HEAD_FIELDS = ("kind", "time", "site", "signed_seq", "signed_hash", "ledger_seq", "ledger_hash", "public_key")


def audit_head_message(record: dict[str, Any]) -> bytes:
    """What an audit head's signature covers: its fields but the signature and the chain's own."""
    body = {name: record.get(name) for name in AUDIT_HEAD_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def audit_head_verifies(record: dict[str, Any]) -> bool:
    """Whether an audit head's signature holds under the key it names."""
    return verify_signature(
        public_key=str(record.get("public_key", "")),
        signature=str(record.get("signature", "")),
        message=audit_head_message(record),
    )


def audit_head_problems(heads: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Forks and backwards steps among a coordinator's copies of sites' audit heads (in
    arrival order): a site's audit log, like its ledger, only grows. A head re-signed
    locally over a re-chained log names a line seq the mirror already holds with
    another hash."""
    known: dict[tuple[str, int], str] = {}
    last: dict[str, int] = {}
    problems: list[dict[str, Any]] = []
    for head in heads:
        if not isinstance(head, dict) or not audit_head_verifies(head) or not isinstance(head.get("signed_seq"), int):
            continue
        site, seq, digest = str(head.get("site")), head["signed_seq"], str(head.get("signed_hash"))
        earlier = known.setdefault((site, seq), digest)
        if earlier != digest:
            problems.append(
                {
                    "problem": "audit_fork",
                    "site": site,
                    "project": None,
                    "seq": seq,
                    "run_id": None,
                    "detail": f"site {site}'s audit log had hash {earlier[:12]}... at line {seq}, and now "
                    f"{digest[:12]}... (head of {head.get('time')}): the log was rewritten and signed again",
                }
            )
        if seq < last.get(site, 0):
            problems.append(
                {
                    "problem": "audit_backwards",
                    "site": site,
                    "project": None,
                    "seq": seq,
                    "run_id": None,
                    "detail": f"site {site}'s audit log had reached line {last[site]}; its head of "
                    f"{head.get('time')} signs line {seq}: lines were cut off",
                }
            )
        last[site] = max(last.get(site, 0), seq)
    return problems


def head_problems(receipts: Iterable[SpendReceipt | dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fork or backwards step among ``receipts`` (in arrival order)."""
    known: dict[tuple[str, int], tuple[str, str]] = {}  # (site, seq) -> (hash, which receipt said so)
    last: dict[tuple[str, str], tuple[int, str]] = {}  # (site, project) -> (head seq, which receipt)
    problems: list[dict[str, Any]] = []
    reported: set[tuple[str, int, str]] = set()
    for item in receipts:
        try:
            r = as_receipt(item)
        except Exception:  # noqa: BLE001  (a malformed mirror line is reconcile's to report)
            continue
        if not r.verifies():
            continue
        said = f"the receipt for seq {r.seq} (run {r.run_id}, {r.time})"
        pairs = [(r.seq, r.entry_hash)]
        head = _head(r)
        if head is not None:
            pairs.append(head)
        for seq, digest in pairs:
            earlier = known.get((r.site_id, seq))
            if earlier is not None and earlier[0] != digest and (r.site_id, seq, digest) not in reported:
                reported.add((r.site_id, seq, digest))
                problems.append(
                    _row(
                        "head_fork",
                        r,
                        seq,
                        f"site {r.site_id}'s ledger held {earlier[0][:12]}... at seq {seq} ({earlier[1]}), and "
                        f"{digest[:12]}... later ({said}): its history was rewritten or rolled back and written on",
                    )
                )
            if earlier is None:
                known[(r.site_id, seq)] = (digest, said)
        if head is not None:
            before = last.get((r.site_id, r.project))
            if before is not None and head[0] < before[0]:
                problems.append(
                    _row(
                        "head_backwards",
                        r,
                        head[0],
                        f"project {r.project}'s receipts at site {r.site_id} had reached ledger head seq {before[0]} "
                        f"({before[1]}); {said} has head seq {head[0]}: the ledger was rolled back",
                    )
                )
            if before is None or head[0] >= before[0]:
                last[(r.site_id, r.project)] = (head[0], said)
    return problems


def _head(r: SpendReceipt) -> tuple[int, str] | None:
    if not isinstance(r.head_seq, int) or not isinstance(r.head_hash, str):
        return None
    return r.head_seq, r.head_hash


def _row(problem: str, r: SpendReceipt, seq: int, detail: str) -> dict[str, Any]:
    return {
        "problem": problem,
        "site": r.site_id,
        "project": r.project,
        "seq": seq,
        "run_id": r.run_id,
        "detail": detail,
    }
