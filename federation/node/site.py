"""Where a site's data and state live, from Flower's node config or a simulation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Keys of the node config (``flower-supernode --node-config``) that locate a site.
SITE_ID_KEY = "site-id"
DATA_PATH_KEY = "data-path"
STATE_DIR_KEY = "state-dir"
DICTIONARY_PATH_KEY = "dictionary-path"
DATASET_KEY = "dataset"
PARTITION_ID_KEY = "partition-id"


@dataclass(frozen=True)
class SiteConfig:
    """One site: its data file, its data dictionary and its state folder.

    Everything the site keeps (ledger, signing key, plans, cache) lives under
    ``state_dir``; the data file is only read.
    """

    site_id: str
    data_path: Path
    state_dir: Path
    dictionary_path: Path
    dataset: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_path", Path(self.data_path))
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        object.__setattr__(self, "dictionary_path", Path(self.dictionary_path))
        if not self.dataset:
            object.__setattr__(self, "dataset", self.data_path.stem)

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.sqlite"

    @property
    def plans_dir(self) -> Path:
        return self.state_dir / "plans"

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteConfig:
        return cls(**data)

    @classmethod
    def from_node_config(cls, node_config: dict[str, Any]) -> SiteConfig:
        """Deployment: the node's own settings, as hospital IT wrote them."""
        missing = [k for k in (SITE_ID_KEY, DATA_PATH_KEY, STATE_DIR_KEY) if k not in node_config]
        if missing:
            raise KeyError(
                f"the node config lacks {', '.join(missing)}; start the node with "
                "`workbench node start --config node.toml`, which passes them."
            )
        data_path = Path(str(node_config[DATA_PATH_KEY]))
        dictionary = node_config.get(DICTIONARY_PATH_KEY) or data_path.parent / "data_dictionary.json"
        return cls(
            site_id=str(node_config[SITE_ID_KEY]),
            data_path=data_path,
            state_dir=Path(str(node_config[STATE_DIR_KEY])),
            dictionary_path=Path(str(dictionary)),
            dataset=str(node_config.get(DATASET_KEY, "")),
        )


@dataclass(frozen=True)
class SimulatedSites:
    """Simulation: Flower numbers its virtual nodes by partition id; this maps them
    to sites in a fixed order."""

    sites: tuple[SiteConfig, ...]

    def __call__(self, node_config: dict[str, Any]) -> SiteConfig:
        return self.sites[int(node_config[PARTITION_ID_KEY])]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps([s.to_json() for s in self.sites], indent=2))

    @classmethod
    def load(cls, path: Path) -> SimulatedSites:
        return cls(tuple(SiteConfig.from_json(d) for d in json.loads(path.read_text())))


def resolve_from_node_config(node_config: dict[str, Any]) -> SiteConfig:
    """The deployment resolver (module level so Flower can load it by name)."""
    return SiteConfig.from_node_config(node_config)
