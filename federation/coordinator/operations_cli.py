"""Operations commands of ``workbench coordinator``: ``service`` (a systemd unit) and
``metrics`` (the Prometheus endpoint). Mounted by ``add_operations_commands``."""

from __future__ import annotations

from pathlib import Path

import typer

from federation.cli_support import clear_errors
from federation.cli_support import fail as _fail
from federation.errors import BadInput


def _open(folder: Path):
    from federation.coordinator.superlink import Coordinator

    try:
        return Coordinator.open(folder)
    except BadInput as err:
        raise _fail(str(err)) from None


@clear_errors
def service(
    folder: Path = typer.Option(Path("coordinator"), "--folder", help="The coordinator folder (made by `init`)."),
    out: Path = typer.Option(Path("systemd"), "--out", help="Folder for the unit and the sysusers.d file."),
    user: str = typer.Option("workbench-coordinator", "--user", help="The dedicated system user."),
) -> None:
    """Write a locked-down systemd unit for the coordinator's SuperLink; say how to install it."""
    from federation.service_units import coordinator_unit, systemd_verdict

    coordinator = _open(folder)
    files = coordinator_unit(folder=coordinator.folder, tls_dir=coordinator.tls.ca_certificate.parent, user=user)
    unit, users = files.write(out)
    typer.echo(f"wrote {unit} and {users}")
    verdict = systemd_verdict(unit)
    if verdict is not None:
        verified, said, score = verdict
        typer.echo(
            f"systemd-analyze: verify {'passes' if verified else 'says: ' + said}; "
            f"exposure {score} (0 is the most locked down, 10 the least)"
        )
    typer.echo("install it (as root):")
    for line in (
        f"cp {users} /etc/sysusers.d/ && systemd-sysusers",
        f"chown -R {user}:{user} {coordinator.folder} && chmod 700 {coordinator.tls.ca_certificate.parent}",
        f"cp {unit} /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now {files.unit_name}",
    ):
        typer.echo(f"  {line}")


@clear_errors
def metrics(
    folder: Path = typer.Option(Path("coordinator"), "--folder", help="The coordinator folder (made by `init`)."),
    address: str = typer.Option(
        "127.0.0.1:9465", "--address", help="Where to serve /metrics (loopback: only this machine can scrape it)."
    ),
) -> None:
    """Serve the coordinator's Prometheus metrics (SuperLink up, connected nodes, runs, rounds) until Ctrl-C."""
    import signal
    import threading

    from federation.coordinator.metrics import CoordinatorCollector
    from federation.monitoring import serve_collector

    coordinator = _open(folder)
    try:
        server = serve_collector(
            collector=CoordinatorCollector(coordinator=coordinator), address=address, what="coordinator"
        )
    except ValueError as err:
        raise _fail(f"--address {address}: {err}") from None
    if server is None:
        raise _fail(f"--address {address} is in use by another program; choose a free port.")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"coordinator metrics at http://{address}/metrics (Ctrl-C stops)")
    stop.wait()
    server.stop()


@clear_errors
def run(
    folder: Path = typer.Option(Path("coordinator"), "--folder", help="The coordinator folder (made by `init`)."),
) -> None:
    """Start the SuperLink and stay in the foreground until SIGTERM or Ctrl-C, then stop it (for systemd, containers)."""
    import signal
    import threading

    from federation.cli_support import EXIT_UNREACHABLE
    from federation.processes import pid_alive

    coordinator = _open(folder)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        handle = coordinator.start()
    except BadInput as err:  # it already runs
        raise _fail(str(err)) from None
    except (RuntimeError, TimeoutError) as err:
        raise _fail(str(err), code=EXIT_UNREACHABLE) from None
    typer.echo(f"SuperLink running on {coordinator.address} (PID {handle.pid}); log: {coordinator.log_path}")
    from federation.coordinator.study_service.process import service_url, start_service, stop_service

    stop_service(coordinator)  # one left by a crashed predecessor
    try:
        service = start_service(coordinator)
    except (BadInput, RuntimeError, TimeoutError) as err:
        coordinator.stop()
        raise _fail(
            f"the study service did not start, so the SuperLink was stopped: {err}", code=EXIT_UNREACHABLE
        ) from None
    typer.echo(f"study service at {service_url(coordinator)} (PID {service.pid})")
    try:
        while not stop.wait(1.0):
            if not pid_alive(handle.pid):
                raise _fail(
                    f"the SuperLink (PID {handle.pid}) exited; see {coordinator.log_path}.", code=EXIT_UNREACHABLE
                )
            if not pid_alive(service.pid):
                raise _fail(
                    f"the study service (PID {service.pid}) exited; see its log in {coordinator.folder / 'logs'}.",
                    code=EXIT_UNREACHABLE,
                )
    finally:
        stop_service(coordinator)
        coordinator.stop()
    typer.echo("study service and SuperLink stopped.")


def health(
    folder: Path = typer.Option(Path("coordinator"), "--folder", help="The coordinator folder (made by `init`)."),
) -> None:
    """Exit 0 while the folder's SuperLink runs and answers on its port; else 3."""
    from federation.cli_support import EXIT_UNREACHABLE
    from federation.processes import port_answers

    coordinator = _open(folder)
    pid = coordinator.running_pid()
    host = "127.0.0.1" if coordinator.bind_host == "0.0.0.0" else coordinator.bind_host
    if pid is None or not port_answers(host, coordinator.port):
        typer.echo(f"coordinator UNHEALTHY: the SuperLink {'does not run' if pid is None else 'does not answer'}")
        raise typer.Exit(code=EXIT_UNREACHABLE)
    typer.echo(f"coordinator healthy: SuperLink PID {pid} answers on {host}:{coordinator.port}")


@clear_errors
def unregister_node(
    name: str = typer.Argument(..., help="The site's name, as registered."),
    folder: Path = typer.Option(Path("coordinator"), "--folder", help="The coordinator folder (made by `init`)."),
) -> None:
    """Remove a site (it leaves, or it changed its key): its node is refused from now on; the others run on."""
    from federation.coordinator.registry import unregister_node as unregister

    coordinator = _open(folder)
    node = unregister(coordinator=coordinator, name=name)
    typer.echo(
        f"site {node.name} unregistered (Flower node id {node.node_id}); its node is refused from now on. "
        f"A new key: `workbench coordinator register-node NEW_KEY.pub --name {node.name} --folder {folder}`."
    )


def add_operations_commands(app: typer.Typer) -> None:
    """Mount these commands on ``workbench coordinator``."""
    app.command("unregister-node")(unregister_node)
    app.command("service")(service)
    app.command("metrics")(metrics)
    app.command("run")(run)
    app.command("health")(health)
