"""`workbench coordinator ...`: the coordinator's SuperLink, its certificates and its sites.

The root CLI mounts ``app``. Errors are one line on stderr and an exit code of the
one table (federation/cli_support.py): 2 bad input (a folder that is not a
coordinator's, a site registered twice), 3 the SuperLink not running or failing;
never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from federation.cli_support import clear_errors
from federation.cli_support import fail as _fail
from federation.errors import BadInput

app = typer.Typer(
    name="coordinator",
    help="The coordinator: certificates, the SuperLink (TLS, node authentication), registered sites.",
    no_args_is_help=True,
)

FolderOption = typer.Option(Path("coordinator"), "--folder", help="The coordinator folder (made by `init`).")


def _open(folder: Path):
    from federation.coordinator.superlink import Coordinator

    try:
        return Coordinator.open(folder)
    except BadInput as err:
        raise _fail(str(err)) from None


@app.command()
def init(
    address: str = typer.Option(
        ..., "--address", help="HOST:PORT the sites will dial, e.g. coordinator.example.org:9092."
    ),
    folder: Path = FolderOption,
    extra_host: list[str] = typer.Option(
        [], "--extra-host", help="Another name or IP the certificate should cover (repeatable)."
    ),
    control_port: Optional[int] = typer.Option(
        None,
        "--control-port",
        help="Loopback port of the Control and Runtime APIs (this machine only); default: a port free now.",
    ),
    service_port: Optional[int] = typer.Option(
        None,
        "--service-port",
        help="Port of the study service (HTTPS, for researchers on their own machines); default: a port free now.",
    ),
) -> None:
    """Make the coordinator folder: a CA, a server certificate for ADDRESS (and 127.0.0.1), coordinator.toml."""
    from federation.coordinator.superlink import Coordinator

    try:
        coordinator = Coordinator.init(
            folder=folder, address=address, extra_hosts=list(extra_host), control_port=control_port
        )
        from federation.coordinator.study_service.process import service_port as kept_port
        from federation.coordinator.study_service.process import set_service_port

        if service_port is not None:
            set_service_port(coordinator, service_port)
        kept_port(coordinator)
    except (ValueError, FileExistsError, BadInput) as err:
        raise _fail(str(err)) from None
    typer.echo(f"coordinator folder {coordinator.folder} for {coordinator.address}")
    typer.echo(f"give every site this CA certificate: {coordinator.tls.ca_certificate}")
    typer.echo(f"next: workbench coordinator start --folder {folder}")


@app.command()
def start(folder: Path = FolderOption) -> None:
    """Start flower-superlink (TLS, --enable-supernode-auth, state and log in the folder); return once it answers."""
    from federation.cli_support import EXIT_UNREACHABLE

    coordinator = _open(folder)
    try:
        handle = coordinator.start()
    except BadInput as err:  # it already runs
        raise _fail(err) from None
    except (RuntimeError, TimeoutError) as err:  # flower-superlink exited or did not answer
        raise _fail(str(err), code=EXIT_UNREACHABLE) from None
    typer.echo(
        f"SuperLink running (PID {handle.pid}): sites dial {coordinator.address} (Fleet API only); "
        f"Control and Runtime APIs on {coordinator.operator_address} (this machine only); log: {coordinator.log_path}"
    )
    from federation.coordinator.study_service.process import running_pid, service_url, start_service

    service_pid = running_pid(coordinator)  # still up after the SuperLink alone went down: kept
    if service_pid is None:
        try:
            service_pid = start_service(coordinator).pid
        except (BadInput, RuntimeError, TimeoutError) as err:  # it would not start: nothing is left half-running
            coordinator.stop()
            raise _fail(
                f"the study service did not start, so the SuperLink was stopped again: {err}", code=EXIT_UNREACHABLE
            ) from None
    typer.echo(
        f"study service running (PID {service_pid}): researchers connect to {service_url(coordinator)} "
        f"(HTTPS, the same ca.crt as the sites)"
    )
    typer.echo(f"stop both with: workbench coordinator stop --folder {folder}")


@app.command()
def stop(folder: Path = FolderOption) -> None:
    """Stop the folder's study service and SuperLink by their PIDs."""
    from federation.coordinator.study_service.process import stop_service

    coordinator = _open(folder)
    typer.echo("study service stopped." if stop_service(coordinator) else "the study service was not running.")
    if coordinator.stop():
        typer.echo("SuperLink stopped.")
    else:
        typer.echo("the SuperLink was not running.")


@app.command("register-node")
@clear_errors
def register_node(
    public_key: Path = typer.Argument(
        ..., help="The site's node public key (node_key.pub from `workbench node init`)."
    ),
    name: str = typer.Option(..., "--name", help="The site's name (its node.toml's site id)."),
    ledger_key: str = typer.Option(
        "",
        "--ledger-key",
        help="The site's ledger public key (hex, from `workbench budget board --ledger` at the site): the "
        "coordinator accepts only receipts that verify under it. After the site rotates it: accept-ledger-key.",
    ),
    board: Optional[Path] = typer.Option(
        None,
        "--board",
        help="The site's board (`workbench budget board --ledger L --json > board.json` at the site): pinned here; "
        "a key rotation needs a quorum of THIS board (or of a change it approved). Gives the ledger key too.",
    ),
    folder: Path = FolderOption,
) -> None:
    """Admit a site's node key (the SuperLink must run); other keys are refused."""
    from federation.coordinator.registry import register_node as register

    coordinator = _open(folder)
    # A bad key file or name, a site registered twice: 2; the SuperLink not running: 3.
    node = register(coordinator=coordinator, public_key=public_key, name=name, ledger_key=ledger_key, board=board)
    typer.echo(f"site {node.name} registered (Flower node id {node.node_id}).")
    pinned = node.pinned_board
    if pinned is not None:
        typer.echo(f"board pinned: {pinned.board.describe()} (ledger seq {pinned.since_seq}).")
    elif node.ledger_key:
        typer.echo(
            "warning: no --board: a key rotation of this site will be counted against the board its own handover "
            "states, which whoever holds the old ledger key could write. Register with --board to pin it."
        )
    if not node.ledger_key:
        typer.echo(
            "warning: no --ledger-key: the coordinator checks this site's receipts only against the key each "
            "receipt carries. Register again with the site's ledger key to verify them against it."
        )


@app.command("accept-ledger-key")
@clear_errors
def accept_ledger_key(
    handover: Path = typer.Argument(
        ..., help="The site's handover file (`workbench budget handover --ledger LEDGER --out FILE` at the site)."
    ),
    name: str = typer.Option(..., "--name", help="The site's name, as registered."),
    folder: Path = FolderOption,
) -> None:
    """Accept a site's new ledger key after it rotated, only if the handover chains from the registered key.

    The registered key must have signed the rotation, the new key its takeover, and the
    board's quorum the proposal; otherwise nothing changes (exit 2) and the line says why.
    The SuperLink need not run."""
    from federation.coordinator.key_rotation import accept_ledger_key as accept
    from privacy_budgets.keys import fingerprint

    coordinator = _open(folder)
    node, accepted = accept(coordinator=coordinator, name=name, handover=handover)
    for change in accepted.board_changes:
        typer.echo(
            f"site {name}: ledger entry seq {change.seq} ({change.time}) changes the board to {change.board.describe()}, "
            f"approved by {', '.join(change.signers)} of the pinned board; it is pinned in its place."
        )
    for step in accepted.steps:
        typer.echo(
            f"site {name}: ledger entry seq {step.seq} ({step.time}) hands over from {fingerprint(step.old_key)} to "
            f"{fingerprint(step.new_key)}, approved by {', '.join(step.signers)}."
        )
    typer.echo(
        f"site {name}'s receipts now verify under {fingerprint(node.ledger_key)}; receipts signed by an older key are "
        "refused from now on."
    )


@app.command()
def status(
    folder: Path = FolderOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Whether the SuperLink runs, its address, the registered sites and which are online now."""
    from federation.coordinator.study_service.process import service_status

    coordinator = _open(folder)
    info = coordinator.status()
    info["study_service"] = service_status(coordinator)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    running = f"running (PID {info['running_pid']})" if info["running_pid"] else "not running"
    typer.echo(f"SuperLink {info['address']}: {running}")
    typer.echo(f"Control and Runtime APIs (this machine only): {info['operator_address']}")
    typer.echo(f"CA certificate: {info['ca_certificate']}")
    service = info["study_service"]
    said = f"running (PID {service['running_pid']})" if service["running_pid"] else "not running"
    typer.echo(f"study service {service['url']}: {said} (log: {service['log']})")
    sites: Optional[list] = info["registered_sites"]
    typer.echo(f"registered sites: {', '.join(sites) if sites else 'none'}")
    nodes = info["nodes"]
    if nodes is None:
        typer.echo(
            "online sites: unknown (the SuperLink does not run)"
            if not info["running_pid"]
            else "online sites: unknown (the SuperLink did not answer)"
        )
    else:
        for site in sites or []:
            node = nodes.get(site, {"status": "registered"})
            status = node["status"]
            since = node.get("online_at") if status == "online" else node.get("offline_at")
            when = f" since {since}" if since and since != "N/A" else ""
            word = "never connected" if status == "registered" else f"{status}{when}"
            typer.echo(f"  {site}: {word}")
    if info["ledger_keys"]:
        from privacy_budgets.keys import fingerprint

        typer.echo("ledger keys (each site's receipts must verify under its own):")
    for site, ledger in info["ledger_keys"].items():
        if not ledger["key"]:
            typer.echo(f"  {site}: none registered (receipts checked only against the key each carries)")
            continue
        rotated = f", after {ledger['rotations']} accepted rotation(s)" if ledger["rotations"] else ""
        typer.echo(f"  {site}: {fingerprint(ledger['key'])}{rotated}")
    boards = info.get("boards") or {}
    if boards:
        typer.echo("pinned boards (a key rotation needs a quorum of the site's pinned board):")
    for site, pinned in boards.items():
        typer.echo(f"  {site}: {pinned or 'none pinned (rotations count the board the handover states)'}")
    typer.echo(f"log: {info['log']}")


# Operations commands (service unit, metrics): their own module.
from federation.coordinator.operations_cli import add_operations_commands  # noqa: E402

add_operations_commands(app)
