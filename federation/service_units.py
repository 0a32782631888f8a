"""systemd units for a hospital's node and for the coordinator, locked down.

``node_unit`` and ``coordinator_unit`` return the text of a ``.service`` file;
``sysusers_entry`` the ``sysusers.d`` line that makes the dedicated system user.
``workbench node service`` and ``workbench coordinator service`` write them.

What the units promise (each line of ``HARDENING`` is one systemd setting):

* a dedicated non-root system user, no capabilities, no privilege gain
  (``NoNewPrivileges``), no set-uid files, no realtime, no new namespaces;
* the whole file system read-only (``ProtectSystem=strict``), home folders hidden
  (``ProtectHome``), a private /tmp and /dev; the ONLY writable folder is the state
  folder (ledger, audit log, logs, Flower's home: ``FLWR_HOME`` points inside it,
  since Flower otherwise writes to ``~/.flwr``, which ``ProtectHome`` hides);
* the data folder and the key folder named read-only (the key is the node's only
  secret: mode 0600, owned by the service user);
* only IPv4, IPv6 and Unix sockets; the system calls of an ordinary service
  (``@system-service``) and none of the privileged ones;
* ``Restart=on-failure``: a crash restarts the node (the node itself waits until the
  coordinator takes back a crashed session).

Not set, on purpose: ``MemoryDenyWriteExecute`` (torch's oneDNN writes its CPU
kernels at run time), ``PrivateNetwork`` and ``IPAddressDeny`` (the node dials the
coordinator by name; a site that knows its coordinator's addresses can add
``IPAddressDeny=any`` and ``IPAddressAllow=localhost ADDRESSES`` in a drop-in).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from federation.processes import BIN_DIR, PROJECT_ROOT

NODE_USER = "workbench-node"
COORDINATOR_USER = "workbench-coordinator"
LOOPBACK_NO_PROXY = "127.0.0.1,localhost,::1"

HARDENING: tuple[str, ...] = (
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "DevicePolicy=closed",
    "PrivateUsers=yes",
    "PrivateIPC=yes",
    "PrivateMounts=yes",
    "ProtectHostname=yes",
    "ProtectClock=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectProc=invisible",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "RemoveIPC=yes",
    "KeyringMode=private",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources @mount @debug @cpu-emulation @obsolete @raw-io @reboot @swap",
    "SystemCallErrorNumber=EPERM",
    "UMask=0077",
)


@dataclass(frozen=True)
class UnitFiles:
    """What a ``service`` command writes: the unit and the sysusers.d line."""

    unit_name: str
    unit: str
    sysusers_name: str
    sysusers: str

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        unit, users = folder / self.unit_name, folder / self.sysusers_name
        unit.write_text(self.unit)
        users.write_text(self.sysusers)
        return unit, users


def _quote(path: Path | str) -> str:
    """A path as systemd reads it in a command line (quoted when it holds spaces)."""
    text = str(path)
    return shlex.quote(text) if any(c.isspace() for c in text) else text


def _paths(setting: str, paths: list[Path]) -> str:
    # "-" would ignore a missing path; a missing data or key folder must stop the start.
    return f"{setting}=" + " ".join(_quote(p) for p in dict.fromkeys(paths))


def _environment(values: dict[str, str]) -> list[str]:
    return [f'Environment="{key}={value}"' for key, value in values.items()]


def sysusers_entry(*, user: str, home: Path, description: str) -> str:
    """A sysusers.d(5) line: a system user and group of the same name, no login shell."""
    return f'u {user} - "{description}" {home} /usr/sbin/nologin\n'


def node_unit(
    *,
    config_path: Path,
    site_id: str,
    state_dir: Path,
    data_path: Path,
    key_path: Path,
    read_only: list[Path],
    user: str = NODE_USER,
    workbench: Path | None = None,
    proxy: str | None = None,
) -> UnitFiles:
    """The node's unit: ``workbench node start --config NODE_TOML`` in the foreground,
    as ``user``, with everything but ``state_dir`` read-only."""
    workbench = workbench or BIN_DIR / "workbench"
    state_dir = Path(state_dir)
    environment = {
        "FLWR_HOME": str(state_dir / "flwr-home"),
        "HOME": str(state_dir / "home"),
        "XDG_CACHE_HOME": str(state_dir / "cache"),
        "MPLCONFIGDIR": str(state_dir / "cache" / "matplotlib"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "NO_PROXY": LOOPBACK_NO_PROXY,
        "no_proxy": LOOPBACK_NO_PROXY,
        "PYTHONUNBUFFERED": "1",
    }
    if proxy:
        environment.update({"HTTPS_PROXY": proxy, "https_proxy": proxy})
    lines = [
        "[Unit]",
        f"Description=Hospital DP workbench node (site {site_id})",
        f"Documentation=file://{PROJECT_ROOT / 'federation' / 'site' / 'OPERATIONS.md'}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        f"ExecStart={_quote(workbench)} node start --config {_quote(config_path)}",
        # SIGTERM to the supervisor only: it stops the SuperNode (which tells the
        # coordinator it leaves) and the executor; what is left after the timeout is killed.
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=15",
        f"WorkingDirectory={_quote(state_dir)}",
        *_environment(environment),
        _paths("ReadWritePaths", [state_dir]),
        _paths("ReadOnlyPaths", [Path(data_path), Path(key_path).parent, *read_only]),
        *HARDENING,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    name = f"workbench-node-{site_id}"
    return UnitFiles(
        unit_name=f"{name}.service",
        unit="\n".join(lines),
        sysusers_name=f"{user}.conf",
        sysusers=sysusers_entry(user=user, home=state_dir, description="Hospital DP workbench node"),
    )


def coordinator_unit(
    *,
    folder: Path,
    tls_dir: Path,
    user: str = COORDINATOR_USER,
    workbench: Path | None = None,
) -> UnitFiles:
    """The coordinator's unit: ``workbench coordinator run`` starts the SuperLink and
    stays in the foreground; on SIGTERM it stops the SuperLink and the ServerApps it
    started."""
    workbench = workbench or BIN_DIR / "workbench"
    folder = Path(folder)
    environment = {
        "FLWR_HOME": str(folder / "flwr-home"),
        "HOME": str(folder / "home"),
        "XDG_CACHE_HOME": str(folder / "cache"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "NO_PROXY": LOOPBACK_NO_PROXY,
        "no_proxy": LOOPBACK_NO_PROXY,
    }
    lines = [
        "[Unit]",
        "Description=Hospital DP workbench coordinator (Flower SuperLink)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        f"ExecStart={_quote(workbench)} coordinator run --folder {_quote(folder)}",
        # SIGTERM to `coordinator run` only: it stops the SuperLink and its ServerApps.
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=10",
        f"WorkingDirectory={_quote(folder)}",
        *_environment(environment),
        _paths("ReadWritePaths", [folder]),
        _paths("ReadOnlyPaths", [Path(tls_dir)]),
        *HARDENING,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return UnitFiles(
        unit_name="workbench-coordinator.service",
        unit="\n".join(lines),
        sysusers_name=f"{user}.conf",
        sysusers=sysusers_entry(user=user, home=folder, description="Hospital DP workbench coordinator"),
    )


def systemd_verdict(unit: Path) -> tuple[bool, str, float | None] | None:
    """``systemd-analyze verify`` and ``security --offline=true`` of a written unit:
    (verified, what verify said, the exposure score); None where systemd-analyze is
    not installed. Offline, so it works where systemd is not PID 1 (containers, CI)."""
    import re
    import shutil
    import subprocess

    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    unit = Path(unit).resolve()
    verify = subprocess.run([tool, "verify", unit.name], cwd=unit.parent, capture_output=True, text=True, timeout=60)
    said = (verify.stdout + verify.stderr).strip()
    security = subprocess.run(
        [tool, "security", "--offline=true", unit.name], cwd=unit.parent, capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    return verify.returncode == 0 and not said, said, float(found.group(1)) if found else None
