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
"""

from __future__ import annotations

import argparse
import socket
import sys

EXIT_CONTRACT = 4  # cli_support.EXIT_INTERNAL: the installed Flower does not match flwr_compat.py
LOCKED_LINE = "workbench: SuperLink locked"  # the log says where each API answers


def listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from federation.coordinator.flwr_compat import locked_superlink_app
    from federation.flwr_contract import FlowerContractError
    from federation.processes import split_address

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--sites-address", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    ours, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    sites_host, sites_port = split_address(ours.sites_address)
    try:
        locked = locked_superlink_app(
            flower_args=[*flower_args, "--host", ours.host, "--port", str(ours.port)], operator_port=ours.port
        )
    except FlowerContractError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_CONTRACT
    sockets = [listener(sites_host, sites_port), listener(ours.host, ours.port)]
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
