"""`workbench coordinator ...`: the coordinator's SuperLink, its certificates and its sites.

The root CLI mounts ``app``. Errors are one line on stderr and exit code 2 (bad
input, a folder that is not a coordinator's) or 1 (Flower refused or failed);
never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from federation.cli_support import EXIT_FAILED
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
) -> None:
    """Make the coordinator folder: a CA, a server certificate for ADDRESS (and 127.0.0.1), coordinator.toml."""
    from federation.coordinator.superlink import Coordinator

    try:
        coordinator = Coordinator.init(folder=folder, address=address, extra_hosts=list(extra_host))
    except (ValueError, FileExistsError) as err:
        raise _fail(str(err)) from None
    typer.echo(f"coordinator folder {coordinator.folder} for {coordinator.address}")
    typer.echo(f"give every site this CA certificate: {coordinator.tls.ca_certificate}")
    typer.echo(f"next: workbench coordinator start --folder {folder}")


@app.command()
def start(folder: Path = FolderOption) -> None:
    """Start flower-superlink (TLS, --enable-supernode-auth, state and log in the folder); return once it answers."""
    coordinator = _open(folder)
    try:
        handle = coordinator.start()
    except (BadInput, RuntimeError, TimeoutError) as err:
        raise _fail(str(err), code=EXIT_FAILED) from None
    typer.echo(f"SuperLink running on {coordinator.address} (PID {handle.pid}); log: {coordinator.log_path}")
    typer.echo(f"stop it with: workbench coordinator stop --folder {folder}")


@app.command()
def stop(folder: Path = FolderOption) -> None:
    """Stop the folder's SuperLink by its PID."""
    coordinator = _open(folder)
    if coordinator.stop():
        typer.echo("SuperLink stopped.")
    else:
        typer.echo("the SuperLink was not running.")


@app.command("register-node")
def register_node(
    public_key: Path = typer.Argument(
        ..., help="The site's node public key (node_key.pub from `workbench node init`)."
    ),
    name: str = typer.Option(..., "--name", help="The site's name (its node.toml's site id)."),
    folder: Path = FolderOption,
) -> None:
    """Admit a site's node key (the SuperLink must run); other keys are refused."""
    from federation.coordinator.registry import register_node as register

    coordinator = _open(folder)
    try:
        node = register(coordinator=coordinator, public_key=public_key, name=name)
    except (FileNotFoundError, ValueError) as err:  # a bad key file or name: exit 2
        raise _fail(str(err)) from None
    except BadInput as err:  # the coordinator's state (CoordinatorError): already registered, not running
        raise _fail(str(err), code=EXIT_FAILED) from None
    typer.echo(f"site {node.name} registered (Flower node id {node.node_id}).")


@app.command()
def status(
    folder: Path = FolderOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Whether the SuperLink runs, its address, and the registered sites."""
    info = _open(folder).status()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    running = f"running (PID {info['running_pid']})" if info["running_pid"] else "not running"
    typer.echo(f"SuperLink {info['address']}: {running}")
    typer.echo(f"CA certificate: {info['ca_certificate']}")
    sites: Optional[list] = info["registered_sites"]
    typer.echo(f"registered sites: {', '.join(sites) if sites else 'none'}")
    typer.echo(f"log: {info['log']}")
