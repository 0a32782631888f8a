"""Starting and stopping the engines' processes: by PID, by process group, with logs.

Every process is started in a session of its own, so that stopping it (SIGTERM
to its group, then SIGKILL) also stops what it started, and nothing is ever
stopped by name. Each logs to a file, and a process that dies while we wait for
it is reported with the end of its log.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import federation

PROJECT_ROOT = Path(federation.__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


def engine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Flower process we start: this Python's console scripts
    first on PATH (Flower starts ``flower-superexec`` and ``flwr-serverapp`` by
    name), this checkout first on PYTHONPATH (so engines import the code under
    test), no telemetry and no update checks (sites have no internet)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", "")])
    paths = [str(PROJECT_ROOT)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(PROJECT_ROOT)
    ]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    # Plain output: a Jupyter kernel sets FORCE_COLOR, and flwr's JSON answers then
    # arrive wrapped in terminal colour codes that no parser reads.
    env.pop("FORCE_COLOR", None)
    env.pop("CLICOLOR_FORCE", None)
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessHandle:
    """A started process: its PID (also its process group) and its log file."""

    pid: int
    log_path: Path
    command: list[str] = field(default_factory=list)
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        if self.popen is None:
            raise RuntimeError("only a process started here can be waited for")
        return self.popen.wait(timeout)

    def stop(self, *, timeout: float = 15.0) -> None:
        stop_process_group(self.pid, timeout=timeout, reap=self.popen.poll if self.popen is not None else None)

    def kill(self) -> None:
        """SIGKILL this process only (not its group): a crash, for tests."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if self.popen is not None:
            self.popen.wait(timeout=10)


def spawn(
    *, command: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> ProcessHandle:
    """Start ``command`` in a new session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or engine_env(),
            cwd=cwd,
            start_new_session=True,
        )
    return ProcessHandle(pid=popen.pid, log_path=log_path, command=list(command), popen=popen)


def _state(pid: int) -> str | None:
    """The process state letter from /proc (Z: a zombie, exited but not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited process that its parent has not reaped yet
    (a zombie) counts as stopped."""
    state = _state(pid)
    return state is not None and state != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def stop_process_group(pid: int, *, timeout: float = 15.0, reap=None) -> None:
    """SIGTERM the group led by ``pid`` (Flower shuts down cleanly on it), then SIGKILL
    what is left. ``reap`` (a Popen's ``poll``) collects our own child as it exits."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not pid_alive(pid) and not group_members(pid):
                return
            time.sleep(0.1)


def stop_process(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM one process (not its group), then SIGKILL if it is still there."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds (uvicorn does)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_runtime_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a server that will listen there for long (a node's Runtime
    API): picked at random below the range the system hands out to outgoing connections,
    so that two nodes initialised on one machine get different ports and no client
    connection takes it meanwhile."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(20000, max(low, 20001)))
    random.shuffle(candidates)
    for port in candidates[:200]:
        if port_is_free(host, port):
            return port
    return free_port(host)


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(*, host: str, port: int, process: ProcessHandle, timeout: float, what: str) -> None:
    """Wait until ``host:port`` accepts connections; fail with the log if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(host, port):
            return
        if not process.alive():
            raise RuntimeError(
                f"{what} exited (code {process.returncode()}) before {host}:{port} answered. "
                f"End of its log {process.log_path}:\n{log_tail(process.log_path)}"
            )
        time.sleep(0.2)
    raise TimeoutError(
        f"{what} did not answer on {host}:{port} within {timeout:.0f} s. End of its log "
        f"{process.log_path}:\n{log_tail(process.log_path)}"
    )


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:port``) into its parts, or a clear error."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"an address must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:9092; got {address!r}."
        )
    return host.strip("[]"), int(port)
