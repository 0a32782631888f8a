"""Federated analytics with differential privacy and disclosure control.

A query (``query.Query``) travels to every site as JSON. Each site computes the
exact statistics it needs (``cells``), charges the mechanism to its own ledger
(``noise``), adds the noise itself, suppresses small groups (``disclosure``,
``release``), keeps the released answer for free replays (``cache``) and replies
(federation/site/query_answers.py). The coordinator pools the noisy answers and states their
standard errors and intervals from the known noise (``estimates``).
"""
