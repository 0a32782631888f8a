"""Shared fixtures: the repository root and the installed console script."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Sites have no internet: no telemetry, no update checks, in any process a test starts.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("WORKBENCH_PROGRESS", "0")


@pytest.fixture(scope="session")
def workbench_cli() -> list[str]:
    """The real console script of this environment (as a newcomer runs it)."""
    script = Path(sys.executable).with_name("workbench")
    assert script.exists(), f"{script} is missing: install the project (make venv)"
    return [str(script)]


# The longest file (every notebook, three passes, on real kernels) goes first: `make test`
# runs two workers, one file each at a time, and the longest file started last would run alone.
LONGEST_FIRST = ("test_notebooks.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: each file keeps its order
