"""`workbench node ...`: set up, check, start, stop, pause and inspect a hospital's node.

The root CLI mounts ``app``. Heavy imports (pandas, the ledger, Flower) happen inside
the commands. Our own errors become one line on stderr and an exit code of the one
table (federation/cli_support.py: 2 bad input, 3 the coordinator or the node's own
processes failed, 4 an audit log or ledger that does not verify), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from federation.cli_support import EXIT_INTERNAL, clear_errors
from federation.cli_support import fail as _fail
from federation.errors import BadInput
from federation.site.config import NodeConfig, NodeConfigError, load_node_config

app = typer.Typer(
    name="node",
    help="A hospital's node: init, check, start/stop, pause/resume, status and its audit log.",
    no_args_is_help=True,
)

ConfigOption = typer.Option(Path("node.toml"), "--config", help="The node's node.toml.")


def _load(config: Path) -> NodeConfig:
    try:
        return load_node_config(config)
    except BadInput as err:
        raise _fail(str(err)) from None


@app.command()
def init(
    site_id: str = typer.Option(..., "--site-id", help="The site's name, as the coordinator registers it."),
    data: Path = typer.Option(..., "--data", help="The site's table (CSV or Parquet)."),
    out: Path = typer.Option(..., "--out", help="Folder for node.toml, the node's keys and its state."),
    dictionary: Optional[Path] = typer.Option(None, "--dictionary", help="Data dictionary (default: beside the data)."),
    dataset: str = typer.Option(
        "", "--dataset", help="Dataset name the ledger charges (default: the data file's stem)."
    ),
    coordinator: str = typer.Option(
        "coordinator.example.org:9092",
        "--coordinator",
        help="The coordinator's Fleet API, host:port (editable later in node.toml).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing node.toml and key pair."),
    board: Optional[Path] = typer.Option(
        None,
        "--board",
        help='The ethics board roster (JSON {"quorum": K, "members": [{"name", "key"}]}), recorded in the new '
        "ledger: caps and allocations then need K members' signatures.",
    ),
) -> None:
    """Write a commented node.toml and the node's key pair; print the public key to register.

    The node's Runtime port (``[node] clientappio_address``) and its metrics port
    (``[monitoring] metrics``) are free local ports picked now, so that several nodes on
    one machine each get their own."""
    import secrets

    from federation.processes import free_runtime_port
    from federation.site.config import write_node_template
    from federation.site.keys import generate_node_keys

    if not data.is_file():
        raise _fail(
            f"--data {data} is not a file; give the site's table (CSV or Parquet), e.g. one written by "
            "`workbench data synth --out DIR`."
        )
    roster = _board_roster(board)
    toml_path = out / "node.toml"
    private_key = out / "keys" / "node_key"
    existing = [p for p in (toml_path, private_key, Path(f"{private_key}.pub")) if p.exists()]
    if existing and not force:
        raise _fail(
            f"{', '.join(map(str, existing))} already exist(s): this folder holds a node, and its key may be "
            "the one the coordinator registered. Choose another --out, or pass --force to replace them "
            "(then register the new public key)."
        )
    try:
        write_node_template(
            path=toml_path,
            site_id=site_id,
            data_path=data.resolve(),
            state_dir=out / "state",
            dictionary_path=None if dictionary is None else dictionary.resolve(),
            dataset=dataset,
            coordinator_address=coordinator,
            ca_certificate=out / "ca.crt",
            node_private_key=private_key,
            clientappio_address=f"127.0.0.1:{free_runtime_port()}",
            metrics_address=f"127.0.0.1:{free_runtime_port()}",  # [monitoring] metrics: loopback, its own port
            holdout_seed=secrets.randbelow(2**31),  # the site's own: no coordinator knows its held-out rows
            require_signed_requests=True,  # a new node serves only researchers its board approved
            overwrite=force,
        )
        load_node_config(toml_path)  # what was written must read back, or nothing is left behind
        line = generate_node_keys(private_key=private_key, comment=site_id, overwrite=force)
    except BadInput as err:
        toml_path.unlink(missing_ok=True)
        raise _fail(str(err)) from None
    ledger_path, dataset_name, recorded = _create_ledger(toml_path, roster)
    site_keys = load_node_config(toml_path).ledger_key_dir
    typer.echo(f"wrote {toml_path} (every key explained) and the node's key pair in {private_key.parent}/")
    if recorded is None:
        typer.echo(
            f"the site's privacy ledger: {ledger_path} (its signing key in the key folder {site_keys}); set your dataset's cap with:"
        )
        typer.echo(
            f"  workbench budget set-cap --ledger {ledger_path} --dataset {dataset_name} --epsilon E --delta 1e-5 "
            "--actor NAME --reason TEXT"
        )
    else:
        typer.echo(
            f"the site's privacy ledger: {ledger_path} (its signing key in the key folder {site_keys}), with its ethics board "
            f"{recorded}; the board sets the dataset's cap with a signed proposal:"
        )
        typer.echo(
            f"  workbench budget propose cap --ledger {ledger_path} --dataset {dataset_name} --epsilon E --delta 1e-5 "
            "--reason TEXT --proposed-by NAME --out cap.json"
        )
        typer.echo(
            "  then each member: workbench budget sign cap.json --key KEY; then: "
            f"workbench budget apply cap.json --ledger {ledger_path}"
        )
    typer.echo("the node's public key (send it to the coordinator; it is not secret):")
    typer.echo(f"  {line}")
    typer.echo("the coordinator registers it with (--folder names the coordinator's folder):")
    typer.echo(f"  workbench coordinator register-node {private_key}.pub --name {site_id} --folder coordinator")
    typer.echo(
        f"next: put the coordinator's CA certificate at {out / 'ca.crt'}, set [coordinator] address, then "
        f"`workbench node check --config {toml_path}`."
    )


def _board_roster(path: Optional[Path]):
    """The board roster given to `node init`, checked before anything is written."""
    if path is None:
        return None
    from privacy_budgets.board import Board, BoardInvalid

    try:
        return Board.load(path)
    except BoardInvalid as err:
        raise _fail(f"--board {path}: {err}") from None


def _create_ledger(toml_path: Path, roster=None) -> tuple[Path, str, str | None]:
    """The site's ledger, empty and signed, so that caps can be set before the first
    start; an existing ledger is kept as it is (it is the site's history). With a
    roster, the ledger's first board is recorded (once: a ledger that has one keeps it)."""
    from federation.site.ledger_keys import open_site_ledger

    site = load_node_config(toml_path).site_config()
    recorded = None
    with open_site_ledger(site) as ledger:
        if roster is not None:
            if ledger.board() is None:
                ledger.establish_board(board=roster, actor="node init", reason="the site's ethics board")
            recorded = ledger.board().describe()
    return site.ledger_path, site.dataset, recorded


@app.command()
def check(config: Path = ConfigOption) -> None:
    """Preflight: config, data against its schema, keys, CA, ledger, audit log, Runtime port, coordinator.

    Exit 0 when every check passes; else 2 (a setting, file or the data breaks a rule),
    3 (the coordinator cannot be reached) or 4 (the ledger or audit log does not verify)."""
    from federation.site.preflight import run_preflight

    result = run_preflight(config_path=config)
    for item in result.checks:
        typer.echo(item.line())
    failed = sum(c.status == "fail" for c in result.checks)
    if failed:
        typer.echo(f"{failed} check(s) failed: the node would not start.", err=True)
        raise typer.Exit(code=result.exit_code())
    typer.echo("all checks passed.")


@app.command()
@clear_errors
def start(
    config: Path = ConfigOption,
    detach: bool = typer.Option(
        False, "--detach", help="Run the node in the background; return once it is connected, and say so."
    ),
    timeout: float = typer.Option(
        180.0, "--timeout", help="With --detach: seconds to wait for the coordinator to admit the node."
    ),
) -> None:
    """Check the node as `node check` does, then start flower-supernode (TLS, node auth) and the site executor.

    In the foreground until Ctrl-C (or `workbench node stop` from another terminal);
    with --detach, in the background. A node runs once: a second start is refused with
    the running PIDs."""
    from federation.site.ledger_keys import move_legacy_key
    from federation.site.preflight import run_preflight
    from federation.site.supernode import check_can_start

    try:
        moved = move_legacy_key(load_node_config(config).site_config())  # ledgers made before key folders
    except NodeConfigError:
        moved = None  # the preflight below names what is wrong with the file
    if moved is not None:
        typer.echo(f"moved the ledger's signing key out of the state folder ({moved}) into the key folder.", err=True)
    result = run_preflight(config_path=config, require_coordinator=False)
    for item in result.checks:
        if item.status != "ok":
            typer.echo(item.line(), err=item.status == "fail")
    if result.failed or result.config is None:
        raise _fail(
            f"the node was not started: fix the FAIL line(s) above, then run `workbench node check --config {config}`.",
            code=result.exit_code(),
        )
    node = result.config
    check_can_start(node)  # NodeAlreadyRunning, RuntimePortTaken: exit 2, with the PID or a free port

    def say(text: str) -> None:
        typer.echo(f"site {node.site_id}: {text}", err=True)

    if detach:
        from federation.site.supernode import start_node

        handle = start_node(config=node, timeout=timeout, report=say)
        pids = handle.pids()
        typer.echo(
            f"site {node.site_id}: connected to the coordinator at {node.coordinator_address}; running in the "
            f"background (node PID {handle.pid}, supernode PID {pids.get('supernode')}, executor PID "
            f"{pids.get('executor')}). Logs: {handle.files.logs}. Stop it with "
            f"`workbench node stop --config {config}`."
        )
        return
    from federation.site.supernode import run_node

    run_node(config=node, report=say)


@app.command()
@clear_errors
def stop(config: Path = ConfigOption) -> None:
    """Stop the node cleanly (its SuperNode tells the coordinator it leaves), and anything a crash left."""
    from federation.site.supernode import stop_node

    node = _load(config)
    before = stop_node(config=node)
    if before.state == "stopped":
        typer.echo(f"site {node.site_id}'s node was not running; nothing to stop.")
        return
    typer.echo(f"site {node.site_id}'s node stopped (it was {before.describe()}).")


@app.command()
def pause(
    config: Path = ConfigOption,
    reason: str = typer.Option(..., "--reason", help="Why; every refused coordinator is told."),
    who: str = typer.Option("", "--who", help="Who pauses (default: user@host)."),
) -> None:
    """Kill switch: refuse every task from now on, with the reason (recorded in the audit log)."""
    from federation.site.audit import append_audit, audit_path
    from federation.site.pause import pause_node

    node = _load(config)
    try:
        state = pause_node(state_dir=node.state_dir, reason=reason, who=who or None)
    except ValueError as err:
        raise _fail(str(err)) from None
    append_audit(
        path=audit_path(node.state_dir),
        entry={"kind": "pause", "time": state.when, "site": node.site_id, "who": state.who, "reason": state.reason},
    )
    typer.echo(
        f"site {node.site_id} is {state.describe()}; every task is refused until `workbench node resume --config {config}`."
    )


@app.command()
def resume(
    config: Path = ConfigOption,
    who: str = typer.Option("", "--who", help="Who resumes (default: user@host)."),
) -> None:
    """Lift the pause (recorded in the audit log)."""
    from federation.site.audit import append_audit, audit_path, utc_now
    from federation.site.pause import default_operator, resume_node

    node = _load(config)
    lifted = resume_node(state_dir=node.state_dir)
    if lifted is None:
        typer.echo(f"site {node.site_id} was not paused; nothing to do.")
        return
    append_audit(
        path=audit_path(node.state_dir),
        entry={
            "kind": "resume",
            "time": utc_now(),
            "site": node.site_id,
            "who": who or default_operator(),
            "lifted": {"reason": lifted.reason, "who": lifted.who, "since": lifted.when},
        },
    )
    typer.echo(f"site {node.site_id} resumed (it was {lifted.describe()}).")


@app.command()
def status(
    config: Path = ConfigOption,
    last: int = typer.Option(5, "--last", help="How many recent audit lines to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """The node's processes (connected, starting, crashed, stopped), paused or not, the ledger, the latest requests."""
    from federation.site.status import node_status
    from privacy_budgets.errors import PrivacyBudgetError

    node = _load(config)
    try:
        report = node_status(config=node, last=last)
    except (PrivacyBudgetError, OSError) as err:
        raise _fail(f"cannot read the node's state: {err}") from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        typer.echo(report.to_text())


@app.command()
def audit(
    config: Path = ConfigOption,
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain (exit 1 if it is broken)."),
    head: str = typer.Option("", "--head", help="With --verify: a head hash seen earlier that must still be there."),
    last: int = typer.Option(20, "--last", help="How many recent lines to show (0: none)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Show the node's audit log; with --verify, prove it was not edited."""
    from federation.site.audit import audit_path, recent_entries, verify_audit
    from federation.site.status import audit_frame

    node = _load(config)
    path = audit_path(node.state_dir)
    if last > 0:
        entries = list(reversed(recent_entries(path=path, limit=last)))
        if as_json:
            for entry in entries:
                typer.echo(json.dumps(entry))
        elif entries:
            typer.echo(audit_frame(entries).to_string(index=False))
        else:
            typer.echo(f"{path}: no requests yet.")
    if verify:
        from federation.site.preflight import ledger_keys_of

        # Signed heads must be signed with a key the ledger holds (audit_heads.py).
        result = verify_audit(path, head=head or None, public_keys=ledger_keys_of(node))
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "ok": result.ok,
                        "lines": result.lines,
                        "first_bad_line": result.first_bad_line,
                        "problem": result.problem,
                        "torn_tail": result.torn_tail,
                        "repairs": result.repairs,
                        "head": result.head,
                        "signed_heads": result.signed_heads,
                        "last_signed_line": result.last_signed_line,
                    }
                )
            )
        else:
            typer.echo(result.describe())
        if not result.ok:
            raise typer.Exit(code=EXIT_INTERNAL)


# Hospital IT's operations commands (service unit, health, metrics): their own module.
from federation.site.operations_cli import add_operations_commands  # noqa: E402

add_operations_commands(app)
