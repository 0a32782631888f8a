"""Where a site's data and state live, from Flower's node config or a simulation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from federation.analytics.limits import AnalyticsLimits

# Keys of the node config (``flower-supernode --node-config``) that locate a site.
SITE_ID_KEY = "site-id"
DATA_PATH_KEY = "data-path"
STATE_DIR_KEY = "state-dir"
DICTIONARY_PATH_KEY = "dictionary-path"
DATASET_KEY = "dataset"
PARTITION_ID_KEY = "partition-id"
# Disclosure control of analytics (see federation/analytics/disclosure.py); a site
# policy may fill the same SiteConfig fields.
MIN_CELL_SIZE_KEY = "min-cell-size"
TRUE_COUNT_FLOOR_KEY = "true-count-floor"
# The key folder holding the ledger's signing key (never the state folder).
KEY_DIR_KEY = "key-dir"
LEDGER_KEY_FILE = "ledger.key"


@dataclass(frozen=True)
class SiteConfig:
    """One site: its data file, its data dictionary and its state folder.

    Everything the site keeps (ledger, plans, cache) lives under ``state_dir``; the
    ledger's signing key lives in ``key_dir`` (default: ``<state_dir>.keys`` beside
    it), never in the state folder; the data file is only read. ``min_cell_size`` and
    ``true_count_floor`` are the site's disclosure rules for analytics (None: the
    workbench defaults, a minimum cell size of 5 and no floor on true counts).
    ``max_epsilon_per_request`` is the site's cap on one request's cost (None: no cap
    beyond the ledger's; set from node.toml, see federation/site/request_cap.py).
    ``policy_overrides`` sets other keys of a simulated site's policy, by NodePolicy
    field (``(("holdout_fraction", 0.3),)``): what a hospital's IT would write in
    node.toml's [training] section. A deployed node reads its node.toml instead.
    ``analytics_limits``: the site's limits on a query's sizes ([analytics] in node.toml;
    federation/analytics/limits.py), the workbench defaults unless set.
    """

    site_id: str
    data_path: Path
    state_dir: Path
    dictionary_path: Path
    dataset: str = ""
    min_cell_size: int | None = None
    true_count_floor: int | None = None
    max_epsilon_per_request: float | None = None
    policy_overrides: tuple[tuple[str, Any], ...] = ()
    analytics_limits: AnalyticsLimits = field(default_factory=AnalyticsLimits)
    key_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_path", Path(self.data_path))
        if self.key_dir is not None:
            object.__setattr__(self, "key_dir", Path(self.key_dir))
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        object.__setattr__(self, "dictionary_path", Path(self.dictionary_path))
        if not self.dataset:
            object.__setattr__(self, "dataset", self.data_path.stem)
        for name in ("min_cell_size", "true_count_floor"):
            object.__setattr__(self, name, _whole_or_none(name, getattr(self, name)))
        overrides = dict(self.policy_overrides or ())
        object.__setattr__(
            self,
            "policy_overrides",
            tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in overrides.items())),
        )

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.sqlite"

    @property
    def ledger_key_path(self) -> Path:
        """The ledger's signing key, in the key folder (see ``federation/site/ledger_keys.py``)."""
        folder = self.key_dir if self.key_dir is not None else self.state_dir.with_name(f"{self.state_dir.name}.keys")
        return folder / LEDGER_KEY_FILE

    @property
    def legacy_key_path(self) -> Path:
        """Where ledgers made before key folders kept their key (beside the ledger)."""
        return Path(f"{self.ledger_path}.key")

    @property
    def plans_dir(self) -> Path:
        return self.state_dir / "plans"

    @property
    def analytics_cache_dir(self) -> Path:
        """Released analytics answers, replayed for free (federation/analytics/cache.py)."""
        return self.state_dir / "analytics-cache"

    def to_json(self) -> dict[str, str]:
        data = {
            k: str(v)
            for k, v in asdict(self).items()
            if v is not None and k not in ("policy_overrides", "analytics_limits")
        }
        if self.policy_overrides:
            data["policy_overrides"] = json.dumps(dict(self.policy_overrides))
        data["analytics_limits"] = json.dumps(self.analytics_limits.to_json())
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteConfig:
        data = dict(data)
        if data.get("max_epsilon_per_request") is not None:
            data["max_epsilon_per_request"] = float(data["max_epsilon_per_request"])
        if data.get("policy_overrides"):
            data["policy_overrides"] = tuple(json.loads(data["policy_overrides"]).items())
        if "analytics_limits" in data:
            data["analytics_limits"] = AnalyticsLimits.from_json(json.loads(data["analytics_limits"]))
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
            min_cell_size=node_config.get(MIN_CELL_SIZE_KEY),
            true_count_floor=node_config.get(TRUE_COUNT_FLOOR_KEY),
            key_dir=Path(str(node_config[KEY_DIR_KEY])) if node_config.get(KEY_DIR_KEY) else None,
        )


def _whole_or_none(name: str, value: Any) -> int | None:
    """A whole number from config text or a number; the rule's own bounds are checked
    where it is applied, so that training is not refused for an analytics setting."""
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise ValueError(
            f"the site's {name.replace('_', '-')} must be a whole number; got {value!r}. Fix it in the node config."
        ) from None
    return number


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
