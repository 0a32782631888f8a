"""Every site's privacy spending over time: a table and a burn-down plot.

Read straight from the sites' ledgers (the source of truth), entry by entry: the
dataset's total after each entry beside its cap, and each project's total beside its
allocation.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig


def budget_history(*, sites: Iterable[SiteConfig]) -> pd.DataFrame:
    """One row per ledger entry that moved a total or a limit, every site."""
    rows = []
    for site in sites:
        with open_site_ledger(site) as ledger:
            for e in ledger.entries(dataset=site.dataset):
                limit = None
                if e.kind in ("set_cap", "allocate"):
                    try:
                        limit = float(e.details["epsilon"])
                    except (KeyError, TypeError, ValueError):
                        limit = None
                rows.append(
                    {
                        "site": site.site_id,
                        "seq": e.seq,
                        "time": e.time,
                        "kind": e.kind,
                        "project": e.project,
                        "epsilon_dataset": e.epsilon_after,
                        "epsilon_project": e.project_epsilon_after,
                        "limit": limit,
                        "purpose": e.purpose,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=["site", "seq", "time", "kind", "project", "epsilon_dataset", "epsilon_project", "limit", "purpose"],
    )


def plot_burn_down(history: pd.DataFrame, *, axes=None):
    """One panel per site: the dataset's epsilon (all projects) over its ledger entries,
    each project's own line, and the cap as a dashed line."""
    import matplotlib.pyplot as plt

    sites = list(dict.fromkeys(history["site"]))
    if axes is None:
        _, axes = plt.subplots(1, max(len(sites), 1), figsize=(3.2 * max(len(sites), 1), 3), sharey=True, squeeze=False)
        axes = axes[0]
    for ax, site in zip(axes, sites, strict=False):
        h = history[history["site"] == site]
        total = h.dropna(subset=["epsilon_dataset"])
        ax.step(total["seq"], total["epsilon_dataset"], where="post", color="black", lw=2, label="all projects")
        for project, g in h.dropna(subset=["epsilon_project"]).groupby("project"):
            ax.step(g["seq"], g["epsilon_project"], where="post", lw=1, label=project)
        caps = h[(h["kind"] == "set_cap") & h["limit"].notna()]
        if not caps.empty:
            ax.axhline(float(caps["limit"].iloc[-1]), color="#cf222e", ls="--", lw=1, label="cap")
        ax.set(title=site, xlabel="ledger entry")
    if len(axes):
        axes[0].set_ylabel("epsilon spent")
        axes[-1].legend(fontsize=7, loc="upper left")
    return axes
