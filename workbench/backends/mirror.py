"""The coordinator's mirror of the sites' signed receipts, as the notebook's frames.

A back end that sees receipts but no ledger (a coordinator folder, a study service)
shows what the receipts say; each site's own ledger stays the source of truth
(``workbench budget reconcile``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

BUDGET_COLUMNS = ["site", "dataset", "project", "epsilon_project", "epsilon_dataset", "delta", "releases"]
HISTORY_COLUMNS = ["site", "seq", "time", "kind", "project", "epsilon_dataset", "epsilon_project", "limit", "purpose"]


def budget_frame(receipts: list[dict[str, Any]]) -> pd.DataFrame:
    """Per site, dataset and project: the epsilon the sites' receipts report.

    ``epsilon_project`` is the latest value the site's ledger signed. ``epsilon_dataset``
    (every project's spending at the site) is not the requester's to know: a site's
    receipts leave it out, so it is NaN unless a receipt stated it.
    """
    rows = [r for r in receipts if r.get("kind") == "commit"]
    if not rows:
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    frame = pd.DataFrame(rows).sort_values("seq")
    out = []
    for (site, dataset, project), g in frame.groupby(["site_id", "dataset", "project"], sort=True):
        last = g.iloc[-1]
        out.append(
            {
                "site": site,
                "dataset": dataset,
                "project": project,
                "epsilon_project": float(last["project_epsilon_after"]),
                "epsilon_dataset": _float_or_nan(last.get("dataset_epsilon_after")),
                "delta": float(last["delta"]),
                "releases": len(g),
            }
        )
    return pd.DataFrame(out, columns=BUDGET_COLUMNS)


def history_frame(receipts: list[dict[str, Any]]) -> pd.DataFrame:
    """Every spend the sites' receipts report, in each site's ledger order."""
    rows = [
        {
            "site": r["site_id"],
            "seq": r["seq"],
            "time": r.get("time", ""),
            "kind": r["kind"],
            "project": r["project"],
            "epsilon_dataset": r.get("dataset_epsilon_after"),
            "epsilon_project": r.get("project_epsilon_after"),
            "limit": None,
            "purpose": r.get("purpose", ""),
        }
        for r in receipts
        if r.get("kind") == "commit"
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS).sort_values(["site", "seq"], ignore_index=True)


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None or (isinstance(value, float) and value != value) else float(value)
