"""What ``Workbench.ask`` returns: per-site and pooled answers, what they cost, plots."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from federation.analytics.estimates import POOLED
from federation.analytics.query import Query
from federation.coordinator.analytics import SiteQueryReply, combine
from federation.protocol.query_request import QueryRequest

SUPPRESSED = "suppressed"
_VALUE_COLUMNS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "n",
    "proportion",
    "proportion_se",
    "at_risk",
    "events",
    "se_sampling",
    "ci_low_total",
    "ci_high_total",
)


@dataclass
class QueryResult:
    """The answer to one query.

    ``frame``: one row per site (and per stratum and cell) and the pooled rows
    (site "pooled"), with ``estimate``, ``se``, ``ci_low``/``ci_high`` (the DP noise's
    interval at ``level``), ``n`` (the noisy count behind the row) and ``suppressed``
    (the value is NaN there, never 0). ``sites``: each site's status, what this
    answer cost it (0 for a replay) and why it refused, if it did. ``table`` is what
    is shown: the pooled rows, and the per-site rows when the query's ``by`` had "site".
    """

    query: Query
    project: str
    frame: pd.DataFrame
    sites: pd.DataFrame
    receipts: list[dict[str, Any]] = field(default_factory=list)
    level: float = 0.95

    @classmethod
    def from_replies(cls, *, request: QueryRequest, replies: list[SiteQueryReply], level: float) -> QueryResult:
        rows = []
        for r in replies:
            rules = r.release.rules if r.release is not None else None
            rows.append(
                {
                    "site": r.site_id,
                    "status": r.reply.status,
                    "replay": r.replay,
                    "epsilon": r.epsilon,
                    "noise_multiplier": r.reply.info.get("noise-multiplier"),
                    "min_cell_size": rules.min_cell_size if rules else None,
                    "true_count_floor": rules.true_count_floor if rules else None,
                    "reason": r.reply.reason,
                }
            )
        receipts = [receipt for r in replies for receipt in r.reply.receipts]
        return cls(
            query=request.query,
            project=request.project,
            sites=pd.DataFrame(rows),
            frame=combine(request=request, replies=replies, level=level),
            receipts=receipts,
            level=level,
        )

    # --- views ----------------------------------------------------------------------

    @property
    def pooled(self) -> pd.DataFrame:
        return self._rows(self.frame["site"] == POOLED) if not self.frame.empty else self.frame

    @property
    def by_site(self) -> pd.DataFrame:
        return self._rows(self.frame["site"] != POOLED) if not self.frame.empty else self.frame

    @property
    def table(self) -> pd.DataFrame:
        return self.frame.reset_index(drop=True) if self.query.per_site else self.pooled

    @property
    def answered(self) -> list[str]:
        return list(self.sites.loc[self.sites["status"] == "ok", "site"]) if not self.sites.empty else []

    @property
    def epsilon(self) -> pd.Series:
        """What this answer cost each site now (0 where replayed or refused)."""
        return self.sites.set_index("site")["epsilon"]

    def _rows(self, mask) -> pd.DataFrame:
        return self.frame[mask].reset_index(drop=True)

    # --- words ----------------------------------------------------------------------

    def statement(self) -> str:
        q = self.query
        ok = self.sites[self.sites["status"] == "ok"] if not self.sites.empty else self.sites
        parts = []
        refused = self.sites[self.sites["status"] != "ok"] if not self.sites.empty else self.sites
        if len(ok):
            fresh = ok[~ok["replay"]]
            noise = "discrete Gaussian" if q.mechanism == "gaussian" else "discrete Laplace"
            parts.append(
                f"Answered by {len(ok)} of {len(self.sites)} sites; the pooled rows cover those sites. "
                f"Each site added {noise} noise to whole numbers itself, from a secure source, and charged its "
                "own ledger"
                + (
                    f": epsilon {fresh['epsilon'].max():.3g} at most for this query (at the site's delta)"
                    if len(fresh)
                    else ""
                )
                + "."
            )
            if ok["replay"].any():
                parts.append(
                    f"Replayed at no cost (answer already released on the same data): "
                    f"{', '.join(ok.loc[ok['replay'], 'site'])}."
                )
            minimum = int(ok["min_cell_size"].min())
            parts.append(f"Groups whose noisy count is below the site's minimum ({minimum} or more) are suppressed.")
            floors = ok["true_count_floor"].dropna()
            if len(floors):
                parts.append(
                    "A floor on true counts was applied at "
                    + ", ".join(ok.loc[floors.index, "site"])
                    + ": not covered by DP, recorded in those ledgers as an uncovered release."
                )
            interval = f"Intervals: {self.level:.0%} for the DP noise (vs. the exact answer on the same records)"
            if q.kind == "survival":
                interval += "; the '_total' intervals add sampling error (Greenwood)"
            parts.append(interval + ".")
        for _, row in refused.iterrows():
            parts.append(f"Site {row['site']} {row['status']}: {row['reason']}")
        return " ".join(parts)

    def __repr__(self) -> str:
        title = self.query.label or self.query.describe()
        return f"QueryResult({title!r}, project={self.project!r}, sites answered={self.answered})\n{self.table}"

    def _display_table(self) -> pd.DataFrame:
        """The table as shown: a suppressed value reads "suppressed", never a number."""
        table = self.table.copy()
        if table.empty:
            return table
        hidden = [c for c in ("low", "high") if c in table]
        if "note" in table and not table["note"].astype(bool).any():
            hidden.append("note")
        table = table.drop(columns=hidden)
        values = [c for c in _VALUE_COLUMNS if c in table]
        table[values] = table[values].astype(object)
        suppressed = table["suppressed"].to_numpy(bool)
        for column in values:
            table.loc[suppressed, column] = SUPPRESSED if column == "estimate" else ""
        return table.drop(columns=["suppressed"])

    def _repr_html_(self) -> str:
        title = html.escape(self.query.label or self.query.describe())
        body = self._display_table().to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
        return (
            f"<h4>{title}</h4><p>project {html.escape(self.project)}, query {self.query.query_id}</p>"
            f"{body}<p><small>{html.escape(self.statement())}</small></p>"
        )

    # --- plots ----------------------------------------------------------------------

    def plot(self, *, ax=None, interval: str = "total"):
        """Survival curves with shaded intervals ('total' adds sampling error to the
        noise; 'noise' shows the noise alone), bars with intervals for histograms, and
        points with intervals otherwise. One line or group per site, and the pooled one."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        rows = self.frame[~self.frame["suppressed"]] if not self.frame.empty else self.frame
        if self.query.kind == "survival":
            self._plot_survival(ax, rows, interval)
        elif self.query.kind in ("histogram", "crosstab"):
            self._plot_bars(ax, rows)
        else:
            self._plot_points(ax, rows)
        ax.set_title(self.query.label or self.query.describe(), fontsize=10)
        return ax

    def _groups(self, rows: pd.DataFrame):
        keys = ["site", *self.query.by]
        for key, group in rows.groupby(keys, sort=False, observed=True):
            key = key if isinstance(key, tuple) else (key,)
            yield ", ".join(str(k) for k in key), group

    def _plot_survival(self, ax, rows, interval: str) -> None:
        low, high = ("ci_low_total", "ci_high_total") if interval == "total" else ("ci_low", "ci_high")
        start = self.query.bins[0]
        bottom = 1.0
        for name, g in self._groups(rows):
            t = np.concatenate([[start], g["time"].to_numpy(float)])
            s = np.concatenate([[1.0], g["estimate"].to_numpy(float)])
            (line,) = ax.step(t, s, where="post", label=name, lw=2.2 if name.startswith(POOLED) else 1.2)
            lo = np.concatenate([[1.0], g[low].to_numpy(float)])
            hi = np.concatenate([[1.0], g[high].to_numpy(float)])
            ax.fill_between(t, lo, hi, step="post", alpha=0.15, color=line.get_color())
            bottom = min(bottom, float(np.nanmin(lo)))
        ax.set(xlabel=self.query.column, ylabel="survival", ylim=(max(0.0, bottom - 0.05), 1.01))
        ax.legend(fontsize=8)

    def _plot_bars(self, ax, rows) -> None:
        cells = [c for c in rows.columns if c in ((self.query.column,) + self.query.columns)]
        rows = rows.assign(_cell=rows[cells].astype(str).agg(" / ".join, axis=1))
        labels = list(dict.fromkeys(rows["_cell"]))
        groups = list(self._groups(rows))
        width = 0.8 / max(len(groups), 1)
        for i, (name, g) in enumerate(groups):
            x = np.array([labels.index(c) for c in g["_cell"]]) + i * width
            err = np.vstack([g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]])
            ax.bar(x, g["estimate"], width=width, yerr=err, label=name, capsize=2)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="count (noisy)")
        ax.legend(fontsize=8)

    def _plot_points(self, ax, rows) -> None:
        names, values, lows, highs = [], [], [], []
        for name, g in self._groups(rows):
            for _, r in g.iterrows():
                suffix = f" (p={r['probability']:g})" if "probability" in r else ""
                names.append(name + suffix)
                values.append(r["estimate"])
                lows.append(r["ci_low"])
                highs.append(r["ci_high"])
        y = np.arange(len(names))
        values, lows, highs = (np.array(v, dtype=float) for v in (values, lows, highs))
        ax.errorbar(values, y, xerr=np.vstack([values - lows, highs - values]), fmt="o", capsize=3)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set(xlabel=self.query.kind)


class QueryResults(list):
    """The answers of one ``Workbench.ask`` batch, in the order asked."""

    def costs(self) -> pd.DataFrame:
        """One row per query and site: status, replay, epsilon charged now."""
        frames = []
        for result in self:
            frame = result.sites[["site", "status", "replay", "epsilon"]].copy()
            frame.insert(0, "query", result.query.label or result.query.describe())
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _repr_html_(self) -> str:
        return "<hr>".join(result._repr_html_() for result in self)
