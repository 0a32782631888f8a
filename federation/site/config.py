"""A hospital node's settings: ``node.toml``, read strictly, written with every key explained.

The file is the one place hospital IT describes a node: its data, its state folder,
the coordinator it talks to, its keys and its policy. Relative paths inside it are
read against the file's own folder, so a node folder can be moved as a whole.

Reading is strict on purpose: an unknown key is an error (a misspelt
``min_cel_size`` silently ignored would weaken the site's policy), and every error
names the file, the key, the rule, the bad value and the fix.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from federation.site.site_config import (
    DATA_PATH_KEY,
    DATASET_KEY,
    DICTIONARY_PATH_KEY,
    MIN_CELL_SIZE_KEY,
    SITE_ID_KEY,
    STATE_DIR_KEY,
    TRUE_COUNT_FLOOR_KEY,
    SiteConfig,
)
from federation.protocol.task_kinds import ALL_QUERIES, EVALUATE, POLICY_WORDS, TRAIN

NODE_TOML_KEY = "node-toml"  # node-config key: where the ClientApp finds the full policy
DEFAULT_ALLOWED_TASKS: tuple[str, ...] = (TRAIN, EVALUATE, ALL_QUERIES)
DEFAULT_MIN_CELL_SIZE = 5
LOWEST_MIN_CELL_SIZE = 3  # federation/analytics/disclosure.py holds the same floor
DEFAULT_REPEATED_QUERY_LIMIT = 3
DEFAULT_CLIENTAPPIO_ADDRESS = "127.0.0.1:9094"
DEFAULT_FLEET_PORT = 9092

# Every section and key a node.toml may hold (anything else is refused).
LAYOUT: dict[str, tuple[str, ...]] = {
    "site": ("id", "data", "dictionary", "dataset"),
    "state": ("dir",),
    "coordinator": ("address", "ca_certificate"),
    "node": ("private_key", "clientappio_address"),
    "policy": (
        "allowed_tasks", "min_cell_size", "true_count_floor", "max_epsilon_per_request",
        "repeated_query_limit", "trusted_entities",
    ),
    "alerts": ("command", "webhook"),
}


class NodeConfigError(ValueError):
    """A node.toml breaks a rule. The message names the file, the key, the rule, the
    bad value and the fix; the same parts are attributes for callers that point at them."""

    def __init__(self, *, file: Path, key: str, rule: str, value: Any, fix: str) -> None:
        shown = "(missing)" if value is _MISSING else repr(value)
        super().__init__(f"{file}: {key} {rule}; got {shown}. Fix: {fix}")
        self.file = file
        self.key = key
        self.rule = rule
        self.value = None if value is _MISSING else value
        self.fix = fix


_MISSING = object()


@dataclass(frozen=True)
class NodePolicy:
    """What a site allows. ``allowed_tasks`` holds task kinds ("train", "evaluate",
    "query:count", ...) or "query:*" for every analytics query."""

    allowed_tasks: tuple[str, ...]
    min_cell_size: int = DEFAULT_MIN_CELL_SIZE
    true_count_floor: int | None = None
    max_epsilon_per_request: float | None = None
    alert_command: str | None = None
    alert_webhook: str | None = None
    repeated_query_limit: int = DEFAULT_REPEATED_QUERY_LIMIT
    trusted_entities: Path | None = None

    def __post_init__(self) -> None:
        # The same rules as node.toml's, for a policy built in code (tests, the simulation).
        object.__setattr__(self, "allowed_tasks", tuple(self.allowed_tasks))
        unknown = [t for t in self.allowed_tasks if t not in POLICY_WORDS]
        if not self.allowed_tasks or unknown:
            raise ValueError(f"a policy allows a non-empty list of task kinds out of {', '.join(POLICY_WORDS)}; "
                             f"got {list(self.allowed_tasks)!r}.")
        for name, lowest in (("min_cell_size", LOWEST_MIN_CELL_SIZE), ("repeated_query_limit", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"a policy's {name} is a whole number of at least {lowest}; got {value!r}.")
        if self.max_epsilon_per_request is not None and not (
                math.isfinite(self.max_epsilon_per_request) and self.max_epsilon_per_request > 0):
            raise ValueError(f"a policy's max_epsilon_per_request is a positive number or None; "
                             f"got {self.max_epsilon_per_request!r}.")

    @classmethod
    def default_for(cls, site: SiteConfig) -> NodePolicy:
        """The policy of a node without a node.toml (the simulation): every task allowed,
        the site's own disclosure settings, no alert targets."""
        # A simulated site's own rules are checked where analytics apply them
        # (disclosure.py), so an odd value there never blocks training here.
        smallest = site.min_cell_size if site.min_cell_size is not None else DEFAULT_MIN_CELL_SIZE
        return cls(
            allowed_tasks=DEFAULT_ALLOWED_TASKS,
            min_cell_size=max(smallest, LOWEST_MIN_CELL_SIZE),
            true_count_floor=site.true_count_floor,
            max_epsilon_per_request=site.max_epsilon_per_request,
        )


@dataclass(frozen=True)
class NodeConfig:
    """One hospital node, as its node.toml describes it (paths already absolute)."""

    path: Path
    site_id: str
    data_path: Path
    dictionary_path: Path | None
    dataset: str
    state_dir: Path
    coordinator_address: str
    ca_certificate: Path
    node_private_key: Path
    clientappio_address: str
    policy: NodePolicy

    @property
    def node_public_key(self) -> Path:
        return Path(f"{self.node_private_key}.pub")

    @property
    def resolved_dictionary_path(self) -> Path:
        """The data dictionary: the one named, else ``data_dictionary.json`` beside the data."""
        return self.dictionary_path or self.data_path.parent / "data_dictionary.json"

    def site_config(self) -> SiteConfig:
        """The SiteConfig the task handlers read (same fields as from the node config)."""
        return SiteConfig(
            site_id=self.site_id,
            data_path=self.data_path,
            state_dir=self.state_dir,
            dictionary_path=self.resolved_dictionary_path,
            dataset=self.dataset,
            min_cell_size=self.policy.min_cell_size,
            true_count_floor=self.policy.true_count_floor,
            max_epsilon_per_request=self.policy.max_epsilon_per_request,
        )

    def node_config_entries(self) -> dict[str, str]:
        """Keys for ``flower-supernode --node-config`` (values as text; an unset
        true-count floor is left out). ``node-toml`` lets the ClientApp load the policy."""
        entries = {
            SITE_ID_KEY: self.site_id,
            DATA_PATH_KEY: str(self.data_path),
            STATE_DIR_KEY: str(self.state_dir),
            DICTIONARY_PATH_KEY: str(self.resolved_dictionary_path),
            DATASET_KEY: self.dataset,
            MIN_CELL_SIZE_KEY: str(self.policy.min_cell_size),
            NODE_TOML_KEY: str(self.path.resolve()),
        }
        if self.policy.true_count_floor is not None:
            entries[TRUE_COUNT_FLOOR_KEY] = str(self.policy.true_count_floor)
        return entries


def load_node_config(path: Path) -> NodeConfig:
    """Read and check a node.toml; raises NodeConfigError naming the key and the fix.

    Only the file's shape and values are checked here; whether the data, keys and
    coordinator are really there is ``node check``'s job (federation/site/preflight.py).
    """
    path = Path(path)
    if not path.is_file():
        raise NodeConfigError(
            file=path, key="(file)", rule="must be an existing node.toml", value=str(path),
            fix="write one with `workbench node init --site-id ID --data PATH --out DIR`, or pass its path with --config.",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise NodeConfigError(
            file=path, key="(file)", rule="must be valid TOML", value=str(err),
            fix="correct the syntax at the line named (strings need quotes, lists use [ ]).",
        ) from None
    return _Reader(path=path, raw=raw).node_config()


class _Reader:
    """Reads one parsed node.toml, key by key, with the file's folder as the base of paths."""

    def __init__(self, *, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.raw = raw
        self._check_layout()

    def fail(self, key: str, rule: str, value: Any, fix: str) -> NodeConfigError:
        return NodeConfigError(file=self.path, key=key, rule=rule, value=value, fix=fix)

    def _check_layout(self) -> None:
        for section, table in self.raw.items():
            if section not in LAYOUT:
                raise self.fail(f"[{section}]", "is not a section of node.toml", section,
                                f"{_did_you_mean(section, LAYOUT)}The sections are {', '.join(f'[{s}]' for s in LAYOUT)}.")
            if not isinstance(table, dict):
                raise self.fail(f"[{section}]", "must be a table (a [section] header)", table,
                                f"write it as a [{section}] header followed by its keys.")
            for key in table:
                if key not in LAYOUT[section]:
                    raise self.fail(f"[{section}] {key}", "is not a key of this section", key,
                                    f"{_did_you_mean(key, LAYOUT[section])}"
                                    f"[{section}] holds {', '.join(LAYOUT[section])}.")

    def get(self, section: str, key: str) -> Any:
        return self.raw.get(section, {}).get(key, _MISSING)

    def text(self, section: str, key: str, *, fix: str, required: bool = True) -> str | None:
        value = self.get(section, key)
        if value is _MISSING and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"[{section}] {key}", "must be a non-empty quoted string", value, fix)
        return value.strip()

    def file_path(self, section: str, key: str, *, fix: str, required: bool = True) -> Path | None:
        value = self.text(section, key, fix=fix, required=required)
        if value is None:
            return None
        return (self.base / Path(value).expanduser()).resolve()

    def whole(self, section: str, key: str, *, default: Any, lowest: int, fix: str) -> Any:
        value = self.get(section, key)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise self.fail(f"[{section}] {key}", f"must be a whole number of at least {lowest}", value, fix)
        return value

    def address(self, section: str, key: str, *, fix: str, default: str | None = None) -> str:
        value = self.get(section, key)
        if value is _MISSING and default is not None:
            return default
        if not isinstance(value, str) or not _is_host_port(value):
            raise self.fail(f"[{section}] {key}", "must be \"host:port\" with a port from 1 to 65535", value, fix)
        return value

    def node_config(self) -> NodeConfig:
        site_id = self.text("site", "id", fix='name the site with letters, digits, "-" or "_", e.g. id = "hospital-a".')
        if not site_id.replace("-", "").replace("_", "").isalnum():
            raise self.fail("[site] id", 'must use only letters, digits, "-" or "_"', site_id,
                            'rename it, e.g. id = "hospital-a" (the coordinator registers it by this name).')
        data = self.file_path("site", "data", fix='give the site\'s data file (CSV or Parquet), e.g. data = "data/site.parquet".')
        if data.suffix.lower() not in (".csv", ".parquet"):
            raise self.fail("[site] data", "must name a .csv or .parquet file", str(data),
                            "point it at the site's table; convert other formats to CSV or Parquet first.")
        dataset = self.text("site", "dataset", required=False,
                            fix='name the dataset the ledger charges, e.g. dataset = "cardiology", or remove the key.')
        state_dir = self.file_path("state", "dir", fix='give a folder for the ledger, audit log and caches, e.g. dir = "state".')
        return NodeConfig(
            path=self.path,
            site_id=site_id,
            data_path=data,
            dictionary_path=self.file_path(
                "site", "dictionary", required=False,
                fix='give the data dictionary file, e.g. dictionary = "data/data_dictionary.json", or remove the key.'),
            dataset=dataset or data.stem,
            state_dir=state_dir,
            coordinator_address=self.address(
                "coordinator", "address",
                fix=f'write the coordinator\'s Fleet API address as given by the study team, e.g. address = "coordinator.example.org:{DEFAULT_FLEET_PORT}".'),
            ca_certificate=self.file_path(
                "coordinator", "ca_certificate",
                fix='name the CA certificate the coordinator sent you, e.g. ca_certificate = "ca.crt".'),
            node_private_key=self.file_path(
                "node", "private_key",
                fix='name the node\'s private key (made by `workbench node init`), e.g. private_key = "keys/node_key".'),
            clientappio_address=self.address(
                "node", "clientappio_address", default=DEFAULT_CLIENTAPPIO_ADDRESS,
                fix=f'use a free local port, e.g. clientappio_address = "{DEFAULT_CLIENTAPPIO_ADDRESS}".'),
            policy=self.policy(),
        )

    def policy(self) -> NodePolicy:
        allowed = self.get("policy", "allowed_tasks")
        words = ", ".join(f'"{w}"' for w in POLICY_WORDS)
        if allowed is _MISSING or not isinstance(allowed, list) or not allowed:
            raise self.fail("[policy] allowed_tasks", "must be a non-empty list of task kinds", allowed,
                            f'list what this site serves, e.g. allowed_tasks = ["train", "evaluate", "query:*"]; the kinds are {words}.')
        for task in allowed:
            if task not in POLICY_WORDS:
                raise self.fail("[policy] allowed_tasks", "holds an unknown task kind", task,
                                f"{_did_you_mean(str(task), POLICY_WORDS)}The kinds are {words}.")
        max_epsilon = self.get("policy", "max_epsilon_per_request")
        if max_epsilon is _MISSING:
            max_epsilon = None
        elif isinstance(max_epsilon, bool) or not isinstance(max_epsilon, (int, float)) \
                or not math.isfinite(max_epsilon) or max_epsilon <= 0:
            raise self.fail("[policy] max_epsilon_per_request", "must be a positive number", max_epsilon,
                            "set the most epsilon one request may cost, e.g. max_epsilon_per_request = 1.0, or remove the key.")
        webhook = self.text("alerts", "webhook", required=False,
                            fix='give an http(s) URL, e.g. webhook = "https://alerts.hospital.example/node", or remove the key.')
        if webhook is not None and (urlparse(webhook).scheme not in ("http", "https") or not urlparse(webhook).netloc):
            raise self.fail("[alerts] webhook", "must be an http:// or https:// URL", webhook,
                            'write the full URL, e.g. webhook = "https://alerts.hospital.example/node".')
        return NodePolicy(
            allowed_tasks=tuple(dict.fromkeys(allowed)),
            min_cell_size=self.whole(
                "policy", "min_cell_size", default=DEFAULT_MIN_CELL_SIZE, lowest=LOWEST_MIN_CELL_SIZE,
                fix=f"set min_cell_size = {DEFAULT_MIN_CELL_SIZE} (the workbench default) or any whole number of at least {LOWEST_MIN_CELL_SIZE}."),
            true_count_floor=self.whole(
                "policy", "true_count_floor", default=None, lowest=1,
                fix="set a whole number of at least 1 (DataSHIELD uses 3), or remove the key."),
            max_epsilon_per_request=None if max_epsilon is None else float(max_epsilon),
            alert_command=self.text("alerts", "command", required=False,
                                    fix='give a shell command that reads the alert as JSON on stdin, or remove the key.'),
            alert_webhook=webhook,
            repeated_query_limit=self.whole(
                "policy", "repeated_query_limit", default=DEFAULT_REPEATED_QUERY_LIMIT, lowest=1,
                fix=f"set how many identical requests may come before an alert, e.g. repeated_query_limit = {DEFAULT_REPEATED_QUERY_LIMIT}."),
            trusted_entities=self.file_path(
                "policy", "trusted_entities", required=False,
                fix='name the file of app-signing keys this site trusts, e.g. trusted_entities = "trusted_entities.yaml", or remove the key.'),
        )


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"Did you mean {close[0]!r}? " if close else ""


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("["):
        return host.endswith("]") and len(host) > 2
    return ":" not in host and not any(c.isspace() for c in host)


# --- writing ------------------------------------------------------------------------


def write_node_template(
    *,
    path: Path,
    site_id: str,
    data_path: Path,
    state_dir: Path,
    dictionary_path: Path | None = None,
    dataset: str = "",
    coordinator_address: str = f"coordinator.example.org:{DEFAULT_FLEET_PORT}",
    ca_certificate: Path | None = None,
    node_private_key: Path | None = None,
    clientappio_address: str = DEFAULT_CLIENTAPPIO_ADDRESS,
    allowed_tasks: tuple[str, ...] = DEFAULT_ALLOWED_TASKS,
    min_cell_size: int = DEFAULT_MIN_CELL_SIZE,
    overwrite: bool = False,
) -> None:
    """Write a node.toml with every key explained; the result loads with ``load_node_config``.

    Relative paths given here are read against the current folder (as any command-line
    argument); they are written relative to the file's folder where they lie beneath
    it. The CA certificate and the node key default to ``ca.crt`` and
    ``keys/node_key`` beside the file. Refuses to replace a file unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; keep it, or pass overwrite=True (--force) to replace it.")
    base = path.resolve().parent
    ca_certificate = ca_certificate if ca_certificate is not None else base / "ca.crt"
    node_private_key = node_private_key if node_private_key is not None else base / "keys" / "node_key"

    def rel(p: Path) -> str:
        p = Path(p).expanduser().resolve()
        try:
            return json.dumps(p.relative_to(base).as_posix())
        except ValueError:
            return json.dumps(p.as_posix())

    dictionary_line = (
        f"dictionary = {rel(dictionary_path)}"
        if dictionary_path is not None
        else '# dictionary = "data_dictionary.json"'
    )
    dataset_line = f"dataset = {json.dumps(dataset)}" if dataset else f'# dataset = "{Path(data_path).stem}"'
    text = _TEMPLATE.format(
        site_id=json.dumps(site_id),
        data=rel(data_path),
        dictionary_line=dictionary_line,
        dataset_line=dataset_line,
        state_dir=rel(state_dir),
        coordinator_address=json.dumps(coordinator_address),
        ca_certificate=rel(ca_certificate),
        private_key=rel(node_private_key),
        clientappio_address=json.dumps(clientappio_address),
        allowed_tasks=json.dumps(list(allowed_tasks)),
        min_cell_size=int(min_cell_size),
        lowest=LOWEST_MIN_CELL_SIZE,
        repeated=DEFAULT_REPEATED_QUERY_LIMIT,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


_TEMPLATE = """\
# node.toml: one hospital node of the privacy-preserving workbench.
# Relative paths are read against the folder of this file.
# Check it with `workbench node check --config node.toml`; start the node with
# `workbench node start --config node.toml`.

[site]
# The name the coordinator knows this site by (letters, digits, "-", "_").
id = {site_id}
# The site's table (CSV or Parquet). It is only ever read; no row leaves the site.
data = {data}
# The data dictionary (column types, ranges, target) the table is checked against.
# Default: data_dictionary.json beside the data file.
{dictionary_line}
# The dataset name the privacy ledger charges. Default: the data file's name without suffix.
{dataset_line}

[state]
# Everything the node keeps: the privacy ledger (ledger.sqlite), the audit log
# (audit.jsonl), the pause switch (PAUSED), training plans and released answers.
# Back it up; never share it.
dir = {state_dir}

[coordinator]
# The coordinator's SuperLink Fleet API, "host:port", as the study team gave it.
address = {coordinator_address}
# The CA certificate the coordinator sent: the node trusts a SuperLink only if its
# TLS certificate is signed by this CA.
ca_certificate = {ca_certificate}

[node]
# The node's private key (ECDSA P-384, OpenSSH format, mode 0600), made by
# `workbench node init`. Its public key, <private_key>.pub, is what the coordinator
# registers; the SuperLink accepts this node only with it.
private_key = {private_key}
# Local address where the SuperNode hands tasks to the node's app (loopback only).
clientappio_address = {clientappio_address}

[policy]
# The tasks this site serves: "train", "evaluate", "query:<kind>" (count, sum, mean,
# variance, histogram, crosstab, quantiles, survival, ranges, cost) or "query:*" for
# every analytics query. Anything else is refused and recorded in the audit log.
allowed_tasks = {allowed_tasks}
# Smallest group (cell, stratum, filtered cohort) a released number may describe.
# Never below {lowest}.
min_cell_size = {min_cell_size}
# Optional: also suppress cells whose TRUE count is below this floor (DataSHIELD uses 3).
# true_count_floor = 3
# Optional: the most epsilon one request may cost at this site.
# max_epsilon_per_request = 1.0
# Identical requests (same task and parameters) allowed before an alert is raised.
repeated_query_limit = {repeated}
# Optional: the file of app-signing keys this site trusts (Flower --trusted-entities);
# the node then runs only app bundles signed by one of them. Only Flower's platform
# signs bundles: with a self-hosted coordinator (`flwr run`), a node that sets this
# refuses every study. Without it, the node's executor still runs only the
# workbench's own ClientApp, installed at this site.
# trusted_entities = "trusted_entities.yaml"

[alerts]
# Where alerts go besides the audit log (refused requests, requests over a cap, a
# paused node being asked, repeated identical queries). Both optional.
# A shell command; it gets the alert as JSON on its standard input.
# command = "/usr/local/bin/page-it-team"
# An http(s) URL; the alert is POSTed to it as JSON.
# webhook = "https://alerts.hospital.example/node"
"""
