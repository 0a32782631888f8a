"""``flower-superlink``, locked: Fleet for the sites, Control and Runtime on loopback.

``python -m federation.coordinator.superlink_process --sites-address HOST:PORT
[flower-superlink's own arguments, with --host 127.0.0.1 --port OPERATOR_PORT]``

Flower 1.42 has no flag that keeps its Control API (``flwr run``, ``flwr supernode
register``: unauthenticated in open-source Flower) and its Runtime API (the ServerApps'
ServerAppIo) off the port the sites dial. This entry point runs Flower's own SuperLink
(its argument parser, app and lifespan, unchanged) and serves its app from one uvicorn
server on two listeners, through ``api_gate.ApiGate``:

- ``--sites-address`` (coordinator.toml's address): the Fleet calls of a registered
  node and the health check; any other request gets 403 before Flower sees it;
- ``127.0.0.1:<--port>`` (coordinator.toml's control-port): everything, for loopback
  peers (the workbench, the flwr CLI of the coordinator folder, the ServerApps that
  Flower's executor starts: it dials Flower's own ``--host/--port``).

Both listeners speak TLS with the coordinator's server certificate (valid for the
sites' host and for 127.0.0.1). The Flower names this needs are declared in
flwr_compat.py; when they no longer match, nothing starts (exit 4).

With ``--isolation process --superexec-auth-secret-file FILE`` (Flower: experimental)
the SuperLink hands a ServerApp task only to a request signed with FILE's secret, and
this process starts Flower's ``flower-superexec`` with the same secret beside it (in
its process group, and told to exit with it): a local user of the coordinator's
machine who reaches the loopback port cannot take a study's run and its Grid.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

EXIT_CONTRACT = 4  # cli_support.EXIT_INTERNAL: the installed Flower does not match flwr_compat.py
LOCKED_LINE = "workbench: SuperLink locked"  # the log says where each API answers


def listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from federation.coordinator.api_gate import is_loopback
    from federation.coordinator.flwr_compat import locked_superlink_app
    from federation.flwr_contract import FlowerContractError
    from federation.processes import split_address

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--sites-address", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--isolation", default="subprocess")
    parser.add_argument("--superexec-auth-secret-file", default="")
    parser.add_argument("--ssl-ca-certfile", default="")
    ours, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    sites_host, sites_port = split_address(ours.sites_address)
    if not is_loopback(ours.host):
        print(f"error: --host {ours.host}: the Control and Runtime APIs listen on loopback only.", file=sys.stderr)
        return 2
    if ours.isolation == "process" and not ours.superexec_auth_secret_file:
        print(
            "error: --isolation process needs --superexec-auth-secret-file (its executor signs with it).",
            file=sys.stderr,
        )
        return 2
    flower_args += ["--isolation", ours.isolation]
    if ours.ssl_ca_certfile:
        flower_args += ["--ssl-ca-certfile", ours.ssl_ca_certfile]
    if ours.superexec_auth_secret_file:
        flower_args += ["--superexec-auth-secret-file", ours.superexec_auth_secret_file]
    try:
        locked = locked_superlink_app(
            flower_args=[*flower_args, "--host", ours.host, "--port", str(ours.port)], operator_port=ours.port
        )
    except FlowerContractError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_CONTRACT
    sockets = [listener(sites_host, sites_port), listener(ours.host, ours.port)]
    if ours.isolation == "process":
        # Flower's ServerApp executor, signing its task requests with the SuperLink's secret;
        # it retries until the Runtime API answers, and exits when this process does.
        subprocess.Popen(
            [
                "flower-superexec",
                "--runtime-api-address",
                f"{ours.host}:{ours.port}",
                "--root-certificates",
                ours.ssl_ca_certfile,
                "--superexec-auth-secret-file",
                ours.superexec_auth_secret_file,
                "--parent-pid",
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
        )
    print(
        f"{LOCKED_LINE}: Fleet API and health on {ours.sites_address}; Control and Runtime APIs on "
        f"{ours.host}:{ours.port} (loopback peers only)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app=locked.app,
        reload=False,
        access_log=True,
        log_config=locked.log_config,
        ssl_certfile=locked.ssl_certfile,
        ssl_keyfile=locked.ssl_keyfile,
        workers=1,  # Flower's lifespan starts its ServerApp executor once
    )
    uvicorn.Server(config).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
