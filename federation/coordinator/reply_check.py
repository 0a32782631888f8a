"""The coordinator checks what it relays: who answered, and the receipts they sent.

Flower authenticates each node by its registered key and gives the coordinator the
node's number (``src_node_id``); the reply's ``site-id`` is only what the node claims.
With the registry (nodes.json: node id -> site, and the site's ledger public key):

- a reply from a node that is not registered, or that claims another site's id, is
  refused: it neither counts in the aggregate (so a rogue node cannot pose as a
  hospital and dominate FedAvg with a huge ``num-examples``) nor brings receipts;
- every receipt must name the registered site and verify under that site's
  registered ledger key (the key inside the receipt proves nothing: a forger signs
  with its own); one forged receipt refuses the whole reply. After a site rotates its
  key, the new one is registered only from a handover that chains from the registered
  one (key_rotation.py, ``workbench coordinator accept-ledger-key``), never from a
  reply; the old key is refused from then on.

Without a registry (the simulation: the coordinator runs beside its own sites) each
receipt must still name the replying site and verify under the key it carries.

A refused reply becomes a ``failed`` SiteReply naming the node and the rule, so the
study stops with that reason, and nothing of it enters the mirror or a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from flwr.app import Message

from federation.coordinator.events import SiteReply
from federation.errors import InternalFault
from privacy_budgets.receipts import SpendReceipt

REFUSED = "refused by the coordinator"
REFUSED_CODE = 0  # flwr's ErrorCode.UNKNOWN, as for "no reply": Flower has no code for a refused reply


@dataclass(frozen=True)
class SiteRegistry:
    """Flower node id -> registered site id, and site id -> its ledger's public key (hex).

    ``names`` empty means no registry (the simulation)."""

    names: dict[int, str] = field(default_factory=dict)
    ledger_keys: dict[str, str] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return bool(self.names)

    def check(self, msg: Message, reply: SiteReply) -> SiteReply:
        """``reply`` if it passes every rule, else a failed reply that says which rule broke."""
        problem = self.problem(msg, reply)
        if problem is None:
            return reply
        node = int(msg.metadata.src_node_id)
        return _refuse(reply, site=self.names.get(node, f"node {node}"), why=problem)

    def problem(self, msg: Message, reply: SiteReply | None = None) -> str | None:
        """Which rule ``msg`` (a site's reply) breaks, in words; None when it keeps them all."""
        if msg.has_error():
            return None  # no answer, no receipts: nothing to verify
        node = int(msg.metadata.src_node_id)
        if reply is None:
            try:
                reply = SiteReply.from_message(msg, node_names=self.names)
            except Exception as err:  # a reply that cannot be read is the sender's fault, not a crash here
                return f"the reply of node {node} cannot be read ({type(err).__name__}: {err})"
        registered = self.names.get(node)
        if self.known and registered is None:
            return (
                f"a reply came from node {node}, which is not registered with this coordinator; its answer "
                "and receipts were dropped. Fix: register each site's node key with `workbench coordinator "
                "register-node`, and only those."
            )
        if registered is not None and reply.site_id != registered:
            return (
                f"node {node} is registered as site {registered}, but its reply claims to be site "
                f"{reply.site_id!r}; the reply and its receipts were dropped. Fix: site {registered}'s IT "
                "checks the node.toml's [site] id and that no one else holds its node key."
            )
        site = registered or reply.site_id
        expected_key = self.ledger_keys.get(site) or None
        for item in reply.receipts:
            problem = _receipt_problem(item, site=site, expected_key=expected_key)
            if problem is not None:
                return (
                    f"a receipt in site {site}'s reply (node {node}) {problem}; the reply and its receipts "
                    "were dropped, so nothing of it enters the mirror or the result. Fix: site "
                    f"{site}'s IT compares its ledger key (`workbench budget board`) with the one "
                    "registered at the coordinator; if the site rotated its key, its IT sends the handover "
                    "(`workbench budget handover`) and the coordinator's operator runs `workbench coordinator "
                    f"accept-ledger-key --name {site} HANDOVER` (a new key is accepted only through that chain)."
                )
        return None


def _receipt_problem(item: Any, *, site: str, expected_key: str | None) -> str | None:
    try:
        receipt = SpendReceipt.from_dict(item)
    except Exception as err:  # a receipt that cannot be read is no receipt
        return f"cannot be read as a signed receipt ({type(err).__name__})"
    if receipt.site_id != site:
        return f"names site {receipt.site_id!r}, not {site}"
    if expected_key is not None and receipt.public_key != expected_key:
        return "is signed with a key other than the site's registered ledger key"
    try:
        ok = receipt.verifies(public_key=expected_key)
    except Exception:
        ok = False
    if not ok:
        return f"(ledger entry {receipt.seq}) does not verify under the site's ledger key (forged or altered)"
    return None


def _refuse(reply: SiteReply, *, site: str, why: str) -> SiteReply:
    return replace(
        reply,
        site_id=site,
        status="failed",
        kind=InternalFault.kind,
        reason=f"{REFUSED}: {why}",
        metrics={},
        info={},
        receipts=(),
    )


def checked(msg: Message, *, node_names: dict[int, str], registry: SiteRegistry | None) -> SiteReply:
    """``SiteReply.from_message`` followed by the registry's check (receipts only, without one)."""
    try:
        reply = SiteReply.from_message(msg, node_names=node_names)
    except Exception as err:  # a reply that cannot be read is the sender's fault, not a crash here
        node = int(msg.metadata.src_node_id)
        return SiteReply(
            site_id=node_names.get(node, f"node {node}"),
            status="failed",
            kind=InternalFault.kind,
            reason=f"{REFUSED}: the reply of node {node} cannot be read ({type(err).__name__}: {err}).",
        )
    return (registry or SiteRegistry()).check(msg, reply)
