"""One self-contained HTML report of a ledger, for the ethics board.

Burn-down plots (inline PNG), the status table, every entry with its statement in
words, the verification verdict, the key fingerprint and the assumptions behind every
number. No external files, scripts or fonts: it can be mailed or archived as is.

>>> import tempfile, pathlib
>>> from privacy_budgets.ledger import Ledger
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with Ledger.open(folder / "s.ledger", site_id="s") as ledger:
...     _ = ledger.set_cap(dataset="d", epsilon=2.0, delta=1e-5, actor="site", reason="r")
...     path = build_report(ledger, out=folder / "report.html")
>>> "data:image/png;base64," in path.read_text()
True
"""

from __future__ import annotations

import base64
import html
import io
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from privacy_budgets import store
from privacy_budgets.accounting import PLD_VALUE_DISCRETIZATION
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.errors import fmt_epsilon
from privacy_budgets.exports import export_entries, is_sqlite, load_export, read_only
from privacy_budgets.keys import fingerprint
from privacy_budgets.mechanisms import NEIGHBOURING_RELATION
from privacy_budgets.state import changes_of
from privacy_budgets.statements import safe_statement
from privacy_budgets.verification import VerificationReport
from privacy_budgets.views import status_frame

if TYPE_CHECKING:
    from privacy_budgets.ledger import Ledger

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#1f2328}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left;overflow-wrap:anywhere}
th{background:#f6f8fa} .ok{color:#1a7f37} .bad{color:#cf222e}
.verdict{border-left:6px solid;padding:6px 12px;margin:12px 0}
.uncovered{background:#fff8c5} img{max-width:100%}
"""


def build_report(ledger_or_path: Ledger | Path | str, *, out: Path | str) -> Path:
    """Write the report of a Ledger, a ledger file or an export to ``out``; return its path."""
    entries, status, report = _load(ledger_or_path)
    site = entries[0].site_id if entries else "?"
    genesis_key = entries[0].details.get("public_key") if entries else None
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Privacy budget report: "
        f"{html.escape(site)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Privacy budget report: site {html.escape(site)}</h1>",
        _verdict_html(report),
        f"<p>Signing key: <code>{html.escape(fingerprint(genesis_key) if genesis_key else 'none')}"
        f"</code>. {len(entries)} entries.</p>",
        _assumptions_html(),
        "<h2>Status</h2>",
        status.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"),
        "<h2>Burn-down</h2>",
        *_plots(entries),
        "<h2>Every entry</h2>",
        _entries_html(entries),
        "</body></html>",
    ]
    out = Path(out)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _load(source) -> tuple[list[LedgerEntry], pd.DataFrame, VerificationReport]:
    from privacy_budgets.ledger import Ledger

    if isinstance(source, Ledger):
        return source.entries(), source.status(), source.verify()
    path = Path(source)
    report = Ledger.verify_file(path)
    if is_sqlite(path):
        with read_only(path) as conn:
            return list(store.iter_entries(conn)), status_frame(conn), report
    entries = export_entries(load_export(path))
    return entries, status_frame(_replayed(entries)), report


def _replayed(entries: list[LedgerEntry]) -> sqlite3.Connection:
    """An in-memory ledger rebuilt from an export, for the status table."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    with store.write_transaction(conn):
        store.create_schema(conn, site_id=entries[0].site_id if entries else "?", public_key="")
        reservations = {}
        for entry in entries:
            row = reservations.get(entry.reservation_id)
            changes = changes_of(entry, reservation=row)
            for changed in changes.reservations:
                reservations[changed.id] = changed
            store.apply_changes(conn, changes)
            store.insert_entry(conn, entry)
    return conn


def _verdict_html(report: VerificationReport) -> str:
    css, colour = ("ok", "#1a7f37") if report.ok else ("bad", "#cf222e")
    return (
        f"<div class='verdict {css}' style='border-color:{colour}'><b>Verification: "
        f"{'PASSED' if report.ok else 'FAILED'}</b><br>{html.escape(str(report))}</div>"
    )


def _assumptions_html() -> str:
    items = [
        "Unit of privacy: one patient; each dataset holds one row per patient (or a declared "
        "patient id with a bound on rows per patient).",
        f"Neighbouring relation: {NEIGHBOURING_RELATION}.",
        "Accountant: privacy loss distributions (dp_accounting PLD, pessimistic estimate, "
        f"value discretisation {PLD_VALUE_DISCRETIZATION:g}); RDP available as a cross-check. "
        "Each dataset's epsilons are stated at its own delta.",
        "Reservations count as spent until committed or aborted; a commit may charge less "
        "than its reservation, never more.",
        "Releases marked 'uncovered' (only where a site's policy opts in: a true-count floor, "
        "exact evaluation metrics or training losses) carry no DP guarantee and are listed for "
        "the board's judgement.",
        "DP-SGD guarantees assume per-record gradient clipping and Poisson sampling as stated.",
    ]
    return "<h2>Assumptions</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _plots(entries: list[LedgerEntry]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for dataset in sorted({e.dataset for e in entries if e.dataset}):
        scoped = [e for e in entries if e.dataset == dataset]
        series = [("dataset total", None, "epsilon_after", "set_cap")]
        series += [
            (f"project {p}", p, "project_epsilon_after", "allocate")
            for p in sorted({e.project for e in scoped if e.project})
        ]
        for title, project, field, limit_kind in series:
            rows = [e for e in scoped if project is None or e.project == project]
            fig, ax = plt.subplots(figsize=(7, 2.6), dpi=90)
            spent = [(e.seq, getattr(e, field)) for e in rows if getattr(e, field) is not None]
            if spent:
                ax.step(*zip(*spent, strict=False), where="post", label="spent incl. open reservations")
            limits = [(e.seq, _limit_value(e)) for e in rows if e.kind == limit_kind]
            limits = [(seq, value) for seq, value in limits if value is not None]
            if limits:
                xs, ys = zip(*limits, strict=False)
                last = max(e.seq for e in rows)
                ax.step(
                    [*xs, last],
                    [*ys, ys[-1]],
                    where="post",
                    color="#cf222e",
                    linestyle="--",
                    label="cap" if project is None else "allocation",
                )
            ax.set_xlabel("ledger entry (seq)")
            ax.set_ylabel("epsilon")
            ax.set_title(f"{dataset}: {title}")
            ax.legend(loc="upper left", fontsize=8)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            plt.close(fig)
            encoded = base64.b64encode(buffer.getvalue()).decode()
            out.append(
                f"<img alt='burn-down {html.escape(dataset)} {html.escape(title)}' "
                f"src='data:image/png;base64,{encoded}'>"
            )
    return out or ["<p>No dataset has entries yet.</p>"]


def _limit_value(entry: LedgerEntry) -> float | None:
    try:
        return float(entry.details["epsilon"])
    except (ValueError, KeyError, TypeError):  # damaged; the verdict says so
        return None


def _entries_html(entries: list[LedgerEntry]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "seq",
            "time (UTC)",
            "kind",
            "dataset",
            "project",
            "actor",
            "epsilon",
            "dataset total after",
            "statement",
        )
    )
    rows = []
    for e in entries:
        css = " class='uncovered'" if e.kind == "uncovered" else ""
        cells = (
            e.seq,
            e.time,
            e.kind,
            e.dataset or "",
            e.project or "",
            e.actor,
            fmt_epsilon(e.epsilon) if e.epsilon is not None else "",
            fmt_epsilon(e.epsilon_after) if e.epsilon_after is not None else "",
            safe_statement(e),
        )
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"
