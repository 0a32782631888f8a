"""What the hospitals hold, as a data scientist first sees it.

The schema is public (the data dictionary). How many patients each hospital has is
not: it is asked as a DP count, noised and charged by each hospital itself, so that
describing the federation is covered by the same guarantee as everything after it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from workbench.query_results import QueryResult


@dataclass
class Description:
    """``schema``: one row per column; ``sites``: one row per hospital with its noisy
    number of patients and that number's interval; ``counts``: the query result behind
    it (its statement, its cost)."""

    schema: pd.DataFrame
    sites: pd.DataFrame
    counts: QueryResult
    project: str = "describe"  # the project each site's ledger charged for the counts

    def statement(self) -> str:
        return (
            "Column kinds, units and ranges come from the public data dictionary, not from the data. "
            f"Numbers of patients are differentially private counts, charged to project '{self.project}' in "
            "each hospital's ledger: " + self.counts.statement()
        )

    def __repr__(self) -> str:
        return (
            f"Description({len(self.sites)} sites, {len(self.schema)} columns)\n"
            f"{self.sites.to_string(index=False, float_format=lambda v: f'{v:,.0f}')}\n\n{self.statement()}"
        )

    def _repr_html_(self) -> str:
        return (
            "<h4>The hospitals</h4>"
            + self.sites.to_html(index=False, na_rep="suppressed", float_format=lambda v: f"{v:,.0f}")
            + f"<p><small>{html.escape(self.statement())}</small></p>"
            + "<details><summary>Schema (public data dictionary)</summary>"
            + self.schema.to_html(index=False, na_rep="")
            + "</details>"
        )


def site_rows(*, sites: pd.DataFrame, counts: QueryResult) -> pd.DataFrame:
    """Each site's file and its noisy count (NaN where suppressed or refused)."""
    frame = counts.by_site
    noisy = {}
    if not frame.empty:
        for _, row in frame.iterrows():
            value = float("nan") if row["suppressed"] else float(row["estimate"])
            noisy[row["site"]] = (value, float(row["ci_low"]), float(row["ci_high"]))
    status = counts.sites.set_index("site") if not counts.sites.empty else None
    rows = []
    for _, s in sites.iterrows():
        value, low, high = noisy.get(s["site"], (float("nan"),) * 3)
        rows.append(
            {
                "site": s["site"],
                "dataset": s["dataset"],
                "patients (noisy)": value,
                "interval low": low,
                "interval high": high,
                "status": status.loc[s["site"], "status"] if status is not None and s["site"] in status.index else "",
            }
        )
    return pd.DataFrame(rows)


def schema_rows(*, dictionary) -> pd.DataFrame:
    frame = dictionary.to_frame()
    keep = [
        c for c in ("name", "kind", "role", "unit", "minimum", "maximum", "categories", "description") if c in frame
    ]
    return frame[keep]
