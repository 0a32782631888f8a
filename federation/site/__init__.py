"""The site's room: a hospital's node beside its data.

Its config (``node.toml``), the policy gate, the task handlers (train, evaluate,
queries, range finding) and the one charged path to the site's ledger, the audit log
and alerts, the kill switch, keys and preflight checks, the Flower ClientApp, and the
processes a hospital runs (``flower-supernode`` and the long-lived site executor);
``workbench node ...``. Never imports ``federation.coordinator``.
"""
