"""DataFrames for people: the status of every budget and the history of every entry.

pandas is imported here only, so a node that merely reserves and commits never pays for it.

>>> import tempfile, pathlib
>>> from privacy_budgets.ledger import Ledger
>>> with Ledger.open(pathlib.Path(tempfile.mkdtemp()) / "s.ledger", site_id="s") as ledger:
...     _ = ledger.set_cap(dataset="d", epsilon=2.0, delta=1e-5, actor="site", reason="r")
...     _ = ledger.allocate(dataset="d", project="p", epsilon=1.0, actor="board", reason="r")
...     ledger.status()[["project", "limit", "spent", "remaining", "state"]]
          project  limit  spent  remaining state
0  (all projects)    2.0    0.0        2.0    ok
1               p    1.0    0.0        1.0    ok
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable

import pandas as pd

from privacy_budgets import store
from privacy_budgets.accounting import epsilon_of_counts
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.state import ALL_PROJECTS, DATASET_CAP
from privacy_budgets.statements import safe_statement

STATUS_COLUMNS = [
    "dataset",
    "project",
    "limit_kind",
    "limit",
    "delta",
    "spent",
    "reserved",
    "remaining",
    "open_reservations",
    "n_entries",
    "uncovered_releases",
    "state",
]
HISTORY_COLUMNS = [
    "seq",
    "time",
    "kind",
    "dataset",
    "project",
    "actor",
    "purpose",
    "run_id",
    "round",
    "query_id",
    "mechanism",
    "reservation_id",
    "epsilon",
    "epsilon_after",
    "project_epsilon_after",
    "delta",
    "entry_hash",
    "statement",
]


def status_frame(conn: sqlite3.Connection) -> pd.DataFrame:
    """One row per dataset and per project on it (read inside the caller's snapshot).

    ``spent`` is what was committed, ``reserved`` what open reservations add to it
    (composed, so not a plain difference of sums), ``remaining`` the limit minus both.
    """
    tallies: dict[tuple[str, str | None], dict[str, int]] = {}
    for dataset, project, kind, n in conn.execute(
        "SELECT dataset, project, kind, COUNT(*) FROM entries WHERE dataset IS NOT NULL GROUP BY dataset, project, kind"
    ):
        tallies.setdefault((dataset, project), {})[kind] = n
    open_rows = store.open_reservation_rows(conn)
    datasets = sorted({d for d, _ in tallies} | {d for (d,) in conn.execute("SELECT dataset FROM limits")})
    rows = []
    for dataset in datasets:
        limits = store.limits_of(conn, dataset=dataset)
        cap = limits.get(DATASET_CAP)
        delta = None if cap is None else cap.delta
        projects = sorted({p for (d, p) in tallies if d == dataset and p} | (set(limits) - {DATASET_CAP}))
        for project in [None, *projects]:
            limit = cap if project is None else limits.get(project)
            scope = [t for (d, p), t in tallies.items() if d == dataset and (project is None or p == project)]
            spent, total = _spent(conn, dataset, project, delta)
            limit_value = math.nan if limit is None else limit.epsilon
            remaining = limit_value - total
            rows.append(
                {
                    "dataset": dataset,
                    "project": ALL_PROJECTS if project is None else project,
                    "limit_kind": "dataset cap" if project is None else "project allocation",
                    "limit": limit_value,
                    "delta": math.nan if delta is None else delta,
                    "spent": spent,
                    "reserved": total - spent,
                    "remaining": remaining,
                    "open_reservations": sum(
                        1 for r in open_rows if r.dataset == dataset and project in (None, r.project)
                    ),
                    "n_entries": sum(sum(t.values()) for t in scope),
                    "uncovered_releases": sum(t.get("uncovered", 0) for t in scope),
                    "state": _state(limit, remaining),
                }
            )
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def _spent(conn, dataset, project, delta) -> tuple[float, float]:
    if delta is None:
        return 0.0, 0.0
    committed = store.multiset(conn, dataset=dataset, project=project, include_reserved=False)
    everything = store.multiset(conn, dataset=dataset, project=project)
    return (
        epsilon_of_counts(counts=committed, delta=delta),
        epsilon_of_counts(counts=everything, delta=delta),
    )


def _state(limit, remaining: float) -> str:
    if limit is None:
        return "no limit (closed)"
    if remaining < 0:
        return "over cap"
    return "ok"


def history_frame(entries: Iterable[LedgerEntry]) -> pd.DataFrame:
    """Every entry as a row, with its privacy statement."""
    rows = []
    for entry in entries:
        row = {name: getattr(entry, name) for name in HISTORY_COLUMNS if name != "statement"}
        row["statement"] = safe_statement(entry)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return frame.astype({"round": "Int64"})
