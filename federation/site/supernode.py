"""A hospital's node: ``flower-supernode`` plus the site executor, supervised.

``run_node(config=...)`` is what ``workbench node start --config node.toml`` runs.
It starts two processes, each in its own process group, logging into the site's
state folder (``logs/supernode.log``, ``logs/executor.log``, ``logs/node.log``):

* ``flower-supernode`` (through supernode_process.py, which only shortens its idle
  waits) with TLS (``--root-certificates``: the coordinator's CA), node
  authentication (``--auth-supernode-private-key``), the site's settings as node
  config (data path, state folder, node.toml), ``--trusted-entities`` when the
  site's policy names a file, ``--isolation process`` (the node itself never
  spawns a ClientApp) and ``--superexec-auth-secret-file``: its Runtime API listens
  on loopback only and hands a task only to a request signed with the node's own
  secret (runtime_secret.py), so no other local user can take the site's tasks;
* the site executor (site_executor.py), one long-lived process that runs the
  site's ClientApp for every message (torch imported once).

It restarts the executor if it dies (a reservation that a killed task left open
stays in the site's ledger and keeps counting against the budget: a crash never
frees budget), and stops when the SuperNode exits: a refusal at connection (unregistered key, unknown CA) is reported with
Flower's reason and exit code. ``start_node`` runs the same in a background
process (``node start --detach``, tests, scripts) and returns once the node is
connected; ``stop_node`` stops a node cleanly (``node stop``).

A node runs once: ``run_node`` refuses to start while a process of the same node
runs (naming its PID), and when its Runtime port is taken by something else. The
supervisor keeps a runtime file (``state/node-runtime/pids.json``: PIDs, whether the
SuperLink admitted the node, when it was last alive); ``node_runtime.py`` tells the
node's state from the processes, that file adding only what no process shows.

A node that crashed is refused by the SuperLink until Flower marks its old session
offline: two heartbeats (2 x 30 s by default) after its last. From the runtime file
its crash left, the new start estimates how long that lasts, says so on the
terminal, and retries until then.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from federation.cli_support import exit_code_for
from federation.errors import BadInput, PartyFailed
from federation.processes import (
    ProcessHandle,
    engine_env,
    free_runtime_port,
    log_tail,
    pid_alive,
    port_is_free,
    spawn,
    split_address,
    stop_process_group,
)
from federation.site.anchors import LedgerBehind
from federation.site.ledger_keys import OWNER_ONLY_UMASK, private_folder
from federation.site.metrics import serve_node_metrics
from federation.site.node_runtime import NodeRuntime, node_processes, read_record
from federation.site.proxy import with_loopback_bypass
from federation.site.runtime_secret import ensure_secret, secret_path
from federation.site.supernode_process import HEARTBEAT_ENV, POLL_ENV

if TYPE_CHECKING:
    from federation.site.config import NodeConfig

logger = logging.getLogger("workbench.node")

CONNECTED_LINE = "SuperNode ID:"  # what flower-supernode logs once the SuperLink admitted it


# Flower marks a node offline 2 heartbeats (2 x 30 s) after its last one, and refuses
# to activate a node it still believes online: a node restarted after a crash must
# wait for that before the SuperLink takes it back.
FLOWER_HEARTBEAT_SECONDS = 30.0
HEARTBEAT_PATIENCE = 2  # Flower's HEARTBEAT_PATIENCE
ACTIVATION_WAIT_SECONDS = 90.0  # the most a start waits for a refused activation
ACTIVATION_MARGIN_SECONDS = 10.0  # beyond the estimated end of the previous session
ACTIVATION_RETRY_SECONDS = 5.0
ALIVE_EVERY_SECONDS = 5.0  # how often the supervisor records that the node is alive
STOP_TIMEOUT_SECONDS = 30.0


class NodeStartError(PartyFailed, RuntimeError):
    """The node could not start or was refused by the coordinator."""


class NodeAlreadyRunning(BadInput, RuntimeError):
    """A second start of a node that runs (or left processes behind)."""


class RuntimePortTaken(BadInput, RuntimeError):
    """The node's Runtime address is in use by another program or node."""


class _ActivationRefused(NodeStartError):
    """The SuperLink refused to activate this node's key (unregistered, or still online)."""


def heartbeat_seconds_from(env: dict[str, str] | None = None) -> float:
    raw = (env if env is not None else os.environ).get(HEARTBEAT_ENV, "")
    try:
        return float(raw) if raw else FLOWER_HEARTBEAT_SECONDS
    except ValueError:
        return FLOWER_HEARTBEAT_SECONDS


def previous_session_refusal(record: dict | None, *, now: float | None = None) -> float:
    """Seconds the SuperLink may still hold a crashed session of this node online
    (0: none known). From the runtime file the crash left: when the node was last
    alive, and its heartbeat interval."""
    if not record or not record.get("connected"):
        return 0.0
    now = time.time() if now is None else now
    alive_at = float(record.get("alive_at", 0.0))
    heartbeat = float(record.get("heartbeat_seconds", FLOWER_HEARTBEAT_SECONDS))
    return max(0.0, alive_at + HEARTBEAT_PATIENCE * heartbeat - now)


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
    def previous_session(self) -> Path:
        """The runtime file a crashed session left, kept for the next start's estimate."""
        return self.runtime / "previous-session.json"

    @property
    def executor_ready(self) -> Path:
        return self.runtime / "executor.ready"

    def read_record(self) -> dict:
        return read_record(self.pids) or {}

    def read_pids(self) -> dict[str, int]:
        """The PIDs and counters of the runtime file (numbers only)."""
        return {k: int(v) for k, v in self.read_record().items() if isinstance(v, (int, bool))}


def runtime_of(config: NodeConfig) -> NodeRuntime:
    """The node's processes and state (node_runtime.py)."""
    return node_processes(
        config_path=Path(config.path).resolve(),
        runtime_address=config.clientappio_address,
        record_path=NodeFiles(Path(config.state_dir)).pids,
    )


def check_can_start(config: NodeConfig) -> None:
    """NodeAlreadyRunning (with the PIDs) or RuntimePortTaken (with a free port) when
    this node cannot start now."""
    runtime = runtime_of(config)
    if runtime.running:
        raise NodeAlreadyRunning(
            f"site {config.site_id}'s node already runs: {runtime.describe()}. A node runs once. Fix: use it as "
            f"it is (`workbench node status --config {config.path}`), or stop it first with "
            f"`workbench node stop --config {config.path}`."
        )
    if runtime.leftovers:
        raise NodeAlreadyRunning(
            f"site {config.site_id}'s node is {runtime.describe()}. Fix: `workbench node stop --config "
            f"{config.path}` stops them, then start again."
        )
    host, port = split_address(config.clientappio_address)
    if not port_is_free(host, port):
        raise RuntimePortTaken(
            f"[node] clientappio_address {config.clientappio_address} in {config.path} is in use by another "
            "program (another node on this machine?): the SuperNode could not serve its Runtime API there. "
            f'Fix: set clientappio_address = "127.0.0.1:{free_runtime_port()}" (a free port now) in {config.path}.'
        )


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
        "--superexec-auth-secret-file",
        str(secret_path(config.state_dir)),
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
        "--runtime-secret-file",
        str(secret_path(config.state_dir)),
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

    def __init__(
        self,
        *,
        config: NodeConfig,
        env: dict[str, str] | None,
        poll_seconds: float | None,
        heartbeat_seconds: float | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.files = NodeFiles(Path(config.state_dir))
        extra = dict(env or {})
        if poll_seconds is not None:
            extra[POLL_ENV] = str(poll_seconds)
        if heartbeat_seconds is not None:
            extra[HEARTBEAT_ENV] = str(heartbeat_seconds)
        self.env = with_loopback_bypass(engine_env(extra))  # loopback never goes to a proxy
        self.heartbeat_seconds = heartbeat_seconds_from(self.env)
        self.supernode: ProcessHandle | None = None
        self.executor: ProcessHandle | None = None
        self.executor_restarts = 0
        self.connected = False
        self.state = "starting"
        self.retry_until: float | None = None
        self.started_at = time.time()
        self.alive_written = 0.0
        self.report = report or (lambda text: None)

    def say(self, text: str, *, level: int = logging.INFO) -> None:
        """To the node's log and to whoever started it (the terminal)."""
        logger.log(level, "site %s: %s", self.config.site_id, text)
        self.report(text)

    def write_pids(self) -> None:
        self.files.runtime.mkdir(parents=True, exist_ok=True)
        now = time.time()
        record = {
            "supervisor": os.getpid(),
            "connected": int(self.connected),
            "executor_restarts": self.executor_restarts,
            "state": self.state,
            "started_at": self.started_at,
            "alive_at": now,
            "heartbeat_seconds": self.heartbeat_seconds,
            "coordinator": self.config.coordinator_address,
        }
        if self.supernode is not None:
            record["supernode"] = self.supernode.pid
        if self.executor is not None:
            record["executor"] = self.executor.pid
        if self.retry_until is not None:
            record["retry_until"] = self.retry_until
        partial = self.files.pids.with_suffix(".partial")
        partial.write_text(json.dumps(record))
        partial.replace(self.files.pids)
        self.alive_written = now

    def keep_alive(self) -> None:
        if time.time() - self.alive_written >= ALIVE_EVERY_SECONDS:
            self.write_pids()

    def start_supernode(self, *, timeout: float, activation_wait: float | None) -> None:
        held = previous_session_refusal(read_record(self.files.previous_session))
        if activation_wait is None:
            # Retry only while a crashed session of this node may still be online there.
            activation_wait = min(held + ACTIVATION_MARGIN_SECONDS, ACTIVATION_WAIT_SECONDS) if held else 0.0
        started = time.monotonic()
        give_up = started + activation_wait
        while True:
            try:
                self._start_supernode_once(timeout=timeout)
                self.state, self.retry_until = "starting", None
                return
            except _ActivationRefused as refused:
                if time.monotonic() + ACTIVATION_RETRY_SECONDS > give_up:
                    raise NodeStartError(str(refused)) from None
                left = give_up - time.monotonic()
                self.state, self.retry_until = "waiting", time.time() + left
                self.write_pids()
                estimate = max(held - (time.monotonic() - started), 0.0)
                self.say(
                    "the coordinator refuses this node for now: it still holds the session of this node that "
                    f"ended without shutting down online, for about {estimate:.0f} s more (Flower marks a node "
                    f"offline {HEARTBEAT_PATIENCE} heartbeats of {self.heartbeat_seconds:g} s after its last). "
                    f"Retrying every {ACTIVATION_RETRY_SECONDS:.0f} s for up to {left:.0f} s.",
                    level=logging.WARNING,
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
                f"({self.config.node_private_key}.pub) is not registered (send it to the coordinator, who runs "
                f"`workbench coordinator register-node {self.config.node_private_key}.pub --name "
                f"{self.config.site_id} --folder COORDINATOR_FOLDER`), or a session of this node that ended "
                "without shutting down moments ago is still marked online there (Flower holds it for 2 "
                "heartbeats, about 60 s: start again after that)"
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
        # A clean stop: the SuperNode told the SuperLink it leaves (Flower's DeactivateNode),
        # so no previous session is held online and none is remembered.
        self.files.pids.unlink(missing_ok=True)
        self.files.previous_session.unlink(missing_ok=True)
        self.files.executor_ready.unlink(missing_ok=True)


def run_node(
    *,
    config: NodeConfig,
    stop: threading.Event | None = None,
    env: dict[str, str] | None = None,
    poll_seconds: float | None = None,
    heartbeat_seconds: float | None = None,
    connect_timeout: float = 120.0,
    activation_wait: float | None = None,
    report: Callable[[str], None] | None = None,
) -> None:
    """Run the site's node until interrupted (SIGINT, SIGTERM or ``stop``).

    Raises NodeAlreadyRunning or RuntimePortTaken when it cannot start here, and
    NodeStartError when the node cannot start or the coordinator refuses it (with
    Flower's reason), or when the SuperNode stops on its own. A refused activation is
    retried while a session of this node that crashed may still be held online at the
    coordinator (estimated from the runtime file the crash left; ``activation_wait``
    seconds instead when given). ``report`` receives what the operator should see on
    the terminal (connected, refused for how long, stopping).
    """
    _check_files(config)
    # Loopback only, and a secret only the node's user reads (RuntimeApiUnsafe otherwise).
    ensure_secret(state_dir=config.state_dir, address=config.clientappio_address, config_path=config.path)
    check_can_start(config)
    # Everything the node and its processes write is owner-only (ledger_keys.py).
    os.umask(OWNER_ONLY_UMASK)
    files = NodeFiles(Path(config.state_dir))
    private_folder(Path(config.state_dir))
    _anchor_at_start(config)
    files.logs.mkdir(parents=True, exist_ok=True)
    files.runtime.mkdir(parents=True, exist_ok=True)
    if files.pids.exists():  # the runtime file of a session that did not stop cleanly
        files.pids.replace(files.previous_session)
    handler = logging.FileHandler(files.node_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    node = _Node(config=config, env=env, poll_seconds=poll_seconds, heartbeat_seconds=heartbeat_seconds, report=report)
    metrics = serve_node_metrics(config=config)  # [monitoring] metrics (None: "off", or the port taken)
    try:
        node.write_pids()
        node.say(f"starting (coordinator {config.coordinator_address})")
        # The SuperNode first: a refusal by the coordinator (unregistered key, wrong CA)
        # is known in seconds, before the executor spends seconds importing torch.
        # Messages that arrive meanwhile wait in the SuperNode for the executor.
        node.start_supernode(timeout=connect_timeout, activation_wait=activation_wait)
        node.start_executor(timeout=connect_timeout)
        node.connected, node.state = True, "connected"
        node.write_pids()
        files.previous_session.unlink(missing_ok=True)
        node.say(
            f"connected to the coordinator at {config.coordinator_address}; serving (node PID {os.getpid()}, "
            f"supernode PID {node.supernode.pid}, executor PID {node.executor.pid}). Stop it with "
            f"`workbench node stop --config {config.path}`."
        )
        while not stop.wait(0.5):
            node.keep_alive()
            if not node.supernode.alive():
                code = node.supernode.returncode()
                raise NodeStartError(
                    f"flower-supernode exited with code {code}; end of {files.supernode_log}:\n{log_tail(files.supernode_log)}"
                )
            if not node.executor.alive():
                node.executor_restarts += 1
                node.say(
                    f"the site executor died (code {node.executor.returncode()}); restarting it "
                    f"(restart {node.executor_restarts})",
                    level=logging.WARNING,
                )
                node.start_executor(timeout=connect_timeout)
                node.write_pids()
        node.say("stopping")
    finally:
        node.stop()
        if metrics is not None:
            metrics.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        logger.removeHandler(handler)
        handler.close()


def _anchor_at_start(config: NodeConfig) -> None:
    """Move a legacy ledger key into the key folder, refuse a ledger behind any head this
    node recorded (anchors.LedgerBehind: which head, where, what to do), then sign the
    audit log's head (audit_heads.py)."""
    from federation.site.anchors import check_not_behind
    from federation.site.audit_heads import sign_audit_head
    from federation.site.ledger_keys import move_legacy_key

    site = config.site_config()
    moved = move_legacy_key(site)
    if moved is not None:
        logger.info("moved the ledger key from %s into the key folder %s", moved, site.ledger_key_path.parent)
    check_not_behind(site, board_checkpoint=config.board_checkpoint)
    sign_audit_head(site)


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
    heartbeat_seconds: float | None = None,
    timeout: float = 180.0,
    activation_wait: float | None = None,
    report: Callable[[str], None] | None = None,
) -> NodeHandle:
    """Run ``run_node`` for ``config`` in a background process; return once the node
    is connected and its executor ready (or raise with the reason: NodeAlreadyRunning,
    RuntimePortTaken, NodeStartError). ``report`` is told when the coordinator refuses
    the node for a while (a restart after a crash), and for how long."""
    check_can_start(config)
    files = NodeFiles(Path(config.state_dir))
    extra = dict(env or {})
    if poll_seconds is not None:
        extra[POLL_ENV] = str(poll_seconds)
    if heartbeat_seconds is not None:
        extra[HEARTBEAT_ENV] = str(heartbeat_seconds)
    command = [sys.executable, "-m", "federation.site.supernode", "--config", str(Path(config.path).resolve())]
    if activation_wait is not None:
        command += ["--activation-wait", str(activation_wait)]
    # Created here, before the supervisor sets its umask: owner-only like the rest of state.
    private_folder(files.logs)
    log_path = files.logs / "node-process.log"
    log_path.touch(mode=0o600, exist_ok=True)
    process = spawn(command=command, log_path=log_path, env=engine_env(extra))
    handle = NodeHandle(process=process, files=files)
    deadline = time.monotonic() + timeout
    told_until = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise NodeStartError(f"the node stopped: {log_tail(process.log_path, 12)}")
        record = files.read_record()
        if record.get("supervisor") == process.pid:  # not a record a crashed session left
            if record.get("connected"):
                return handle
            if record.get("state") == "waiting" and record.get("retry_until") != told_until and report is not None:
                told_until = record.get("retry_until")
                report(
                    "the coordinator refuses this node for now: it still holds the session of this node that ended "
                    "without shutting down online (Flower marks a node offline 2 heartbeats after its last); "
                    f"retrying for up to {max(float(told_until) - time.time(), 0):.0f} s more."
                )
        time.sleep(0.2)
    handle.stop()
    raise NodeStartError(f"the node was not ready within {timeout:.0f} s; see {files.logs}.")


def stop_node(*, config: NodeConfig, timeout: float = STOP_TIMEOUT_SECONDS) -> NodeRuntime:
    """Stop the node of ``config`` cleanly (SIGTERM to its supervisor, which stops the
    SuperNode, which tells the SuperLink it leaves), then anything it left; returns
    what ran before (state "stopped": nothing ran)."""
    runtime = runtime_of(config)
    if runtime.supervisor is not None:
        stop_process_group(runtime.supervisor, timeout=timeout)
        if pid_alive(runtime.supervisor):  # a foreground `node start` is not a group leader
            os.kill(runtime.supervisor, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(runtime.supervisor) and time.monotonic() < deadline:
                time.sleep(0.1)
    for pid in runtime.leftovers:
        if pid_alive(pid):
            stop_process_group(pid, timeout=timeout)
    files = NodeFiles(Path(config.state_dir))
    if runtime.state == "crashed" and files.pids.exists():
        # Keep what the crash left for the next start's estimate of the SuperLink's refusal.
        files.pids.replace(files.previous_session)
    return runtime


def main(argv: list[str] | None = None) -> int:
    from federation.site.config import load_node_config

    parser = argparse.ArgumentParser(description="Run a hospital's node (SuperNode + site executor).")
    parser.add_argument("--config", required=True, type=Path, help="The node's node.toml.")
    parser.add_argument(
        "--activation-wait",
        type=float,
        default=None,
        help="Seconds to keep retrying a refused activation (default: while a crashed session may be held).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run_node(config=load_node_config(args.config), activation_wait=args.activation_wait)
    except (NodeStartError, NodeAlreadyRunning, RuntimePortTaken) as err:
        print(f"error: {err}", file=sys.stderr)
        return exit_code_for(err)
    except LedgerBehind as err:  # a rolled-back ledger: refused before anything starts (anchors.py)
        print(f"error: {err}", file=sys.stderr)
        from federation.cli_support import EXIT_INTERNAL

        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
