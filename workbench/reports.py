"""The ethics board's side of a workbench that holds the ledgers (a simulation): one HTML
report per site, and who is approved for what."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig


class BudgetReports:
    """Where each site's HTML report was written, and whether its ledger verified."""

    def __init__(self, *, frame: pd.DataFrame) -> None:
        self.frame = frame

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.frame["report"]]

    def __repr__(self) -> str:
        return f"BudgetReports\n{self.frame.to_string(index=False)}"

    def _repr_html_(self) -> str:
        failed = "<b style='color:#cf222e'>FAILED</b>"
        rows = "".join(
            f"<tr><td>{html.escape(r['site'])}</td><td><a href='{html.escape(Path(r['report']).resolve().as_uri())}' "
            f"target='_blank'>{html.escape(Path(r['report']).name)}</a></td>"
            f"<td>{'verified' if r['verified'] else failed}</td>"
            f"<td>{html.escape(str(r['verdict']))}</td></tr>"
            for _, r in self.frame.iterrows()
        )
        return (
            "<h4>Ethics board reports</h4><table><tr><th>site</th><th>report</th><th>ledger</th>"
            f"<th>verification</th></tr>{rows}</table>"
        )


def build_reports(*, sites: list[SiteConfig], out: Path) -> BudgetReports:
    """One self-contained HTML report per site's ledger in ``out``, with its verification."""
    from privacy_budgets.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in sites:
        with open_site_ledger(s) as ledger:
            verdict = ledger.verify()
            path = build_report(ledger, out=out / f"{s.site_id}.html")
        rows.append({"site": s.site_id, "report": str(path), "verified": verdict.ok, "verdict": str(verdict)})
    return BudgetReports(frame=pd.DataFrame(rows))


def approvals_frame(*, sites: list[SiteConfig]) -> pd.DataFrame:
    """Every site's approvals: which researchers (name, key fingerprint) its ethics board
    approved for which project, and at which ledger entry."""
    from privacy_budgets import store
    from privacy_budgets.authority import GOVERNED_KINDS, Governance
    from privacy_budgets.exports import read_only
    from privacy_budgets.signatures import SshPublicKey

    rows = []
    for s in sites:
        with read_only(s.ledger_path) as conn:
            governance = Governance.replay(store.governed_entries(conn, kinds=GOVERNED_KINDS))
        for (_dataset, project), approval in sorted(governance.approvals.items()):
            for item in approval.researchers:
                rows.append(
                    {
                        "site": s.site_id,
                        "project": project,
                        "researcher": item["name"],
                        "key": SshPublicKey.from_openssh(item["key"]).fingerprint,
                        "approved_at_seq": approval.seq,
                    }
                )
    return pd.DataFrame(rows, columns=["site", "project", "researcher", "key", "approved_at_seq"])
