"""A hospital's node: ``flower-supernode`` plus the site executor, supervised.

``run_node(config=...)`` is what ``workbench node start --config node.toml`` runs.
It starts two processes, each in its own process group, logging into the site's
state folder (``logs/supernode.log``, ``logs/executor.log``, ``logs/node.log``):

* ``flower-supernode`` (through supernode_process.py, which only shortens its idle
  waits) with TLS (``--root-certificates``: the coordinator's CA), node
  authentication (``--auth-supernode-private-key``), the site's settings as node
  config (data path, state folder, node.toml), ``--trusted-entities`` when the
  site's policy names a file, and ``--isolation process``: the node itself never
  spawns a ClientApp;
* the site executor (site_executor.py), one long-lived process that runs the
  site's ClientApp for every message (torch imported once).

It restarts the executor if it dies (a reservation that a killed task left open
stays in the site's ledger and keeps counting against the budget: a crash never
frees budget), and stops when the SuperNode exits: a refusal at connection (unregistered key, unknown CA) is reported with
Flower's reason and exit code. ``start_node`` runs the same in a background
process (for tests and scripts) and returns a handle with the PIDs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from federation.errors import InternalFault
from federation.processes import (
    ProcessHandle,
    engine_env,
    log_tail,
    pid_alive,
    spawn,
    split_address,
    stop_process_group,
)
from federation.site.supernode_process import POLL_ENV

if TYPE_CHECKING:
    from federation.site.config import NodeConfig

logger = logging.getLogger("workbench.node")

CONNECTED_LINE = "SuperNode ID:"  # what flower-supernode logs once the SuperLink admitted it


# Flower marks a node offline 2 heartbeats (2 x 30 s) after its last one, and refuses
# to activate a node it still believes online: a node restarted after a crash must
# wait for that before the SuperLink takes it back.
ACTIVATION_WAIT_SECONDS = 90.0
ACTIVATION_RETRY_SECONDS = 5.0


class NodeStartError(InternalFault, RuntimeError):
    """The node could not start or was refused by the coordinator."""


class _ActivationRefused(NodeStartError):
    """The SuperLink refused to activate this node's key (unregistered, or still online)."""


@dataclass(frozen=True)
class NodeFiles:
    """Where a running node keeps its logs and PIDs (under the site's state folder)."""

    state_dir: Path

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def supernode_log(self) -> Path:
        return self.logs / "supernode.log"

    @property
    def executor_log(self) -> Path:
        return self.logs / "executor.log"

    @property
    def node_log(self) -> Path:
        return self.logs / "node.log"

    @property
    def runtime(self) -> Path:
        return self.state_dir / "node-runtime"

    @property
    def pids(self) -> Path:
        return self.runtime / "pids.json"

    @property
    def executor_ready(self) -> Path:
        return self.runtime / "executor.ready"

    def read_pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.pids.read_text()).items()}
        except (OSError, ValueError):
            return {}


def node_config_argument(entries: dict[str, str]) -> str:
    """``--node-config`` text: ``key='value'`` pairs (TOML literal strings, so paths
    keep their backslashes), double quotes for a value holding a single quote."""
    parts = []
    for key, value in entries.items():
        value = str(value)
        if "'" not in value:
            parts.append(f"{key}='{value}'")
        elif '"' not in value and "\\" not in value:
            parts.append(f'{key}="{value}"')
        else:
            raise ValueError(
                f"node setting {key} holds both quote characters ({value!r}); Flower's --node-config "
                "cannot carry it. Rename the path or folder."
            )
    return " ".join(parts)


def supernode_command(*, config: NodeConfig) -> list[str]:
    host, port = split_address(config.clientappio_address)
    command = [
        sys.executable,
        "-m",
        "federation.site.supernode_process",
        "--superlink",
        config.coordinator_address,
        "--root-certificates",
        str(config.ca_certificate),
        "--auth-supernode-private-key",
        str(config.node_private_key),
        "--node-config",
        node_config_argument(config.node_config_entries()),
        "--isolation",
        "process",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if config.policy.trusted_entities is not None:
        command += ["--trusted-entities", str(config.policy.trusted_entities)]
    return command


def executor_command(*, config: NodeConfig, ready_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "federation.site.site_executor",
        "--runtime-api-address",
        config.clientappio_address,
        "--ready-file",
        str(ready_file),
    ]


def _check_files(config: NodeConfig) -> None:
    for what, path, fix in (
        (
            "the coordinator's CA certificate",
            config.ca_certificate,
            "copy ca.crt from the coordinator (it verifies the SuperLink)",
        ),
        ("the node's private key", config.node_private_key, "make the node's keys with `workbench node init`"),
    ):
        if not Path(path).is_file():
            raise NodeStartError(f"{what} is missing at {path} (named in {config.path}); {fix}.")


class _Node:
    """The two processes of one running node and the supervision between them."""

    def __init__(self, *, config: NodeConfig, env: dict[str, str] | None, poll_seconds: float | None) -> None:
        self.config = config
        self.files = NodeFiles(Path(config.state_dir))
        extra = dict(env or {})
        if poll_seconds is not None:
            extra[POLL_ENV] = str(poll_seconds)
        self.env = engine_env(extra)
        self.supernode: ProcessHandle | None = None
        self.executor: ProcessHandle | None = None
        self.executor_restarts = 0
        self.connected = False

    def write_pids(self) -> None:
        self.files.runtime.mkdir(parents=True, exist_ok=True)
        pids = {"supervisor": os.getpid()}
        if self.supernode is not None:
            pids["supernode"] = self.supernode.pid
        if self.executor is not None:
            pids["executor"] = self.executor.pid
        pids["connected"] = int(self.connected)
        pids["executor_restarts"] = self.executor_restarts
        partial = self.files.pids.with_suffix(".partial")
        partial.write_text(json.dumps(pids))
        partial.replace(self.files.pids)

    def start_supernode(self, *, timeout: float, activation_wait: float) -> None:
        give_up = time.monotonic() + activation_wait
        while True:
            try:
                return self._start_supernode_once(timeout=timeout)
            except _ActivationRefused as refused:
                if time.monotonic() + ACTIVATION_RETRY_SECONDS > give_up:
                    raise NodeStartError(str(refused)) from None
                logger.warning(
                    "site %s: the coordinator refused to activate this node; if it ran moments ago, the "
                    "coordinator still marks it online (about 60 s after its last heartbeat). Retrying in %.0f s.",
                    self.config.site_id,
                    ACTIVATION_RETRY_SECONDS,
                )
                time.sleep(ACTIVATION_RETRY_SECONDS)

    def _start_supernode_once(self, *, timeout: float) -> None:
        log_path = self.files.supernode_log
        offset = log_path.stat().st_size if log_path.exists() else 0
        self.supernode = spawn(command=supernode_command(config=self.config), log_path=log_path, env=self.env)
        self.write_pids()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with log_path.open("rb") as fh:
                fh.seek(offset)
                if CONNECTED_LINE.encode() in fh.read():
                    return
            if not self.supernode.alive():
                reason, activation = self._refusal_reason(self.supernode.returncode(), log_path, offset)
                raise (_ActivationRefused if activation else NodeStartError)(reason)
            time.sleep(0.2)
        raise NodeStartError(
            f"the node did not connect to {self.config.coordinator_address} within {timeout:.0f} s; "
            f"is the coordinator's SuperLink running? End of {log_path}:\n{log_tail(log_path)}"
        )

    def _refusal_reason(self, code: int | None, log_path: Path, offset: int) -> tuple[str, bool]:
        with log_path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        address = self.config.coordinator_address
        activation = False
        if "CERTIFICATE_VERIFY_FAILED" in text:
            why = (
                f"the SuperLink at {address} presented a certificate that {self.config.ca_certificate} does not "
                "verify; copy the coordinator's ca.crt to the node (and check the address is one the "
                "certificate names)"
            )
        elif "Failed to activate SuperNode" in text:
            activation = True
            why = (
                f"the coordinator at {address} refused this node: its public key "
                f"({self.config.node_private_key}.pub) is not registered (send it to the coordinator: "
                "`workbench coordinator register-node KEY.pub --name SITE`), or a session of this node that "
                "ended moments ago is still marked online there (wait a minute and start again)"
            )
        else:
            why = "flower-supernode stopped"
        return (
            f"{why}. flower-supernode exited with code {code}; end of {log_path}:\n{log_tail(log_path, 8)}",
            activation,
        )

    def start_executor(self, *, timeout: float) -> None:
        self.files.executor_ready.unlink(missing_ok=True)
        self.executor = spawn(
            command=executor_command(config=self.config, ready_file=self.files.executor_ready),
            log_path=self.files.executor_log,
            env=self.env,
        )
        self.write_pids()
        deadline = time.monotonic() + timeout
        while not self.files.executor_ready.exists():
            if not self.executor.alive():
                raise NodeStartError(
                    f"the site executor exited (code {self.executor.returncode()}) before it was ready; end of "
                    f"{self.files.executor_log}:\n{log_tail(self.files.executor_log)}"
                )
            if time.monotonic() > deadline:
                raise NodeStartError(
                    f"the site executor was not ready within {timeout:.0f} s; see {self.files.executor_log}."
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for handle in (self.executor, self.supernode):
            if handle is not None:
                handle.stop()
        self.files.pids.unlink(missing_ok=True)
        self.files.executor_ready.unlink(missing_ok=True)


def run_node(
    *,
    config: NodeConfig,
    stop: threading.Event | None = None,
    env: dict[str, str] | None = None,
    poll_seconds: float | None = None,
    connect_timeout: float = 120.0,
    activation_wait: float = ACTIVATION_WAIT_SECONDS,
) -> None:
    """Run the site's node until interrupted (SIGINT, SIGTERM or ``stop``).

    Raises NodeStartError when the node cannot start or the coordinator refuses
    it (with Flower's reason), or when the SuperNode stops on its own. A refused
    activation is retried for ``activation_wait`` seconds: after a crash the
    coordinator takes about a minute to mark the old session offline.
    """
    _check_files(config)
    files = NodeFiles(Path(config.state_dir))
    files.logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(files.node_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    node = _Node(config=config, env=env, poll_seconds=poll_seconds)
    try:
        logger.info("site %s: starting (coordinator %s)", config.site_id, config.coordinator_address)
        # The SuperNode first: a refusal by the coordinator (unregistered key, wrong CA)
        # is known in seconds, before the executor spends seconds importing torch.
        # Messages that arrive meanwhile wait in the SuperNode for the executor.
        node.start_supernode(timeout=connect_timeout, activation_wait=activation_wait)
        node.start_executor(timeout=connect_timeout)
        node.connected = True
        node.write_pids()
        logger.info(
            "site %s: connected; supernode PID %d, executor PID %d",
            config.site_id,
            node.supernode.pid,
            node.executor.pid,
        )
        while not stop.wait(0.5):
            if not node.supernode.alive():
                code = node.supernode.returncode()
                raise NodeStartError(
                    f"flower-supernode exited with code {code}; end of {files.supernode_log}:\n{log_tail(files.supernode_log)}"
                )
            if not node.executor.alive():
                node.executor_restarts += 1
                logger.warning(
                    "site %s: the site executor died (code %s); restarting it (restart %d)",
                    config.site_id,
                    node.executor.returncode(),
                    node.executor_restarts,
                )
                node.start_executor(timeout=connect_timeout)
                node.write_pids()
        logger.info("site %s: stopping", config.site_id)
    finally:
        node.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        logger.removeHandler(handler)
        handler.close()


@dataclass
class NodeHandle:
    """A node started in the background by ``start_node``."""

    process: ProcessHandle
    files: NodeFiles

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> dict[str, int]:
        """supervisor, supernode and executor PIDs (and connected, executor_restarts), as the node wrote them."""
        return self.files.read_pids()

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        """Stop the node (its supervisor stops both processes), by PID."""
        pids = self.pids()
        self.process.stop()
        for name in ("executor", "supernode"):  # a supervisor killed with SIGKILL leaves them
            if name in pids and pid_alive(pids[name]):
                stop_process_group(pids[name])


def start_node(
    *,
    config: NodeConfig,
    env: dict[str, str] | None = None,
    poll_seconds: float | None = None,
    timeout: float = 180.0,
    activation_wait: float = ACTIVATION_WAIT_SECONDS,
) -> NodeHandle:
    """Run ``run_node`` for ``config`` in a background process; return once the node
    is connected and its executor ready (or raise NodeStartError with the reason)."""
    files = NodeFiles(Path(config.state_dir))
    files.pids.unlink(missing_ok=True)
    extra = dict(env or {})
    if poll_seconds is not None:
        extra[POLL_ENV] = str(poll_seconds)
    process = spawn(
        command=[
            sys.executable,
            "-m",
            "federation.site.supernode",
            "--config",
            str(config.path),
            "--activation-wait",
            str(activation_wait),
        ],
        log_path=files.logs / "node-process.log",
        env=engine_env(extra),
    )
    handle = NodeHandle(process=process, files=files)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise NodeStartError(f"the node stopped: {log_tail(process.log_path, 12)}")
        pids = handle.pids()
        if pids.get("connected"):
            return handle
        time.sleep(0.2)
    handle.stop()
    raise NodeStartError(f"the node was not ready within {timeout:.0f} s; see {files.logs}.")


def main(argv: list[str] | None = None) -> int:
    from federation.site.config import load_node_config

    parser = argparse.ArgumentParser(description="Run a hospital's node (SuperNode + site executor).")
    parser.add_argument("--config", required=True, type=Path, help="The node's node.toml.")
    parser.add_argument(
        "--activation-wait",
        type=float,
        default=ACTIVATION_WAIT_SECONDS,
        help="Seconds to keep retrying a refused activation (after a crash).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run_node(config=load_node_config(args.config), activation_wait=args.activation_wait)
    except NodeStartError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
