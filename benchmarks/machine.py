"""The machine and versions behind a set of figures, for every RESULTS.md."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("torch", "flwr", "opacus", "dp-accounting", "numpy", "ray")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """CPU, cores usable by this process, RAM, load average now, OS and versions."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "CPU": _cpu_model(),
        "cores": str(cores),
        "RAM": _memory_gib(),
        "load average (1, 5, 15 min)": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
    }
    info.update({name: _version(name) for name in PACKAGES})
    return info


def machine_lines(*, title: str = "Machine") -> list[str]:
    """A markdown section stating the machine, stamped with the time."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [f"## {title}", "", f"- measured: {stamp}", *[f"- {k}: {v}" for k, v in machine().items()], ""]
