"""The package stands alone: no torch, no Flower, no sibling packages; docs that run."""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import privacy_budgets

ROOT = Path(__file__).parents[2]
MODULES = sorted(
    name
    for _, name, _ in pkgutil.iter_modules(privacy_budgets.__path__, "privacy_budgets.")
    if name != "privacy_budgets.__main__"  # running it would start the CLI
)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_importing_everything_pulls_in_neither_torch_nor_flower():
    code = (
        "import sys, importlib, privacy_budgets\n"
        "from privacy_budgets import *\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "banned = {'torch', 'flwr', 'opacus', 'workbench', 'federation', 'datasets_synthetic'}\n"
        "print(sorted(banned & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_module_imports_light():
    code = (
        "import sys, privacy_budgets.cli\n"
        "print(sorted({'pandas', 'matplotlib', 'dp_accounting', 'numpy'} & set(sys.modules)))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "privacy_budgets", "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in ("status", "history", "verify", "set-cap", "allocate", "checkpoint", "report", "reconcile"):
        assert command in result.stdout


def test_public_names():
    for name in (
        "Ledger",
        "BudgetExceeded",
        "LedgerError",
        "LedgerIntegrityError",
        "InvalidBudget",
        "InvalidMechanism",
        "Reservation",
        "LedgerEntry",
        "SpendReceipt",
        "VerificationReport",
        "CostEstimate",
        "reconcile",
        "plan_dpsgd",
        "build_report",
        "statement",
        "dpsgd_event",
        "gaussian_event",
        "laplace_event",
        "epsilon",
        "calibrate_dpsgd_noise",
    ):
        assert callable(getattr(privacy_budgets, name)), name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        privacy_budgets.Nope  # noqa: B018


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
