"""Hospital IT's operations commands of ``workbench node``: ``service`` (a systemd
unit), ``health`` (for a container's or a monitor's health check) and ``metrics`` (the
Prometheus endpoint on its own). Mounted on the node app by ``add_operations_commands``,
kept apart from cli.py so that the node's everyday commands stay in one short file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from federation.cli_support import clear_errors
from federation.cli_support import fail as _fail
from federation.errors import BadInput


def _load(config: Path):
    from federation.site.config import load_node_config

    try:
        return load_node_config(config)
    except BadInput as err:
        raise _fail(str(err)) from None


@clear_errors
def service(
    config: Path = typer.Option(Path("node.toml"), "--config", help="The node's node.toml."),
    out: Path = typer.Option(Path("systemd"), "--out", help="Folder for the unit and the sysusers.d file."),
    user: str = typer.Option("workbench-node", "--user", help="The dedicated system user the node runs as."),
    proxy: Optional[str] = typer.Option(
        None, "--proxy", help="The hospital's HTTP(S) proxy, e.g. http://proxy.hospital.example:3128."
    ),
) -> None:
    """Write a locked-down systemd unit for this node (and the sysusers.d line for its user); say how to install it."""
    from federation.service_units import node_unit, systemd_verdict

    node = _load(config)
    policy = node.policy
    read_only = [Path(node.path).resolve(), node.ca_certificate, node.resolved_dictionary_path]
    if policy.trusted_entities is not None:
        read_only.append(policy.trusted_entities)
    files = node_unit(
        config_path=Path(node.path).resolve(),
        site_id=node.site_id,
        state_dir=node.state_dir,
        data_path=node.data_path.parent,
        key_path=node.node_private_key,
        read_only=read_only,
        user=user,
        proxy=proxy,
    )
    unit, users = files.write(out)
    typer.echo(f"wrote {unit} and {users}")
    verdict = systemd_verdict(unit)
    if verdict is not None:
        verified, said, score = verdict
        typer.echo(
            f"systemd-analyze: verify {'passes' if verified else 'says: ' + said}; "
            f"exposure {score} (0 is the most locked down, 10 the least)"
        )
    keys = node.node_private_key.parent
    typer.echo("install it (as root):")
    for line in (
        f"cp {users} /etc/sysusers.d/ && systemd-sysusers",
        f"chown -R {user}:{user} {node.state_dir} {keys} && chmod 700 {keys} && chmod 600 {node.node_private_key}",
        f"cp {unit} /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now {files.unit_name}",
        f"journalctl -u {files.unit_name} -f    # and: workbench node health --config {node.path}",
    ):
        typer.echo(f"  {line}")


def health(
    config: Path = typer.Option(Path("node.toml"), "--config", help="The node's node.toml."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exit 0 only while the SuperNode and the site executor run and the coordinator admitted the node; else 3.

    For a container's HEALTHCHECK, a monitor or a script; `node status` says more."""
    import json

    from federation.cli_support import EXIT_UNREACHABLE
    from federation.site.supernode import runtime_of

    node = _load(config)
    runtime = runtime_of(node)
    healthy = runtime.state == "connected"
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "healthy": healthy,
                    "state": runtime.state,
                    "detail": runtime.detail,
                    "supernode_pid": runtime.supernode,
                    "executor_pid": runtime.executor,
                }
            )
        )
    else:
        word = "healthy" if healthy else "UNHEALTHY"
        typer.echo(f"site {node.site_id}: {word}: {runtime.describe()}")
    if not healthy:
        raise typer.Exit(code=EXIT_UNREACHABLE)


def add_operations_commands(app: typer.Typer) -> None:
    """Mount these commands on ``workbench node``."""
    app.command("service")(service)
    app.command("health")(health)
