"""What a node's processes are doing, told from the processes themselves.

A running node is three processes (supernode.py): its supervisor (``workbench node
start``, or ``python -m federation.site.supernode`` when detached), ``flower-supernode``
and the site executor. ``node_processes`` finds them in ``/proc`` by what they run
(their command line names the node's node.toml, or its Runtime address), not by a
file that a crash may leave behind; the supervisor's runtime file
(``state/node-runtime/pids.json``) adds only what no process shows: whether the
SuperLink admitted the node, and, while it refuses a restarted node, until when.

``NodeRuntime.state`` is one of:

- ``stopped``: no process of this node runs;
- ``crashed``: the supervisor is gone but it did not stop cleanly (its runtime file is
  still there), or a SuperNode or executor of this node is left without it;
- ``starting``: the supervisor runs, the SuperLink has not admitted the node yet;
- ``waiting``: the SuperLink refuses the node for now (a restarted node whose previous
  session it still holds online), with until when;
- ``connected``: the supervisor, the SuperNode and the executor run and the SuperLink
  admitted the node.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.processes import pid_alive

SUPERVISOR_MODULE = "federation.site.supernode"
SUPERNODE_MODULE = "federation.site.supernode_process"
EXECUTOR_MODULE = "federation.site.site_executor"


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _names_path(pid: int, argv: list[str], path: Path) -> bool:
    """Whether ``argv`` names ``path`` (as an argument, or inside one: a node config)."""
    target = str(path)
    cwd = _cwd(pid)
    for arg in argv:
        if arg == target or f"'{target}'" in arg or f'"{target}"' in arg:
            return True
        if arg.endswith(".toml") and cwd is not None:
            try:
                if (cwd / arg).resolve() == path:
                    return True
            except OSError:
                continue
    return False


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _is_supervisor(argv: list[str]) -> bool:
    joined = " ".join(argv)
    return (SUPERVISOR_MODULE in argv and "--config" in argv) or (
        "node" in argv and "start" in argv and "--config" in argv and "workbench" in joined
    )


@dataclass(frozen=True)
class NodeRuntime:
    """The node's processes and its state, as found now."""

    state: str
    supervisor: int | None = None
    supernode: int | None = None
    executor: int | None = None
    detail: str = ""
    record: dict[str, Any] | None = None  # the supervisor's runtime file, if any

    @property
    def running(self) -> bool:
        return self.state in ("starting", "waiting", "connected")

    @property
    def leftovers(self) -> list[int]:
        return [p for p in (self.supernode, self.executor) if p is not None]

    def describe(self) -> str:
        pids = ", ".join(
            f"{name} PID {pid}"
            for name, pid in (("node", self.supervisor), ("supernode", self.supernode), ("executor", self.executor))
            if pid is not None
        )
        text = self.state + (f" ({pids})" if pids else "")
        return f"{text}: {self.detail}" if self.detail else text


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def node_processes(*, config_path: Path, runtime_address: str, record_path: Path) -> NodeRuntime:
    """The node of ``config_path`` (its node.toml, resolved), told from /proc."""
    config_path = Path(config_path).resolve()
    record = read_record(record_path)
    supervisor = supernode = executor = None
    candidates = list(_all_pids())
    if record and isinstance(record.get("supervisor"), int):
        candidates.insert(0, record["supervisor"])
    for pid in candidates:
        if pid in (os.getpid(), os.getppid()) or not pid_alive(pid):  # this command, and what started it
            continue
        argv = _argv(pid)
        if not argv:
            continue
        if supervisor is None and _is_supervisor(argv) and _names_path(pid, argv, config_path):
            supervisor = pid
        elif supernode is None and SUPERNODE_MODULE in argv and _names_path(pid, argv, config_path):
            supernode = pid
        elif (
            executor is None
            and EXECUTOR_MODULE in argv
            and "--runtime-api-address" in argv
            and argv[argv.index("--runtime-api-address") + 1 : argv.index("--runtime-api-address") + 2]
            == [runtime_address]
        ):
            executor = pid
    found = {"supervisor": supervisor, "supernode": supernode, "executor": executor, "record": record}
    if supervisor is None:
        if supernode is not None or executor is not None:
            return NodeRuntime(
                state="crashed",
                detail="its supervisor is gone but it left processes running; `workbench node stop` stops them",
                **found,
            )
        if record is not None:
            when = record.get("alive_at")
            seen = f" (last seen alive {time.strftime('%H:%M:%S', time.localtime(when))})" if when else ""
            return NodeRuntime(state="crashed", detail=f"it stopped without shutting down{seen}", **found)
        return NodeRuntime(state="stopped", **found)
    if record is None or record.get("supervisor") != supervisor:
        return NodeRuntime(state="starting", detail="its processes are starting", **found)
    if record.get("state") == "waiting":
        left = float(record.get("retry_until", 0)) - time.time()
        return NodeRuntime(
            state="waiting",
            detail=(
                "the coordinator refuses it for now (it still holds the node's previous session online); "
                f"retrying for about {max(left, 0):.0f} s more"
            ),
            **found,
        )
    if record.get("connected") and supernode is not None and executor is not None:
        return NodeRuntime(state="connected", detail="the coordinator admitted it; it serves tasks", **found)
    if record.get("connected") and supernode is not None:
        return NodeRuntime(state="starting", detail="the site executor is (re)starting", **found)
    return NodeRuntime(state="starting", detail="waiting for the coordinator to admit it", **found)
