"""Registering a site's node key with the coordinator's SuperLink.

With ``--enable-supernode-auth`` the SuperLink admits only registered public
keys; a node with any other key is refused at connection (Flower exit code 305).
Registration goes through Flower's own ``flwr supernode register``; the
coordinator folder also records which site each key belongs to (``nodes.json``),
because Flower keeps only the key and a numeric node id.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from federation.coordinator.superlink import CONNECTION as CONNECTION_NAME
from federation.coordinator.superlink import Coordinator, CoordinatorError, CoordinatorUnreachable
from privacy_budgets.board_pin import BoardPin

NAME_RULE = "letters, digits, '-', '_' or '.', e.g. 'hospital_01'"


@dataclass(frozen=True)
class RegisteredNode:
    name: str
    public_key: str
    node_id: str
    registered_at: str
    # The site's ledger public key (hex): every receipt of the site must verify under it
    # (reply_check.py). Empty for a site registered before receipts were checked.
    ledger_key: str = ""
    # Rotations accepted through a handover (key_rotation.py), oldest first: each its ledger
    # seq, old and new key, the board members who approved it and when it was accepted.
    key_rotations: list[dict] = field(default_factory=list)
    # The site's board pinned here (privacy_budgets/board_pin.py: ledger_id, since_seq, board),
    # with when it was pinned and who approved it (nobody: pinned at registration). A rotation
    # counts its quorum against this board only. Empty: registered without --board.
    board: dict = field(default_factory=dict)
    # Board changes followed through a handover, each approved by a quorum of the pinned board.
    board_changes: list[dict] = field(default_factory=list)

    @property
    def pinned_board(self) -> BoardPin | None:
        return BoardPin.from_json(self.board) if self.board else None


def check_public_key(path: Path) -> str:
    """The key's OpenSSH text, if it is a NIST P-384 EC key (what Flower 1.42 accepts)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no public key at {path}; the site makes its key pair with `workbench node init` and sends the .pub file."
        )
    text = path.read_text().strip()
    try:
        key = load_ssh_public_key(text.encode())
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not an OpenSSH public key ({err}); send the node's .pub file "
            "(one line starting with 'ecdsa-sha2-nistp384')."
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ValueError(
            f"{path} holds a {getattr(getattr(key, 'curve', None), 'name', type(key).__name__)} key; "
            "node keys must be ECDSA P-384 (ecdsa-sha2-nistp384). Make one with `workbench node init`."
        )
    return text


def registered_nodes(coordinator: Coordinator) -> dict[str, RegisteredNode]:
    if not coordinator.nodes_path.exists():
        return {}
    return {name: RegisteredNode(**d) for name, d in json.loads(coordinator.nodes_path.read_text()).items()}


def register_node(
    *, coordinator: Coordinator, public_key: Path, name: str, ledger_key: str = "", board: Path | None = None
) -> RegisteredNode:
    """Admit the node with ``public_key`` as site ``name`` (the SuperLink must run);
    ``ledger_key`` (hex) is the site's ledger public key its receipts must verify under;
    ``board`` the site's ``budget board --json`` file: its board is pinned (rotations count
    their quorum against it) and its ledger key is taken when ``ledger_key`` is not given."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"--name must be {NAME_RULE}; got {name!r}.")
    ledger_key = ledger_key.strip().lower()
    pin = None
    if board is not None:
        pin, listed_key = BoardPin.load_listing(board)
        if ledger_key and listed_key and listed_key != ledger_key:
            raise ValueError(
                f"--ledger-key {ledger_key[:12]}... is not the ledger key of the board file {board} "
                f"({listed_key[:12]}...): both come from the same `workbench budget board --ledger LEDGER --json`. "
                "Fix: give that file's key, or leave --ledger-key out."
            )
        ledger_key = ledger_key or listed_key
    if ledger_key and (len(ledger_key) != 64 or any(c not in "0123456789abcdef" for c in ledger_key)):
        raise ValueError(
            f"--ledger-key must be the site's ledger public key, 64 hex characters (the site's IT reads it with "
            f"`workbench budget board --ledger LEDGER`); got {ledger_key[:70]!r}."
        )
    text = check_public_key(Path(public_key))
    nodes = registered_nodes(coordinator)
    if name in nodes:
        same = nodes[name].public_key.split()[:2] == text.split()[:2]
        raise CoordinatorError(
            f"site {name!r} is already registered (node id {nodes[name].node_id})"
            + (" with this key." if same else " with ANOTHER key; unregister it first if the site changed its key.")
        )
    if coordinator.running_pid() is None:
        raise CoordinatorUnreachable(
            f"the SuperLink of {coordinator.folder} is not running; start it with "
            f"`workbench coordinator start --folder {coordinator.folder}`, then register the site."
        )
    answer = coordinator.flwr("supernode", "register", str(Path(public_key).resolve()), "coordinator", "--name", name)
    node = RegisteredNode(
        name=name,
        public_key=text,
        node_id=str(answer.get("node-id", "")),
        registered_at=_now(),
        ledger_key=ledger_key,
        board={} if pin is None else {**pin.to_json(), "pinned_at": _now(), "approved_by": []},
    )
    nodes[name] = node
    save_nodes(coordinator, nodes)
    return node


def save_nodes(coordinator: Coordinator, nodes: dict[str, RegisteredNode]) -> None:
    """Write nodes.json whole (a temporary file, then a rename: never half-written)."""
    tmp = coordinator.nodes_path.with_name(f".{coordinator.nodes_path.name}.tmp")
    tmp.write_text(json.dumps({k: asdict(v) for k, v in nodes.items()}, indent=2))
    tmp.replace(coordinator.nodes_path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def with_ledger_key(
    node: RegisteredNode,
    *,
    ledger_key: str,
    rotations: list[dict],
    board: BoardPin | None = None,
    board_changes: list[dict] | None = None,
) -> RegisteredNode:
    """``node`` now verified under ``ledger_key``, with the rotations that led there recorded;
    ``board`` the pinned board after the ``board_changes`` followed (each with its signers)."""
    changes = board_changes or []
    pinned = node.board
    if board is not None and changes:
        pinned = {**board.to_json(), "pinned_at": _now(), "approved_by": changes[-1]["signers"]}
    return replace(
        node,
        ledger_key=ledger_key,
        key_rotations=[*node.key_rotations, *rotations],
        board=pinned,
        board_changes=[*node.board_changes, *changes],
    )


def site_names(coordinator: Coordinator) -> dict[int, str]:
    """Flower node id -> site id, from the registry (Flower knows nodes by number only)."""
    out = {}
    for node in registered_nodes(coordinator).values():
        try:
            out[int(node.node_id)] = node.name
        except ValueError:
            continue
    return out


def unpinned_sites(coordinator: Coordinator) -> list[str]:
    """Sites registered without a pinned board: their rotations count the board the handover states."""
    return sorted(name for name, node in registered_nodes(coordinator).items() if not node.board)


def ledger_keys(coordinator: Coordinator) -> dict[str, str]:
    """Site id -> its registered ledger public key (hex; "" when registered without one)."""
    return {name: node.ledger_key for name, node in registered_nodes(coordinator).items()}


def node_statuses(coordinator: Coordinator) -> dict[str, dict[str, str]]:
    """Per registered site, what the SuperLink says of its node now: status ("online",
    "offline", "registered": never connected) and since when. Raises CoordinatorError when
    the SuperLink does not answer."""
    answer = coordinator.flwr("supernode", "ls", CONNECTION_NAME)
    names = site_names(coordinator)
    out: dict[str, dict[str, str]] = {}
    for node in answer.get("nodes", []):
        try:
            name = names.get(int(node.get("node-id", "")), f"node {node.get('node-id')}")
        except ValueError:
            continue
        out[name] = {
            "status": str(node.get("status", "")),
            "online_at": str(node.get("online-at", "")),
            "offline_at": str(node.get("offline-at", "")),
        }
    return out


def unregister_node(*, coordinator: Coordinator, name: str) -> RegisteredNode:
    """Remove site ``name``: the SuperLink forgets its node key (a node with that key is
    refused from now on) and the registry forgets the site. For a site that leaves, and
    for a site's new key (unregister, then register the new public key)."""
    nodes = registered_nodes(coordinator)
    if name not in nodes:
        raise CoordinatorError(
            f"site {name!r} is not registered; the registered sites are {', '.join(sorted(nodes)) or 'none'}."
        )
    if coordinator.running_pid() is None:
        raise CoordinatorUnreachable(
            f"the SuperLink of {coordinator.folder} is not running; start it with "
            f"`workbench coordinator start --folder {coordinator.folder}`, then unregister the site."
        )
    node = nodes.pop(name)
    coordinator.flwr("supernode", "unregister", node.node_id, "coordinator")
    save_nodes(coordinator, nodes)
    return node
