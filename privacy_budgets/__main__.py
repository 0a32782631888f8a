"""``python -m privacy_budgets ...``: the ledger's commands without the workbench."""

from privacy_budgets.cli import main

main()
