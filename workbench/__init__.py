"""The notebook workbench: simulate or connect to hospitals, plan, train, query, budget.

``Workbench`` is imported on first use, so that the ``workbench`` console script's
commands that need neither torch nor Flower (``workbench budget``, ``workbench node``)
start without loading them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.session import Workbench

__all__ = ["Workbench", "fresh_workdir"]


def __getattr__(name: str) -> Any:
    if name == "Workbench":
        from workbench.session import Workbench

        return Workbench
    if name == "fresh_workdir":
        from workbench.workdirs import fresh_workdir

        return fresh_workdir
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
