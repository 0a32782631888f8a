"""The three channels of trouble: a user's mistake, a refusal, a broken promise.

Each message states the rule, then the bad value, then the fix.
"""

from __future__ import annotations


class PrivacyBudgetError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidMechanism(PrivacyBudgetError, ValueError):
    """A mechanism (DpEvent) that the ledger cannot account for."""


class InvalidBudget(PrivacyBudgetError, ValueError):
    """An epsilon, delta, cap or allocation outside its allowed range."""
