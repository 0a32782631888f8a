"""The coordinator: a folder, and the ``flower-superlink`` that runs from it.

``Coordinator.init`` makes the folder (a CA, a server certificate for the
coordinator's address, ``coordinator.toml``); ``start`` runs ``flower-superlink``
with TLS, ``--enable-supernode-auth`` (only registered node keys may connect),
its state in ``state/superlink.db`` and its log in ``logs/superlink.log``, and
``--disable-runtime-dependency-installation`` (a study's app bundle never
installs packages at the coordinator). It runs locked (superlink_process.py,
api_gate.py): the address the sites dial answers only the Fleet calls of a
registered node and a health check; the Control API (``flwr run``, node
registration) and the Runtime API (the ServerApps) answer on
``127.0.0.1:<control-port>``, to this machine only.

Folder layout::

    coordinator.toml     address the sites dial, the host the SuperLink binds, the operator's loopback port
    tls/                 ca.crt (give it to every site), ca.key, server.pem, server.key
    state/superlink.db   the SuperLink's own state (runs, registered nodes)
    state/serverapp-exec.secret  signs the ServerApp executor's task requests (0600)
    logs/superlink.log
    flwr-home/           the flwr CLI's connection to this SuperLink (FLWR_HOME)
    nodes.json           registered sites: name -> public key, node id
    runs/                one folder per connected study (study.json, rounds.jsonl, outcome.json)
    superlink.pid
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.coordinator.certificates import TlsFiles, certificate_hosts, create_tls_files
from federation.errors import BadInput, PartyFailed
from federation.processes import (
    BIN_DIR,
    ProcessHandle,
    engine_env,
    free_runtime_port,
    log_tail,
    pid_alive,
    spawn,
    split_address,
    stop_process,
    stop_process_group,
    wait_for_port,
)

CONFIG_NAME = "coordinator.toml"
CONNECTION = "coordinator"  # the flwr CLI's name for this SuperLink
CONTROL_PORT_KEY = "control-port"
OPERATOR_HOST = "127.0.0.1"  # the Control and Runtime APIs answer here only
STOP_GRACE_S = 15.0  # a stopped SuperLink's time to shut down on SIGTERM, before SIGKILL
KILL_WAIT_S = 5.0  # stop_process_group's wait after SIGKILL
# How long a study that lost its run waits for a stopping SuperLink to be gone, to tell a
# stopped coordinator from one that does not answer: a stop's whole time, and slack for a
# loaded machine (the study sees the run end before the stop has finished).
STOPPED_WITHIN_S = STOP_GRACE_S + KILL_WAIT_S + 10.0


class CoordinatorError(BadInput, RuntimeError):
    """A coordinator folder that is missing or incomplete, or a request it refuses (a site
    registered twice)."""


class CoordinatorUnreachable(PartyFailed, RuntimeError):
    """The coordinator's SuperLink is not running, or did not answer."""


def _bind_host(host: str) -> str:
    """Loopback addresses bind loopback; anything else listens on every interface."""
    try:
        return host if ipaddress.ip_address(host).is_loopback else "0.0.0.0"
    except ValueError:
        return "127.0.0.1" if host == "localhost" else "0.0.0.0"


def _control_port(port: int | None, *, sites_port: int) -> int:
    """The operator's loopback port: the one given, else one free now."""
    if port is None:
        port = free_runtime_port(OPERATOR_HOST)
        while port == sites_port:
            port = free_runtime_port(OPERATOR_HOST)
    if not 0 < int(port) < 65536 or int(port) == sites_port:
        raise CoordinatorError(
            f"control port {port!r}: the operator's port must be a TCP port (1-65535) other than the sites' "
            f"port {sites_port}. Fix: choose another --control-port, or leave it out (a free port is chosen)."
        )
    return int(port)


@dataclass(frozen=True)
class Coordinator:
    """A coordinator folder (see the module docstring for its layout)."""

    folder: Path
    address: str
    bind_host: str
    control_port: int

    # --- making and opening ---------------------------------------------------------

    @classmethod
    def init(
        cls, *, folder: Path, address: str, extra_hosts: list[str] | None = None, control_port: int | None = None
    ) -> Coordinator:
        """A new coordinator folder for ``address`` (HOST:PORT the sites will dial);
        ``control_port``: the loopback port of the Control and Runtime APIs (by
        default a port free now, kept in coordinator.toml)."""
        folder = Path(folder).resolve()
        host, port = split_address(address)
        control_port = _control_port(control_port, sites_port=port)
        if (folder / CONFIG_NAME).exists():
            raise FileExistsError(
                f"{folder} is already a coordinator folder ({CONFIG_NAME} exists); open it with "
                f"`workbench coordinator start --folder {folder}`, or choose a new folder."
            )
        tls = create_tls_files(folder=folder / "tls", hosts=[host, *(extra_hosts or [])])
        coordinator = cls(
            folder=folder, address=f"{host}:{port}", bind_host=_bind_host(host), control_port=control_port
        )
        (folder / CONFIG_NAME).write_text(
            "# Written by `workbench coordinator init`.\n"
            "# address: HOST:PORT the sites dial (their node.toml's coordinator address);\n"
            "#          the server certificate in tls/ is valid for: "
            f"{', '.join(certificate_hosts(tls.server_certificate))}\n"
            "# bind-host: where the SuperLink listens (loopback for a loopback address).\n"
            "# control-port: the Control and Runtime APIs (flwr run, node registration, the\n"
            "#               ServerApps) answer on 127.0.0.1 at this port only, never to the sites.\n"
            f'address = "{coordinator.address}"\n'
            f'bind-host = "{coordinator.bind_host}"\n'
            f"{CONTROL_PORT_KEY} = {control_port}\n"
        )
        for sub in ("state", "logs", "runs"):
            (folder / sub).mkdir(exist_ok=True)
        coordinator.write_flwr_connection()
        return coordinator

    @classmethod
    def open(cls, folder: Path) -> Coordinator:
        folder = Path(folder).resolve()
        config_path = folder / CONFIG_NAME
        if not config_path.exists():
            raise CoordinatorError(
                f"{folder} is not a coordinator folder (no {CONFIG_NAME}); make one with "
                "`workbench coordinator init --folder DIR --address HOST:PORT`."
            )
        data = tomllib.loads(config_path.read_text())
        address = str(data["address"])
        control_port = data.get(CONTROL_PORT_KEY)
        if control_port is None:  # a folder from before the lock: give it an operator's port once
            control_port = _control_port(None, sites_port=split_address(address)[1])
            with config_path.open("a") as fh:
                fh.write(f"{CONTROL_PORT_KEY} = {control_port}\n")
        coordinator = cls(
            folder=folder,
            address=address,
            bind_host=str(data.get("bind-host", "0.0.0.0")),
            control_port=int(control_port),
        )
        coordinator.write_flwr_connection()
        if not coordinator.tls.exist():
            raise CoordinatorError(
                f"{folder / 'tls'} lacks its certificates; make a new folder with `workbench coordinator init`."
            )
        return coordinator

    # --- where things are ------------------------------------------------------------

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.in_folder(self.folder / "tls")

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @property
    def operator_address(self) -> str:
        """Where the Control and Runtime APIs answer: loopback, this machine only."""
        return f"{OPERATOR_HOST}:{self.control_port}"

    @property
    def database(self) -> Path:
        return self.folder / "state" / "superlink.db"

    @property
    def serverapp_secret(self) -> Path:
        """The secret that signs ServerApp task requests (0600, made at first start)."""
        return self.folder / "state" / "serverapp-exec.secret"

    def ensure_serverapp_secret(self) -> Path:
        """The ServerApp executor's secret, made (random, 0600) when missing;
        CoordinatorError when others could read or replace it."""
        path = self.serverapp_secret
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 from the start
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_hex(32).encode())
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.geteuid():
            raise CoordinatorError(
                f"{path}: the secret of the ServerApp executor must be a regular file of this user that nobody "
                f"else can read (mode {stat.S_IMODE(info.st_mode):o}); another local user could take a study's "
                f"run. Nothing was started. Fix: chmod 600 {path} (or remove it: start makes a new one)."
            )
        return path

    @property
    def log_path(self) -> Path:
        return self.folder / "logs" / "superlink.log"

    @property
    def pid_path(self) -> Path:
        return self.folder / "superlink.pid"

    @property
    def flwr_home(self) -> Path:
        return self.folder / "flwr-home"

    @property
    def nodes_path(self) -> Path:
        return self.folder / "nodes.json"

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"

    def write_flwr_connection(self) -> None:
        """The flwr CLI reads SuperLink connections from FLWR_HOME/config.toml."""
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            "[superlink]\n"
            f'default = "{CONNECTION}"\n\n'
            f"[superlink.{CONNECTION}]\n"
            f'address = "{self.operator_address}"\n'
            f'root-certificates = "{self.tls.ca_certificate}"\n'
        )

    # --- running ---------------------------------------------------------------------

    def superlink_command(self) -> list[str]:
        tls = self.tls
        return [
            sys.executable,
            "-m",
            "federation.coordinator.superlink_process",
            "--sites-address",
            f"{self.bind_host}:{self.port}",
            "--ssl-ca-certfile",
            str(tls.ca_certificate),
            "--ssl-certfile",
            str(tls.server_certificate),
            "--ssl-keyfile",
            str(tls.server_key),
            "--enable-supernode-auth",
            "--database",
            str(self.database),
            "--disable-runtime-dependency-installation",
            "--host",
            OPERATOR_HOST,
            "--port",
            str(self.control_port),
            # ServerApp tasks only to Flower's executor that holds the secret (superlink_process.py).
            "--isolation",
            "process",
            "--superexec-auth-secret-file",
            str(self.serverapp_secret),
        ]

    def running_pid(self) -> int | None:
        """The PID of this folder's SuperLink, if it runs."""
        if not self.pid_path.exists():
            return None
        pid = int(self.pid_path.read_text().split()[0])
        return pid if pid_alive(pid) else None

    def start(self, *, timeout: float = 60.0, env: dict[str, str] | None = None) -> ProcessHandle:
        """Start the SuperLink (detached) and wait until its port answers."""
        if (pid := self.running_pid()) is not None:
            raise CoordinatorError(f"the SuperLink of {self.folder} already runs (PID {pid}); stop it first.")
        self.database.parent.mkdir(parents=True, exist_ok=True)
        self.ensure_serverapp_secret()
        restarted = self.database.exists()  # a previous SuperLink may have left runs unfinished
        handle = spawn(command=self.superlink_command(), log_path=self.log_path, env=engine_env(env), cwd=self.folder)
        self.pid_path.write_text(f"{handle.pid}\n")
        host = "127.0.0.1" if self.bind_host == "0.0.0.0" else self.bind_host
        try:
            wait_for_port(host=host, port=self.port, process=handle, timeout=timeout, what="flower-superlink")
            wait_for_port(
                host=OPERATOR_HOST, port=self.control_port, process=handle, timeout=timeout, what="flower-superlink"
            )
        except BaseException:
            handle.stop()
            self.pid_path.unlink(missing_ok=True)
            raise
        if restarted:
            self.stop_stale_runs()
        return handle

    def stop_stale_runs(self) -> list[str]:
        """Stop the runs a previous SuperLink of this folder left unfinished.

        Their ServerApps ended with that SuperLink, but their messages would still be
        handed to a site that connects: a study the coordinator stopped mid-way must not
        go on at a site (the sites also refuse a message past its time to live). Returns
        the Flower run ids stopped."""
        try:
            runs = self.flwr("ls", CONNECTION, timeout=60).get("runs", [])
        except (CoordinatorError, CoordinatorUnreachable, subprocess.TimeoutExpired):
            return []
        stopped = []
        for run in runs:
            if str(run.get("status", "")).startswith("finished"):
                continue
            try:
                self.flwr("stop", str(run["run-id"]), CONNECTION, timeout=60)
                stopped.append(str(run["run-id"]))
            except (CoordinatorError, CoordinatorUnreachable, KeyError, subprocess.TimeoutExpired):
                continue
        return stopped

    def stop(self, *, timeout: float = STOP_GRACE_S) -> bool:
        """Stop this folder's SuperLink by its PID, and the ServerApps it started (Flower
        starts them in sessions of their own: one waiting on a site would outlive it);
        False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        apps = self.serverapp_pids()
        stop_process_group(pid, timeout=timeout)
        for app in apps:
            stop_process(app, timeout=timeout)
        self.pid_path.unlink(missing_ok=True)
        return True

    def wait_stopped(self, *, timeout: float = STOPPED_WITHIN_S) -> bool:
        """Whether this folder's SuperLink is gone within ``timeout`` (a stop in progress ends)."""
        deadline = time.monotonic() + timeout
        while self.running_pid() is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def serverapp_pids(self) -> list[int]:
        """The ``flwr-serverapp`` processes that talk to this SuperLink (its Runtime API
        answers on the operator's port)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if any(a.endswith("flwr-serverapp") for a in argv[:2]) and "--runtime-api-address" in argv:
                address = argv[argv.index("--runtime-api-address") + 1 : argv.index("--runtime-api-address") + 2]
                if address and address[0].rsplit(":", 1)[-1] == str(self.control_port):
                    found.append(int(entry.name))
        return found

    # --- the flwr CLI against this SuperLink -----------------------------------------

    def flwr(self, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run ``flwr ARGS --format json`` against this SuperLink; its JSON answer.

        Raises CoordinatorError with Flower's own message when it reports a failure.
        """
        command = [str(BIN_DIR / "flwr"), *args, "--format", "json"]
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=engine_env({"FLWR_HOME": str(self.flwr_home), **(env or {})}),
            cwd=self.folder,
        )
        try:
            answer = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            raise CoordinatorUnreachable(
                f"`flwr {' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                f"\nSuperLink log:\n{log_tail(self.log_path, 5)}"
            ) from None
        if not answer.get("success", False):
            if "Connection to the SuperLink is unavailable" in str(answer.get("error-message", "")):
                raise CoordinatorUnreachable(  # stopping, or not started: a party that did not answer
                    f"`flwr {args[0]}`: the SuperLink at {self.operator_address} did not answer."
                    f"\nSuperLink log:\n{log_tail(self.log_path, 5)}"
                )
            message = (
                str(answer.get("error-message", answer))
                .replace(f"Using SuperLink: {CONNECTION} ({self.address})", "")
                .strip()
            )
            raise CoordinatorError(f"`flwr {args[0]} {args[1] if len(args) > 1 else ''}` failed: {message}")
        return answer

    def status(self) -> dict[str, Any]:
        """Whether the SuperLink runs, where, which sites are registered, and which of
        them are online now (as the SuperLink says: None when it does not run)."""
        from federation.coordinator.registry import node_statuses

        nodes = json.loads(self.nodes_path.read_text()) if self.nodes_path.exists() else {}
        running = self.running_pid()
        statuses = None
        if running is not None:
            try:
                statuses = node_statuses(self)
            except (CoordinatorError, CoordinatorUnreachable, subprocess.TimeoutExpired):
                statuses = None
        return {
            "folder": str(self.folder),
            "address": self.address,
            "operator_address": self.operator_address,
            "running_pid": running,
            "ca_certificate": str(self.tls.ca_certificate),
            "registered_sites": sorted(nodes),
            # site -> the ledger key its receipts must verify under ("" when registered without
            # one) and how many rotations of it were accepted (key_rotation.py)
            "ledger_keys": {
                name: {"key": str(d.get("ledger_key", "")), "rotations": len(d.get("key_rotations", []))}
                for name, d in sorted(nodes.items())
            },
            # site -> its pinned board ("k of n: names") or None: registered without --board, so
            # a rotation's quorum is counted against the board the site's own handover states
            "boards": {name: _describe_pin(d.get("board") or {}) or None for name, d in sorted(nodes.items())},
            "online_sites": None
            if statuses is None
            else sorted(name for name, s in statuses.items() if s["status"] == "online"),
            "nodes": statuses,
            "log": str(self.log_path),
        }


def _describe_pin(pin: dict) -> str:
    board = pin.get("board") or {}
    names = ", ".join(str(m.get("name")) for m in board.get("members", []))
    return f"{board.get('quorum')} of {len(board.get('members', []))}: {names}" if board else ""
