"""One self-contained HTML report of a ledger, for the ethics board: read in five minutes.

It leads with the verdict and one section per project (purpose, researchers, every
decision with who signed it, epsilon spent against the allocation, releases by kind,
releases without a guarantee), then the board and its decisions, the datasets with
their burn-down plots (inline PNG) and the assumptions; every entry with its statement
in words comes last, folded (``<details>``), since it grows with every round of every
study. No external files, scripts or fonts: it can be mailed or archived as is.

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
from privacy_budgets.authority import GOVERNED_KINDS, Governance
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.errors import fmt_epsilon
from privacy_budgets.exports import export_entries, is_sqlite, load_export, read_only
from privacy_budgets.keys import fingerprint
from privacy_budgets.mechanisms import NEIGHBOURING_RELATION
from privacy_budgets.proposals import describe_action
from privacy_budgets.state import ALL_PROJECTS, changes_of
from privacy_budgets.statements import release_kind, safe_statement
from privacy_budgets.verification import VerificationReport
from privacy_budgets.views import status_frame

if TYPE_CHECKING:
    from privacy_budgets.ledger import Ledger

# Table cells never break inside a word (a column is at least as wide as its longest
# word); only the long free text of a statement may wrap anywhere.
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#1f2328;line-height:1.4}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left;overflow-wrap:normal;word-break:normal}
th{background:#f6f8fa} .ok{color:#1a7f37} .bad{color:#cf222e} .num{text-align:right;white-space:nowrap}
td.long{overflow-wrap:anywhere;min-width:16em} .nowrap{white-space:nowrap}
.verdict{border-left:6px solid;padding:6px 12px;margin:12px 0}
.uncovered{background:#fff8c5} img{max-width:100%}
.project{border:1px solid #d0d7de;border-radius:6px;padding:4px 16px 12px;margin:14px 0}
.bar{display:inline-block;width:160px;height:10px;background:#eaeef2;vertical-align:middle;margin-left:8px}
.bar span{display:block;height:10px;background:#0969da} .bar span.over{background:#cf222e}
summary{cursor:pointer;font-weight:600;font-size:1.2em;margin:16px 0 8px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0} dt{font-weight:600} dd{margin:0}
"""


def build_report(ledger_or_path: Ledger | Path | str, *, out: Path | str) -> Path:
    """Write the report of a Ledger, a ledger file or an export to ``out``; return its path."""
    entries, status, report = _load(ledger_or_path)
    site = entries[0].site_id if entries else "?"
    genesis_key = entries[0].details.get("public_key") if entries else None
    governance = Governance.replay(entries)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Privacy budget report: "
        f"{html.escape(site)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Privacy budget report: site {html.escape(site)}</h1>",
        _verdict_html(report),
        _summary_html(entries, governance, genesis_key),
        "<h2>Projects</h2>",
        *_projects_html(entries, status),
        "<h2>The board and its decisions</h2>",
        _board_html(entries, governance),
        "<h2>Datasets</h2>",
        _table(
            status[status["project"] == ALL_PROJECTS].drop(columns=["project", "limit_kind"]),
        ),
        *_plots(entries),
        _assumptions_html(),
        f"<details><summary>Every entry ({len(entries)}), with its statement in words</summary>",
        _entries_html(entries),
        "</details></body></html>",
    ]
    out = Path(out)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _table(frame: pd.DataFrame) -> str:
    frame = frame.rename(columns=lambda c: str(c).replace("_", " "))
    return frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def _summary_html(entries: list[LedgerEntry], governance: Governance, genesis_key: str | None) -> str:
    board = governance.board
    who = (
        f"a board, quorum {html.escape(board.describe())} (since entry {governance.board_seq}): caps and allocations "
        "rise, researchers are approved and the board changes only with that many members' signatures"
        if board is not None
        else "no board recorded (legacy mode: caps and allocations are one-person decisions)"
    )
    return (
        "<dl>"
        f"<dt>Ledger</dt><dd><code>{html.escape(str(governance.ledger_id or '')[:16])}</code>, {len(entries)} entries, "
        f"from {html.escape(_day(entries[0].time) if entries else '')} to "
        f"{html.escape(_day(entries[-1].time) if entries else '')}</dd>"
        f"<dt>Signing key</dt><dd><code>{html.escape(fingerprint(genesis_key) if genesis_key else 'none')}</code></dd>"
        f"<dt>Authority</dt><dd>{who}</dd>"
        "</dl>"
    )


def _day(time: str) -> str:
    return time.replace("T", " ")[:16]


def load_for_report(source) -> tuple[list[LedgerEntry], pd.DataFrame, VerificationReport]:
    """Entries, status and verdict of a Ledger, a ledger file or an export."""
    return _load(source)


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
            _day(e.time),
            e.kind,
            e.dataset or "",
            e.project or "",
            e.actor,
            fmt_epsilon(e.epsilon) if e.epsilon is not None else "",
            fmt_epsilon(e.epsilon_after) if e.epsilon_after is not None else "",
            safe_statement(e),
        )
        tds = [f"<td>{html.escape(str(c))}</td>" for c in cells[:-1]]
        tds.append(f"<td class='long'>{html.escape(str(cells[-1]))}</td>")
        rows.append(f"<tr{css}>" + "".join(tds) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


# --- one section per project ----------------------------------------------------------


def _projects_html(entries: list[LedgerEntry], status: pd.DataFrame) -> list[str]:
    projects = sorted({e.project for e in entries if e.project})
    if not projects:
        return ["<p>No project has an allocation or a release yet.</p>"]
    return [_project_html(project, [e for e in entries if e.project == project], status) for project in projects]


def _project_html(project: str, entries: list[LedgerEntry], status: pd.DataFrame) -> str:
    approvals = {e.dataset: e for e in entries if e.kind == "approve"}  # the newest per dataset
    allocations = [e for e in entries if e.kind == "allocate"]
    purposes = [str(e.details.get("purpose")) for e in approvals.values() if e.details.get("purpose")]
    purpose = (
        "; ".join(dict.fromkeys(purposes)) or "; ".join(dict.fromkeys(e.purpose for e in allocations)) or "not stated"
    )
    researchers = []
    for e in approvals.values():
        for r in e.details.get("researchers", []):
            researchers.append(f"{r.get('name')} (<code>{html.escape(_key_fingerprint(r.get('key')))}</code>)")
    parts = [
        f"<section class='project'><h3>Project {html.escape(project)}</h3><dl>",
        f"<dt>Purpose</dt><dd>{html.escape(purpose)}</dd>",
        "<dt>Researchers</dt><dd>"
        + (", ".join(dict.fromkeys(researchers)) if researchers else "none approved in this ledger")
        + "</dd></dl>",
        "<h4>Decisions</h4>",
        _decisions_table([e for e in entries if e.kind in GOVERNED_KINDS]),
        "<h4>Epsilon spent against the allocation</h4>",
        _spending_table(status[status["project"] == project]),
        "<h4>Releases</h4>",
        _releases_table(entries),
    ]
    uncovered = [e for e in entries if e.kind == "uncovered"]
    if uncovered:
        parts += ["<h4 class='bad'>Released without a DP guarantee</h4>", _uncovered_table(uncovered)]
    parts.append("</section>")
    return "".join(parts)


def _key_fingerprint(line: object) -> str:
    from privacy_budgets.signatures import SignatureInvalid, SshPublicKey

    try:
        return SshPublicKey.from_openssh(str(line)).fingerprint
    except SignatureInvalid:
        return "unreadable key"


def _signed_by(entry: LedgerEntry) -> str:
    try:
        authority = entry.details.get("authority")
    except ValueError:
        return "unreadable"
    if not isinstance(authority, dict):
        return f"one person: {entry.actor}"
    names = []
    for signer in authority.get("signed_by") or []:
        touch = " (hardware key, touched)" if signer.get("flags") else ""
        names.append(f"{signer.get('name')}{touch}")
    return ", ".join(names) or "nobody"


def _decision_words(entry: LedgerEntry) -> str:
    try:
        d = entry.details
        if entry.kind == "set_cap":
            return describe_action(
                {"kind": "set_cap", "dataset": entry.dataset, "epsilon": d["epsilon"], "delta": entry.delta}
            )
        if entry.kind == "allocate":
            return describe_action(
                {"kind": "allocate", "dataset": entry.dataset, "project": entry.project, "epsilon": d["epsilon"]}
            )
        if entry.kind == "approve":
            return describe_action({"kind": "approve", "dataset": entry.dataset, "project": entry.project, **d})
        if entry.kind == "rotate_key":
            return describe_action({"kind": "rotate_key", "new_public_key": d["new_public_key"]})
        if entry.kind == "board":
            return (
                ("record" if d.get("previous") is None else "change")
                + " the board: "
                + describe_action({"kind": "set_board", "members": d["members"], "quorum": d["quorum"]}).removeprefix(
                    "set the board to "
                )
            )
    except (KeyError, TypeError, ValueError) as err:
        return f"(unreadable: {err})"
    return entry.kind


def _decisions_table(entries: list[LedgerEntry]) -> str:
    if not entries:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td class='num'>{e.seq}</td><td class='nowrap'>{html.escape(_day(e.time))}</td>"
        f"<td>{html.escape(_decision_words(e))}</td><td>{html.escape(e.purpose)}</td>"
        f"<td>{html.escape(_signed_by(e))}</td></tr>"
        for e in entries
    )
    return f"<table><tr><th>seq</th><th>when (UTC)</th><th>decision</th><th>reason</th><th>signed by</th></tr>{rows}</table>"


def _spending_table(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "<p>No allocation.</p>"
    out = []
    for _, row in rows.iterrows():
        limit, total = row["limit"], row["spent"] + row["reserved"]
        share = 0.0 if not limit or pd.isna(limit) else min(total / limit, 1.0)
        css = " class='over'" if row["state"] != "ok" else ""
        bar = f"<span class='bar'><span{css} style='width:{100 * share:.0f}%'></span></span>"
        out.append(
            f"<tr><td>{html.escape(str(row['dataset']))}</td><td class='num'>{fmt_epsilon(row['spent'])}</td>"
            f"<td class='num'>{fmt_epsilon(row['reserved'])}</td><td class='num'>{_limit_text(limit)}</td>"
            f"<td class='num'>{fmt_epsilon(row['remaining']) if not pd.isna(limit) else ''}</td>"
            f"<td class='nowrap'>{html.escape(str(row['state']))}{bar}</td></tr>"
        )
    return (
        "<table><tr><th>dataset</th><th>spent</th><th>reserved</th><th>allocation</th><th>remaining</th>"
        f"<th>state</th></tr>{''.join(out)}</table>"
    )


def _limit_text(limit) -> str:
    return "none" if limit is None or pd.isna(limit) else fmt_epsilon(limit)


def _releases_table(entries: list[LedgerEntry]) -> str:
    kinds: dict[str, dict[str, set | int]] = {}
    for e in entries:
        if e.kind == "commit":
            row = kinds.setdefault(release_kind(e), {"n": 0, "runs": set(), "aborted": 0})
            row["n"] += 1
            if e.run_id:
                row["runs"].add(e.run_id)
    aborted = sum(1 for e in entries if e.kind == "abort")
    open_now = {e.reservation_id for e in entries if e.kind == "reserve"} - {
        e.reservation_id for e in entries if e.kind in ("commit", "abort")
    }
    if not kinds and not aborted and not open_now:
        return "<p>None yet.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td><td class='num'>{row['n']}</td><td class='num'>{len(row['runs'])}</td></tr>"
        for kind, row in sorted(kinds.items())
    )
    note = f"<p>{aborted} reservation(s) aborted (nothing released); {len(open_now)} still open (counted as spent).</p>"
    return f"<table><tr><th>kind of release</th><th>releases</th><th>runs</th></tr>{rows}</table>{note}"


def _uncovered_table(entries: list[LedgerEntry]) -> str:
    grouped: dict[str, list[LedgerEntry]] = {}
    for e in entries:
        grouped.setdefault(str(e.details.get("what")), []).append(e)
    rows = "".join(
        f"<tr class='uncovered'><td>{html.escape(what)}</td><td class='num'>{len(items)}</td>"
        f"<td>{html.escape(', '.join(dict.fromkeys(i.purpose for i in items)))}</td></tr>"
        for what, items in sorted(grouped.items())
    )
    return f"<table><tr><th>what</th><th>releases</th><th>purpose</th></tr>{rows}</table>"


# --- the board ------------------------------------------------------------------------


def _board_html(entries: list[LedgerEntry], governance: Governance) -> str:
    board = governance.board
    if board is None:
        roster = (
            "<p>No board is recorded in this ledger: caps and allocations were set by the one person named "
            "in each entry. Record one with <code>workbench budget establish-board</code>.</p>"
        )
    else:
        rows = "".join(
            f"<tr><td>{html.escape(m.name)}</td><td><code>{html.escape(m.fingerprint)}</code></td>"
            f"<td>{html.escape(m.key.key_type)}</td></tr>"
            for m in board.members
        )
        roster = (
            f"<p>Quorum: {board.quorum} of {len(board.members)}. Check each fingerprint against the member's own "
            "(<code>ssh-keygen -lf KEY.pub</code>).</p>"
            f"<table><tr><th>member</th><th>key fingerprint</th><th>key type</th></tr>{rows}</table>"
        )
    decisions = [e for e in entries if e.kind in GOVERNED_KINDS]
    return roster + "<h3>Every decision</h3>" + _decisions_table(decisions)
