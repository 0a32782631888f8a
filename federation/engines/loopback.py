"""A whole federation on one machine: a coordinator and N hospital nodes on loopback.

Real processes with real TLS and node authentication, laid out as the real thing
would be: a coordinator folder, and per site a node folder with its node.toml, the
coordinator's CA, its key pair and its state folder. Used by the tests, the
deployment benchmark and anyone who wants to try the Deployment Engine locally.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.coordinator.registry import register_node
from federation.coordinator.superlink import Coordinator
from federation.data.loader import load_sites
from federation.processes import ProcessHandle, free_port
from federation.site.ledger_keys import open_site_ledger
from federation.site.supernode import NodeHandle, start_node
from privacy_budgets import Ledger

SITE_IT = "site IT (loopback)"
ETHICS_BOARD = "ethics board (loopback)"
RESEARCHER = "Researcher (loopback)"


@dataclass
class LoopbackFederation:
    root: Path
    coordinator: Coordinator
    node_tomls: dict[str, Path]
    dictionary_path: Path
    superlink: ProcessHandle | None = None
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    heartbeat_seconds: float | None = None  # the nodes' heartbeat (None: Flower's 30 s)

    @property
    def researcher_key(self) -> Path:
        """The loopback researcher's private key (unencrypted, mode 0600): its requests are
        signed with it, and ``allocate`` has each site approve it for the project."""
        return self.root / "researcher" / "id_ed25519"

    def node_config(self, site: str):
        from federation.site.config import load_node_config

        return load_node_config(self.node_tomls[site])

    @property
    def sites(self) -> list[str]:
        return sorted(self.node_tomls)

    def start_coordinator(self) -> None:
        self.superlink = self.coordinator.start()

    def register(self, site: str) -> None:
        config = self.node_config(site)
        with self.ledger(site) as ledger:
            ledger_key = ledger.public_key  # what the site's IT reads with `workbench budget board`
        register_node(coordinator=self.coordinator, public_key=config.node_public_key, name=site, ledger_key=ledger_key)

    def start_site(
        self, site: str, *, poll_seconds: float | None = None, heartbeat_seconds: float | None = None
    ) -> NodeHandle:
        handle = start_node(
            config=self.node_config(site),
            poll_seconds=poll_seconds,
            heartbeat_seconds=heartbeat_seconds or self.heartbeat_seconds,
        )
        self.nodes[site] = handle
        return handle

    def start(self, *, poll_seconds: float | None = None) -> None:
        """Coordinator, registration of every site, then every node."""
        self.start_coordinator()
        for site in self.sites:
            self.register(site)
        for site in self.sites:
            self.start_site(site, poll_seconds=poll_seconds)

    def stop_site(self, site: str) -> None:
        handle = self.nodes.pop(site, None)
        if handle is not None:
            handle.stop()

    def stop(self) -> None:
        """Every node, then the SuperLink, each by its PID."""
        for site in list(self.nodes):
            self.stop_site(site)
        self.coordinator.stop()

    def ledger(self, site: str) -> Ledger:
        config = self.node_config(site)
        return open_site_ledger(config.site_config())

    def allocate(self, *, project: str, epsilon: float, approve: bool = True) -> None:
        """What each site's ethics board does before a study: grant the project budget,
        and (``approve``) approve the loopback researcher's key for it."""
        from privacy_budgets.signatures import SshPublicKey

        key = SshPublicKey.load(f"{self.researcher_key}.pub").openssh(comment=False)
        for site in self.sites:
            config = self.node_config(site)
            with self.ledger(site) as ledger:
                ledger.allocate(
                    dataset=config.dataset,
                    project=project,
                    epsilon=epsilon,
                    actor=ETHICS_BOARD,
                    reason=f"allocation for study {project}",
                )
                if approve:
                    ledger.approve(
                        dataset=config.dataset,
                        project=project,
                        purpose=f"study {project}",
                        researchers=[{"name": RESEARCHER, "key": key}],
                        actor=ETHICS_BOARD,
                        reason=f"approve {RESEARCHER} for study {project}",
                    )


def build_loopback_federation(
    *, root: Path, sites: int = 3, rows: int = 400, seed: int = 7, site_cap: float = 10.0, delta: float = 1e-5
) -> LoopbackFederation:
    """Folders, certificates, keys, node.toml files and ledgers (caps set); nothing started."""
    from federation.site.config import load_node_config, write_node_template
    from federation.site.keys import generate_node_keys

    root = Path(root).resolve()
    data = root / "data"
    write_hospitals(generate_hospitals(sites=sites, rows=rows, seed=seed), out=data)
    dictionary_path = data / "data_dictionary.json"
    coordinator = Coordinator.init(folder=root / "coordinator", address=f"127.0.0.1:{free_port()}")
    from privacy_budgets.signatures import generate_key_pair

    generate_key_pair(path=root / "researcher" / "id_ed25519", passphrase=None, comment=RESEARCHER)
    tomls: dict[str, Path] = {}
    for site_id, loaded in sorted(load_sites(folder=data).items()):
        folder = root / "sites" / site_id
        folder.mkdir(parents=True)
        shutil.copy(coordinator.tls.ca_certificate, folder / "ca.crt")  # what hospital IT receives
        generate_node_keys(private_key=folder / "keys" / "node_key", comment=site_id)
        write_node_template(
            path=folder / "node.toml",
            site_id=site_id,
            data_path=loaded.path,
            state_dir=folder / "state",
            dictionary_path=dictionary_path,
            dataset=site_id,
            coordinator_address=coordinator.address,
            ca_certificate=folder / "ca.crt",
            node_private_key=folder / "keys" / "node_key",
            clientappio_address=f"127.0.0.1:{free_port()}",
            metrics_address=f"127.0.0.1:{free_port()}",
            require_signed_requests=True,
        )
        tomls[site_id] = folder / "node.toml"
        (folder / "state").mkdir(exist_ok=True)
        with open_site_ledger(load_node_config(folder / "node.toml").site_config()) as ledger:
            ledger.set_cap(
                dataset=site_id,
                epsilon=site_cap,
                delta=delta,
                actor=SITE_IT,
                reason="lifetime cap of a loopback hospital",
            )
    return LoopbackFederation(root=root, coordinator=coordinator, node_tomls=tomls, dictionary_path=dictionary_path)
