"""A site-held privacy budget ledger for hospital data.

Mechanisms (dp_accounting DpEvents) -> accountant (PLD) -> ledger (hash-chained,
signed, SQLite) -> statements, reports and reconciliation. No torch, no Flower: an
ethics board installs and verifies this package alone.

Names are loaded on first use, so ``import privacy_budgets`` (and the CLI) stays light.

>>> import privacy_budgets
>>> privacy_budgets.Ledger.__name__
'Ledger'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Ledger": "privacy_budgets.ledger",
    "BudgetExceeded": "privacy_budgets.errors",
    "BudgetRefused": "privacy_budgets.errors",
    "AccountingFault": "privacy_budgets.errors",
    "ProjectBudgetSpent": "privacy_budgets.errors",
    "NoNoiseFits": "privacy_budgets.errors",
    "LedgerError": "privacy_budgets.errors",
    "LedgerIntegrityError": "privacy_budgets.errors",
    "InvalidBudget": "privacy_budgets.errors",
    "InvalidMechanism": "privacy_budgets.errors",
    "PrivacyBudgetError": "privacy_budgets.errors",
    "AuthorityError": "privacy_budgets.authority",
    "Board": "privacy_budgets.board",
    "SignedProposal": "privacy_budgets.proposals",
    "SimulatedBoard": "privacy_budgets.simulated_board",
    "Reservation": "privacy_budgets.records",
    "CostEstimate": "privacy_budgets.records",
    "LedgerEntry": "privacy_budgets.entries",
    "SpendReceipt": "privacy_budgets.receipts",
    "VerificationReport": "privacy_budgets.verification",
    "reconcile": "privacy_budgets.reconciliation",
    "plan_dpsgd": "privacy_budgets.planning",
    "calibrate": "privacy_budgets.planning",
    "build_report": "privacy_budgets.report",
    "statement": "privacy_budgets.statements",
    "dpsgd_event": "privacy_budgets.mechanisms",
    "gaussian_event": "privacy_budgets.mechanisms",
    "laplace_event": "privacy_budgets.mechanisms",
    "composed_event": "privacy_budgets.mechanisms",
    "discrete_gaussian_event": "privacy_budgets.mechanisms",
    "discrete_laplace_event": "privacy_budgets.mechanisms",
    "NEIGHBOURING_RELATION": "privacy_budgets.mechanisms",
    "epsilon": "privacy_budgets.accounting",
    "calibrate_dpsgd_noise": "privacy_budgets.accounting",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'privacy_budgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
