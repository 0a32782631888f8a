"""A site's new ledger key, accepted by the coordinator only through the chain of its rotation.

The coordinator verifies every receipt under the ledger key it registered for the site
(``register-node --ledger-key``; reply_check.py). When a site rotates that key (its
board's quorum approves, the old key signs the new one: ``workbench budget rotate-key``),
its receipts are refused here until the operator runs::

    workbench coordinator accept-ledger-key --name hospital_01 handover.json

with the handover file the site's IT wrote (``workbench budget handover``). The new key
is taken only if the file chains from the registered key (privacy_budgets/handover.py:
the rotation entry signed by the registered key, the new key's proof of holding it, a
proposal for this rotation signed by the board's quorum: the board pinned at registration,
``register-node --board``, or a change a quorum of it approved, which is then pinned in
its place). Nothing arrives automatically
with a reply: a reply that carries a key is what a forger would send. The old key is
refused from then on; nodes.json keeps each rotation accepted and who approved it.

A handover that does not chain (another key signed it, no quorum, a board-less rotation,
an altered entry) changes nothing and says which rule broke.
"""

from __future__ import annotations

import time
from pathlib import Path

from federation.coordinator.registry import RegisteredNode, registered_nodes, save_nodes, with_ledger_key
from federation.coordinator.superlink import Coordinator, CoordinatorError
from privacy_budgets.handover import Accepted, follow_handover, load_handover


def accept_ledger_key(*, coordinator: Coordinator, name: str, handover: Path) -> tuple[RegisteredNode, Accepted]:
    """Register site ``name``'s new ledger key from ``handover`` (see the module docstring).

    Raises CoordinatorError (an unknown site, a site registered without a ledger key) or
    privacy_budgets.handover.HandoverRefused (the file does not chain); nothing changes then.
    """
    nodes = registered_nodes(coordinator)
    if name not in nodes:
        raise CoordinatorError(
            f"site {name!r} is not registered; the registered sites are {', '.join(sorted(nodes)) or 'none'}."
        )
    node = nodes[name]
    if not node.ledger_key:
        raise CoordinatorError(
            f"site {name!r} was registered without a ledger key, so there is no key for a rotation to chain from. "
            "Fix: check the site's current ledger key with its IT (`workbench budget board --ledger LEDGER`), then "
            f"`workbench coordinator unregister-node --name {name}` and register it again with --ledger-key."
        )
    accepted = follow_handover(
        load_handover(handover), site_id=name, registered_key=node.ledger_key, pinned=node.pinned_board
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    where = str(Path(handover).resolve())
    steps = [{**step.to_json(), "accepted_at": now, "handover": where} for step in accepted.steps]
    changes = [{**change.to_json(), "accepted_at": now, "handover": where} for change in accepted.board_changes]
    updated = with_ledger_key(
        node, ledger_key=accepted.new_key, rotations=steps, board=accepted.pinned, board_changes=changes
    )
    nodes[name] = updated
    save_nodes(coordinator, nodes)
    return updated, accepted
