"""privacy_budgets package."""
