"""The coordinator's mirror of receipts, checked against a site's ledger export.

The site's ledger is the source of truth; the coordinator keeps the signed receipt of
every spend it received. Reconciling the two finds entries removed or rewritten at the
site, receipts the site cannot account for, and spends the coordinator never heard of.

>>> import tempfile, pathlib
>>> from privacy_budgets.ledger import Ledger
>>> from privacy_budgets.mechanisms import gaussian_event
>>> with Ledger.open(pathlib.Path(tempfile.mkdtemp()) / "s.ledger", site_id="s") as ledger:
...     _ = ledger.set_cap(dataset="d", epsilon=2.0, delta=1e-5, actor="site", reason="r")
...     _ = ledger.allocate(dataset="d", project="p", epsilon=2.0, actor="board", reason="r")
...     spend = ledger.commit(ledger.reserve(dataset="d", project="p", actor="a",
...         event=gaussian_event(noise_multiplier=10.0), purpose="count"))
...     receipts = [ledger.receipt(spend).to_dict()]
...     frame = reconcile(receipts=receipts, ledger_export=ledger.export())
>>> frame.empty, frame.attrs["verdict"].split(":")[0]
(True, 'Reconciled')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from privacy_budgets.exports import export_entries, load_export
from privacy_budgets.head_chain import head_problems
from privacy_budgets.receipts import SpendReceipt, as_receipt
from privacy_budgets.verification import verify_entries

COLUMNS = [
    "problem",
    "seq",
    "dataset",
    "project",
    "run_id",
    "round",
    "receipt_epsilon",
    "ledger_epsilon",
    "detail",
]
RELEASES = ("commit", "uncovered")  # the entries a site sends a receipt for
_COMPARED = (
    ("kind", "kind"),
    ("epsilon", "epsilon"),
    ("project_epsilon_after", "project_epsilon_after"),
    ("dataset_epsilon_after", "epsilon_after"),
    ("delta", "delta"),
    ("mechanism", "mechanism"),
    ("dataset", "dataset"),
    ("project", "project"),
)


def reconcile(
    *,
    receipts: Iterable[SpendReceipt | dict[str, Any]],
    ledger_export: dict[str, Any] | Path | str,
) -> pd.DataFrame:
    """Every mismatch between ``receipts`` and the site's export, one row each.

    Problems: ``export_fails_verification``, ``unknown_to_site`` (another site, or a
    spend the site's ledger has no trace of), ``missing_entry`` (beyond the ledger's
    head: entries removed), ``different_hash``, ``different_epsilon``,
    ``bad_signature``, ``duplicate_receipt``, ``unknown_to_coordinator`` (a commit or
    uncovered release without a receipt), and from the receipts alone ``head_fork`` and
    ``head_backwards`` (the ledger heads they carry fork or go back: ``head_chain.py``). Empty means reconciled; ``frame.attrs["verdict"]`` says
    so in one line.
    """
    export = load_export(ledger_export)
    entries = export_entries(export)
    site_id, public_key = export["site_id"], export["public_key"]
    rows: list[dict[str, Any]] = []
    report = verify_entries(entries, public_key=public_key)
    if not report.ok:
        rows.append(_row("export_fails_verification", None, report.first_bad_seq, detail=report.problem))
    by_seq = {e.seq: e for e in entries}
    public_key = _keys(entries) or public_key  # a receipt signed before a key rotation verifies under its key
    head = max(by_seq, default=0)
    known_reservations = {e.reservation_id for e in entries if e.reservation_id}
    seen: Counter[tuple[str, int]] = Counter()
    n_receipts = 0
    receipts = list(receipts)
    for problem in head_problems(receipts):  # the mirror's own chain of heads (head_chain.py)
        rows.append(
            {**_row(problem["problem"], None, problem["seq"], detail=problem["detail"]), "project": problem["project"]}
        )
    for item in receipts:
        n_receipts += 1
        r = as_receipt(item)
        seen[(r.site_id, r.seq)] += 1
        entry = by_seq.get(r.seq)
        problem, detail = _judge(r, entry, site_id, head, public_key, known_reservations)
        if seen[(r.site_id, r.seq)] == 2:
            rows.append(_row("duplicate_receipt", r, r.seq, detail="two receipts for one seq"))
        if problem:
            rows.append(_row(problem, r, r.seq, entry=entry, detail=detail))
    for entry in entries:
        if entry.kind in RELEASES and (site_id, entry.seq) not in seen:
            rows.append(
                _row(
                    "unknown_to_coordinator",
                    None,
                    entry.seq,
                    entry=entry,
                    detail=f"the site recorded this release ({entry.kind}) but the coordinator holds no receipt for it",
                )
            )
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"seq": "Int64", "round": "Int64"})
    frame.attrs["verdict"] = _verdict(frame, n_receipts, site_id, head)
    return frame


def _judge(r, entry, site_id, head, public_key, known_reservations):
    if r.site_id != site_id:
        return "unknown_to_site", f"the receipt names site {r.site_id!r}, the export is {site_id!r}"
    if r.seq > head:
        return "missing_entry", f"the site's ledger ends at seq {head}; the entry was removed"
    if entry is None:
        return "missing_entry", f"the site's ledger has no entry at seq {r.seq} (deleted)"
    if entry.entry_hash != r.entry_hash:
        if r.reservation_id not in known_reservations:
            return "unknown_to_site", "the site's ledger has no trace of this reservation"
        return "different_hash", (
            f"entry seq {r.seq} has hash {entry.entry_hash[:12]}..., the receipt {r.entry_hash[:12]}..."
        )
    signed = any(r.verifies(k) for k in public_key) if isinstance(public_key, list) else r.verifies(public_key)
    for theirs, ours in _COMPARED:
        if theirs == "dataset_epsilon_after" and r.dataset_epsilon_after is None:
            continue  # a receipt sent to a requester does not state the dataset's total
        if getattr(r, theirs) != getattr(entry, ours):
            return "different_epsilon", (
                f"receipt {theirs} {getattr(r, theirs)!r}, ledger {getattr(entry, ours)!r}"
                + ("" if signed else "; the receipt's signature does not verify (edited)")
            )
    if not signed:
        return "bad_signature", "the receipt is not signed by the site's key"
    return None, None


def _keys(entries) -> list[str]:
    keys = []
    for e in entries:
        try:
            if e.kind == "genesis":
                keys.append(str(e.details["public_key"]))
            elif e.kind == "rotate_key":
                keys.append(str(e.details["new_public_key"]))
        except (ValueError, KeyError):
            continue
    return keys


def _row(problem, receipt, seq, *, entry=None, detail=None) -> dict[str, Any]:
    source = receipt if receipt is not None else entry
    return {
        "problem": problem,
        "seq": seq,
        "dataset": getattr(source, "dataset", None),
        "project": getattr(source, "project", None),
        "run_id": getattr(source, "run_id", None),
        "round": getattr(source, "round", None),
        "receipt_epsilon": None if receipt is None else receipt.epsilon,
        "ledger_epsilon": None if entry is None else entry.epsilon,
        "detail": detail,
    }


def _verdict(frame: pd.DataFrame, n_receipts: int, site_id: str, head: int) -> str:
    where = f"site {site_id}'s ledger (head seq {head})"
    if frame.empty:
        return f"Reconciled: {n_receipts} receipts match the releases recorded in {where}."
    kinds = ", ".join(f"{n} {k}" for k, n in frame["problem"].value_counts().items())
    return f"NOT reconciled: {len(frame)} mismatches ({kinds}) between {n_receipts} receipts and {where}."
