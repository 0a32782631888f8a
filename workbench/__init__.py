"""The notebook workbench: simulate or connect to hospitals, plan, train, query, budget."""

from workbench.session import Workbench

__all__ = ["Workbench"]
