"""The ethics board's and the site's commands: ``workbench budget ...``.

Mounted by the root ``workbench`` CLI, or run alone as ``python -m privacy_budgets``.
Reading commands (status, history, verify, report, reconcile) need no private key and
open the ledger read-only. Exit codes follow the workbench's one table (this package
stands alone, so it repeats the values it uses; a test keeps them equal): bad input
prints one line on stderr and exits with code 2; a refusal by a cap or an allocation
exits 1; a ledger that fails verification (or receipts that do not reconcile) exits 4.

Heavy imports (pandas, matplotlib, dp_accounting) happen inside the commands, so
``workbench --help`` stays fast.

>>> from typer.testing import CliRunner
>>> result = CliRunner().invoke(app, ["status", "--ledger", "no/such.ledger"])
>>> result.exit_code, result.stderr.strip()
(2, 'Error: No such file: no/such.ledger. Check the path.')
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from privacy_budgets.errors import LedgerError

app = typer.Typer(
    name="budget",
    help="Privacy budget ledger: status, history, verification, caps and allocations.",
    no_args_is_help=True,
    add_completion=False,
)

LedgerPath = Annotated[Path, typer.Option("--ledger", help="The site's ledger file (SQLite).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
KeyPath = Annotated[Path | None, typer.Option("--key", help="The site's signing key (default: <ledger>.key).")]


# The workbench's exit codes (federation/cli_support.py EXIT_CODES), as this package uses them.
EXIT_REFUSED = 1  # refused by a cap or an allocation
EXIT_BAD_INPUT = 2  # an argument or a file breaks a rule
EXIT_BROKEN_RECORD = 4  # a ledger that does not verify, receipts that do not reconcile


def _clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's errors and file errors into one line on stderr and the exit
    code of their kind (1 refused, 2 bad input, 4 a ledger that does not verify)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from privacy_budgets.errors import AccountingFault, BudgetRefused, LedgerIntegrityError, PrivacyBudgetError

        try:
            return command(*args, **kwargs)
        except (PrivacyBudgetError, OSError) as err:
            message = " ".join(str(err).split())
            typer.echo(f"Error: {message}", err=True)
            if isinstance(err, BudgetRefused):
                code = EXIT_REFUSED
            elif isinstance(err, (LedgerIntegrityError, AccountingFault)):
                code = EXIT_BROKEN_RECORD
            else:
                code = EXIT_BAD_INPUT
            raise typer.Exit(code=code) from None

    return wrapper


@app.command()
@_clear_errors
def status(ledger: LedgerPath, as_json: AsJson = False) -> None:
    """Caps, allocations, spent, reserved and remaining, per dataset and project."""
    from privacy_budgets.exports import read_only
    from privacy_budgets.views import status_frame

    with read_only(_existing(ledger)) as conn:
        frame = status_frame(conn)
    if as_json:
        typer.echo(frame.to_json(orient="records", indent=2))
    else:
        typer.echo(frame.to_string(index=False) if not frame.empty else "No datasets yet.")


@app.command()
@_clear_errors
def history(
    ledger: LedgerPath,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset's entries.")] = None,
    as_json: AsJson = False,
) -> None:
    """Every entry, with its mechanism (a serialised DpEvent) and statement."""
    from privacy_budgets.exports import read_entries
    from privacy_budgets.statements import safe_statement

    entries = read_entries(_existing(ledger))
    if dataset is not None:
        entries = [e for e in entries if e.dataset == dataset]
    if as_json:
        items = []
        for e in entries:
            item = e.to_dict()
            item["mechanism"] = _json_or_text(e.mechanism)
            item["details"] = _json_or_text(item.pop("details_json"))
            item["statement"] = safe_statement(e)
            items.append(item)
        typer.echo(json.dumps(items, indent=2))
        return
    for e in entries:
        typer.echo(f"{e.seq:>5}  {e.time}  {e.kind:<9} {safe_statement(e)}")


@app.command()
@_clear_errors
def verify(
    ledger: LedgerPath,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint JSON kept away from the site.")] = None,
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="Expected key fingerprint (ed25519:SHA256:...).")
    ] = None,
    receipts: Annotated[Path | None, typer.Option(help="The coordinator's receipts (JSON list).")] = None,
    deep: Annotated[bool, typer.Option(help="Recompute every entry's epsilons.")] = False,
) -> None:
    """Check the chain, signatures, rules and totals; exit 4 when anything is wrong."""
    from privacy_budgets.exports import verify_path

    report = verify_path(
        _existing(ledger),
        public_key=public_key,
        checkpoint=None if checkpoint is None else _existing(checkpoint),
        receipts=[] if receipts is None else _json_list(receipts),
        deep=deep,
    )
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(code=EXIT_BROKEN_RECORD)


@app.command("set-cap")
@_clear_errors
def set_cap(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    epsilon: Annotated[float, typer.Option(help="Lifetime cap on epsilon.")],
    delta: Annotated[float, typer.Option(help="The dataset's delta, in (0, 1).")],
    actor: Annotated[str, typer.Option(help="Who sets it.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyPath = None,
) -> None:
    """Set a dataset's lifetime cap (the site's decision)."""
    with _writable(ledger, key) as opened:
        entry = opened.set_cap(dataset=dataset, epsilon=epsilon, delta=delta, actor=actor, reason=reason)
    _echo_entry(entry)


@app.command()
@_clear_errors
def allocate(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    epsilon: Annotated[float, typer.Option(help="The project's allocation of epsilon.")],
    actor: Annotated[str, typer.Option(help="Who allocates (the ethics board).")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyPath = None,
) -> None:
    """Allocate a project's budget on a dataset (the ethics board's decision)."""
    with _writable(ledger, key) as opened:
        entry = opened.allocate(dataset=dataset, project=project, epsilon=epsilon, actor=actor, reason=reason)
    _echo_entry(entry)


@app.command()
@_clear_errors
def checkpoint(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the signed checkpoint (JSON).")],
    key: KeyPath = None,
) -> None:
    """Write a signed statement of the ledger's head, to keep away from the site."""
    with _writable(ledger, key) as opened:
        cp = opened.checkpoint(out=out)
    typer.echo(f"Checkpoint of {cp['site_id']} at seq {cp['seq']} written to {out}.")


@app.command()
@_clear_errors
def export(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the export (JSON).")],
) -> None:
    """Write every entry and the public key as JSON (for the coordinator or the board)."""
    from privacy_budgets.exports import export_dict, read_entries

    entries = read_entries(_existing(ledger))
    if not entries:
        raise LedgerError(f"A ledger to export needs entries; {ledger} holds none. Check the path.")
    public = entries[0].details.get("public_key", "")
    out.write_text(json.dumps(export_dict(site_id=entries[0].site_id, public_key=public, entries=entries)) + "\n")
    typer.echo(f"Exported {len(entries)} entries to {out}.")


@app.command()
@_clear_errors
def report(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")],
) -> None:
    """Write one self-contained HTML report (plots, status, statements, verification)."""
    from privacy_budgets.report import build_report

    path = build_report(_existing(ledger), out=out)
    typer.echo(f"Report written to {path}.")


@app.command()
@_clear_errors
def reconcile(
    receipts: Annotated[Path, typer.Option(help="The coordinator's receipts (JSON list).")],
    export: Annotated[Path, typer.Option("--export", help="The site's ledger export (JSON).")],
    as_json: AsJson = False,
) -> None:
    """Check the coordinator's receipts against a site's export; exit 4 on any mismatch."""
    from privacy_budgets.reconciliation import reconcile as run

    frame = run(receipts=_json_list(receipts), ledger_export=_existing(export))
    if as_json:
        typer.echo(frame.to_json(orient="records", indent=2))
    elif not frame.empty:
        typer.echo(frame.to_string(index=False))
    typer.echo(frame.attrs["verdict"])
    if not frame.empty:
        raise typer.Exit(code=EXIT_BROKEN_RECORD)


# --- helpers ------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}. Check the path.")
    return path


def _json_or_text(text: str | None) -> Any:
    # A damaged entry is still listed, as its raw text; verify says what is wrong.
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(_existing(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LedgerError(f"Receipts must be a JSON list; {path} is not JSON ({err}).") from None
    if not isinstance(data, list):
        raise LedgerError(f"Receipts must be a JSON list; {path} holds a {type(data).__name__}.")
    return data


class _writable:
    """Open an existing ledger for writing, under the site id it records."""

    def __init__(self, path: Path, key: Path | None) -> None:
        self.path, self.key = _existing(path), key

    def __enter__(self):
        from privacy_budgets import store
        from privacy_budgets.exports import read_only
        from privacy_budgets.ledger import Ledger

        with read_only(self.path) as conn:
            site_id = store.read_meta(conn)["site_id"]
        self.ledger = Ledger.open(self.path, site_id=site_id, key_path=self.key, create=False)
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        self.ledger.close()


def _echo_entry(entry: Any) -> None:
    from privacy_budgets.statements import statement

    typer.echo(f"seq {entry.seq}: {statement(entry)}")


def main() -> None:
    """Entry point for ``python -m privacy_budgets``."""
    app(prog_name="python -m privacy_budgets")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
