"""The notebook workbench: simulate or connect to hospitals, plan, train, query, budget.

``Workbench`` is imported on first use, so that the ``workbench`` console script's
commands that need neither torch nor Flower (``workbench budget``, ``workbench node``)
start without loading them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.session import Workbench

__all__ = ["Workbench"]


def __getattr__(name: str) -> Any:
    if name == "Workbench":
        from workbench.session import Workbench

        return Workbench
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
