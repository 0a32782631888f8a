"""Start, stop and describe the study service beside the SuperLink (a process of its own).

Its port is ``service-port`` in coordinator.toml (chosen free at the first start of a
folder that has none, then kept: researchers are told the URL once). It listens
where the SuperLink does (loopback for a loopback coordinator), with
``tls/service.pem`` and ``tls/service.key`` made from the coordinator's CA at the
first start. Its log is ``logs/study-service.log``, the audit log
``logs/study-service-audit.jsonl``, its PID ``study-service.pid``.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.coordinator.certificates import certificate_hosts, issue_server_certificate
from federation.coordinator.superlink import CONFIG_NAME, OPERATOR_HOST, Coordinator, CoordinatorError
from federation.processes import (
    ProcessHandle,
    engine_env,
    free_runtime_port,
    pid_alive,
    spawn,
    split_address,
    stop_process,
    wait_for_port,
)

SERVICE_PORT_KEY = "service-port"


@dataclass(frozen=True)
class ServiceFiles:
    """Where the study service of a coordinator folder keeps its things."""

    folder: Path

    @property
    def certificate(self) -> Path:
        return self.folder / "tls" / "service.pem"

    @property
    def key(self) -> Path:
        return self.folder / "tls" / "service.key"

    @property
    def pid(self) -> Path:
        return self.folder / "study-service.pid"

    @property
    def log(self) -> Path:
        return self.folder / "logs" / "study-service.log"

    @property
    def audit_log(self) -> Path:
        return self.folder / "logs" / "study-service-audit.jsonl"


def service_port(coordinator: Coordinator) -> int:
    """The service's port from coordinator.toml; one free now is chosen and kept if none is set."""
    config_path = coordinator.folder / CONFIG_NAME
    port = tomllib.loads(config_path.read_text()).get(SERVICE_PORT_KEY)
    if port is None:
        taken = {coordinator.port, coordinator.control_port}
        port = free_runtime_port(OPERATOR_HOST)
        while port in taken:
            port = free_runtime_port(OPERATOR_HOST)
        set_service_port(coordinator, port)
    return int(port)


def set_service_port(coordinator: Coordinator, port: int) -> None:
    """Keep ``port`` as the service's port (``workbench coordinator init --service-port``)."""
    if not 0 < int(port) < 65536 or int(port) in (coordinator.port, coordinator.control_port):
        raise CoordinatorError(
            f"service port {port!r}: the study service needs a TCP port (1-65535) other than the sites' "
            f"({coordinator.port}) and the operator's ({coordinator.control_port}). Fix: choose another "
            "--service-port, or leave it out (a free port is chosen)."
        )
    config_path = coordinator.folder / CONFIG_NAME
    text = config_path.read_text()
    if SERVICE_PORT_KEY in tomllib.loads(text):
        raise CoordinatorError(f"{config_path} already sets {SERVICE_PORT_KEY}; edit it there to change it.")
    with config_path.open("a") as fh:
        fh.write(f"# {SERVICE_PORT_KEY}: the study service (HTTPS) for researchers on their own machines.\n")
        fh.write(f"{SERVICE_PORT_KEY} = {int(port)}\n")


def service_url(coordinator: Coordinator) -> str:
    host = split_address(coordinator.address)[0]
    return f"https://{host}:{service_port(coordinator)}"


def ensure_certificate(coordinator: Coordinator) -> ServiceFiles:
    """The service's certificate from the coordinator's CA, for the hosts the SuperLink's names."""
    files = ServiceFiles(coordinator.folder)
    if not (files.certificate.exists() and files.key.exists()):
        issue_server_certificate(
            ca=coordinator.tls,
            hosts=certificate_hosts(coordinator.tls.server_certificate),
            certificate=files.certificate,
            key=files.key,
        )
    return files


def running_pid(coordinator: Coordinator) -> int | None:
    files = ServiceFiles(coordinator.folder)
    try:
        pid = int(files.pid.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def service_command(coordinator: Coordinator, *, options: dict[str, Any] | None = None) -> list[str]:
    command = [sys.executable, "-m", "federation.coordinator.study_service", "--folder", str(coordinator.folder)]
    for name, value in (options or {}).items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def start_service(
    coordinator: Coordinator, *, timeout: float = 60.0, options: dict[str, Any] | None = None
) -> ProcessHandle:
    """Start the study service (detached) and wait until its port answers. ``options``:
    the service's own settings (``token_ttl``, ``head_every``, ``max_body``,
    ``unfollowed_after``), for tests and operators who change them."""
    if (pid := running_pid(coordinator)) is not None:
        raise CoordinatorError(f"the study service of {coordinator.folder} already runs (PID {pid}); stop it first.")
    files = ensure_certificate(coordinator)
    port = service_port(coordinator)
    handle = spawn(
        command=service_command(coordinator, options=options),
        log_path=files.log,
        env=engine_env(),
        cwd=coordinator.folder,
    )
    files.pid.write_text(f"{handle.pid}\n")
    host = "127.0.0.1" if coordinator.bind_host == "0.0.0.0" else coordinator.bind_host
    try:
        wait_for_port(host=host, port=port, process=handle, timeout=timeout, what="the study service")
    except BaseException:
        handle.stop()
        files.pid.unlink(missing_ok=True)
        raise
    return handle


def stop_service(coordinator: Coordinator, *, timeout: float = 15.0) -> bool:
    """Stop the study service by its PID; False if it was not running. Studies it started
    keep their Flower runs until they end or nobody follows them (``unfollowed_after``)."""
    files = ServiceFiles(coordinator.folder)
    pid = running_pid(coordinator)
    if pid is None:
        files.pid.unlink(missing_ok=True)
        return False
    stop_process(pid, timeout=timeout)
    files.pid.unlink(missing_ok=True)
    return True


def service_status(coordinator: Coordinator) -> dict[str, Any]:
    files = ServiceFiles(coordinator.folder)
    return {
        "url": service_url(coordinator),
        "running_pid": running_pid(coordinator),
        "certificate": str(files.certificate),
        "log": str(files.log),
        "audit_log": str(files.audit_log),
    }
