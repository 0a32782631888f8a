"""A hospital node's settings: ``node.toml``, read strictly, written with every key explained.

The file is the one place hospital IT describes a node: its data, its state folder,
the coordinator it talks to, its keys and its policy. Relative paths inside it are
read against the file's own folder, so a node folder can be moved as a whole.

Reading is strict on purpose: an unknown key is an error (a misspelt
``min_cel_size`` silently ignored would weaken the site's policy), and every error
names the file, the key, the rule, the bad value and the fix.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import make_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from federation.analytics.disclosure import DisclosureRuleError, DisclosureRules, rules_for
from federation.analytics.limits import AnalyticsLimits
from federation.errors import BadInput
from federation.protocol.task_kinds import TUNE
from federation.site.node_keys import (
    DEFAULT_ALLOWED_TASKS,
    DEFAULT_MIN_CELL_SIZE,
    DEFAULT_MIN_HOLDOUT_ROWS,
    KEYS,
    LAYOUT,
    LOWEST_MIN_CELL_SIZE,
    NODE_KEYS,
    POLICY_KEYS,
    REQUIRED,
    SECTION_COMMENTS,
    Broken,
    NodeKey,
    dataclass_fields,
    did_you_mean,
)
from federation.site.site_config import (
    DATA_PATH_KEY,
    DATASET_KEY,
    DICTIONARY_PATH_KEY,
    KEY_DIR_KEY,
    MIN_CELL_SIZE_KEY,
    SITE_ID_KEY,
    STATE_DIR_KEY,
    TRUE_COUNT_FLOOR_KEY,
    SiteConfig,
)

NODE_TOML_KEY = "node-toml"  # node-config key: where the ClientApp finds the full policy


class NodeConfigError(BadInput, ValueError):
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


class NodePolicyError(BadInput, ValueError):
    """A policy built in code (tests, the simulation) breaks a rule of its node.toml key."""


_MISSING = object()


class _PolicyRules:
    """What a site allows: one field per key of node.toml's [policy] and [alerts]
    (node_keys.POLICY_KEYS), with its default. ``allowed_tasks`` holds task kinds
    ("train", "evaluate", "query:count", ...) or "query:*" for every analytics query."""

    def __post_init__(self) -> None:
        # The same rules as node.toml's, for a policy built in code (tests, the simulation).
        for key in POLICY_KEYS:
            value = getattr(self, key.field)
            if value is None and key.optional:
                continue
            try:
                object.__setattr__(self, key.field, key.read(value))
            except Broken as broken:
                raise NodePolicyError(
                    f"a policy's {key.name} {broken.rule}; got {broken.shown!r}. Fix: {broken.fix}"
                ) from None
        broken = between_keys(self)
        if broken is not None:
            name, rule, value, fix = broken
            raise NodePolicyError(f"a policy's {name} {rule}; got {value!r}. Fix: {fix}")

    @classmethod
    def default_for(cls, site: SiteConfig) -> NodePolicy:
        """The policy of a node without a node.toml (the simulation): every task allowed,
        the site's own disclosure settings, no alert targets."""
        # A simulated site's own rules are checked where analytics apply them
        # (disclosure_rules), so an odd value there never blocks training here.
        smallest = site.min_cell_size if site.min_cell_size is not None else DEFAULT_MIN_CELL_SIZE
        smallest = max(smallest, LOWEST_MIN_CELL_SIZE)
        overrides = dict(site.policy_overrides)
        known = {key.field for key in POLICY_KEYS}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise NodePolicyError(
                f"a simulated site's policy_overrides name unknown key(s) {', '.join(unknown)}. Fix: use the "
                f"fields of node.toml's [policy] and [training] keys: {', '.join(sorted(known))}."
            )
        values = {
            # every task: a deployed node's defaults, and local tuning (which a node lists itself)
            "allowed_tasks": (*DEFAULT_ALLOWED_TASKS, TUNE),
            "min_cell_size": smallest,
            "true_count_floor": site.true_count_floor,
            "max_epsilon_per_request": site.max_epsilon_per_request,
            # the held-out split is never smaller than the site's smallest cell
            "min_holdout_rows": max(DEFAULT_MIN_HOLDOUT_ROWS, smallest),
            **site.analytics_limits.to_json(),
        }
        return cls(**{**values, **overrides})

    def analytics_limits(self) -> AnalyticsLimits:
        """The [analytics] keys, as the analytics take them (federation/analytics/limits.py)."""
        return AnalyticsLimits(**{name: getattr(self, name) for name in AnalyticsLimits.__dataclass_fields__})


def between_keys(policy: Any) -> tuple[str, str, Any, str] | None:
    """A rule between two keys that one key's own rule cannot see: (key, rule, value, fix)."""
    if policy.min_holdout_rows < policy.min_cell_size:
        return (
            "[training] min_holdout_rows",
            f"must be at least the site's min_cell_size ({policy.min_cell_size})",
            policy.min_holdout_rows,
            f"raise min_holdout_rows to {policy.min_cell_size} or more (no evaluation may describe fewer "
            "patients than the smallest cell the site releases).",
        )
    return None


NodePolicy = make_dataclass(
    "NodePolicy",
    dataclass_fields(POLICY_KEYS, defaults=True),
    bases=(_PolicyRules,),
    frozen=True,
    namespace={"__module__": __name__, "__doc__": _PolicyRules.__doc__},
)


class _NodeFiles:
    """One hospital node, as its node.toml describes it (paths already absolute): its
    file ``path``, one field per key of the sections site, state, coordinator and node
    (node_keys.NODE_KEYS), and its ``policy``."""

    def __post_init__(self) -> None:
        if not self.dataset:  # the dataset the ledger charges: by default the data file's name
            object.__setattr__(self, "dataset", Path(self.data_path).stem)

    @property
    def node_public_key(self) -> Path:
        return Path(f"{self.node_private_key}.pub")

    @property
    def ledger_key_dir(self) -> Path:
        """The key folder: ``[node] key_dir``, else the folder of the node's private key."""
        return self.key_dir or Path(self.node_private_key).parent

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
            analytics_limits=self.policy.analytics_limits(),
            key_dir=self.ledger_key_dir,
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
            KEY_DIR_KEY: str(self.ledger_key_dir),
        }
        if self.policy.true_count_floor is not None:
            entries[TRUE_COUNT_FLOOR_KEY] = str(self.policy.true_count_floor)
        return entries


NodeConfig = make_dataclass(
    "NodeConfig",
    [("path", Path), *dataclass_fields(NODE_KEYS, defaults=False), ("policy", NodePolicy)],
    bases=(_NodeFiles,),
    frozen=True,
    namespace={"__module__": __name__, "__doc__": _NodeFiles.__doc__},
)


def load_node_config(path: Path) -> NodeConfig:
    """Read and check a node.toml; raises NodeConfigError naming the key and the fix.

    Only the file's shape and values are checked here; whether the data, keys and
    coordinator are really there is ``node check``'s job (federation/site/preflight.py).
    """
    path = Path(path)
    if not path.is_file():
        raise NodeConfigError(
            file=path,
            key="(file)",
            rule="must be an existing node.toml",
            value=str(path),
            fix="write one with `workbench node init --site-id ID --data PATH --out DIR`, or pass its path with --config.",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise NodeConfigError(
            file=path,
            key="(file)",
            rule="must be valid TOML",
            value=str(err),
            fix="correct the syntax at the line named (strings need quotes, lists use [ ]).",
        ) from None
    return _Reader(path=path, raw=raw).node_config()


class _Reader:
    """Reads one parsed node.toml, key by key (node_keys.KEYS), with the file's folder
    as the base of paths."""

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
                raise self.fail(
                    f"[{section}]",
                    "is not a section of node.toml",
                    section,
                    f"{did_you_mean(section, LAYOUT)}The sections are {', '.join(f'[{s}]' for s in LAYOUT)}.",
                )
            if not isinstance(table, dict):
                raise self.fail(
                    f"[{section}]",
                    "must be a table (a [section] header)",
                    table,
                    f"write it as a [{section}] header followed by its keys.",
                )
            for key in table:
                if key not in LAYOUT[section]:
                    raise self.fail(
                        f"[{section}] {key}",
                        "is not a key of this section",
                        key,
                        f"{did_you_mean(key, LAYOUT[section])}[{section}] holds {', '.join(LAYOUT[section])}.",
                    )

    def value(self, key: NodeKey) -> Any:
        raw = self.raw.get(key.section, {}).get(key.name, _MISSING)
        if raw is _MISSING and key.default is not REQUIRED:
            return key.default
        try:
            return key.read(None if raw is _MISSING else raw, base=self.base)
        except Broken as broken:
            raise self.fail(key.label, broken.rule, _MISSING if raw is _MISSING else broken.shown, broken.fix) from None

    def node_config(self) -> NodeConfig:
        values = {key.field: self.value(key) for key in KEYS}
        policy_values = {key.field: values.pop(key.field) for key in POLICY_KEYS}
        broken = between_keys(SimpleNamespace(**policy_values))
        if broken is not None:
            raise self.fail(*broken)
        policy = NodePolicy(**policy_values)
        return NodeConfig(path=self.path, policy=policy, **values)


# --- writing ------------------------------------------------------------------------

_HEADER = """\
# node.toml: one hospital node of the privacy-preserving workbench.
# Relative paths are read against the folder of this file.
# Check it with `workbench node check --config node.toml`; start the node with
# `workbench node start --config node.toml`.
"""


def write_node_template(
    *,
    path: Path,
    site_id: str,
    data_path: Path,
    state_dir: Path,
    overwrite: bool = False,
    **values: Any,
) -> None:
    """Write a node.toml with every key explained; the result loads with ``load_node_config``.

    ``values`` fill any other key by its field name (``dictionary_path``, ``dataset``,
    ``coordinator_address``, ``ca_certificate``, ``node_private_key``,
    ``allowed_tasks``, ``min_cell_size``... see node_keys.KEYS). A key left out is
    written with its default, or its placeholder (the CA certificate and the node key
    default to ``ca.crt`` and ``keys/node_key`` beside the file), or commented out
    when it is optional. Relative paths given here are read against the current
    folder (as any command-line argument); they are written relative to the file's
    folder where they lie beneath it. Refuses to replace a file unless ``overwrite``.
    """
    path = Path(path)
    known = {key.field for key in KEYS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(
            f"write_node_template() got unknown key field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(sorted(known))}."
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; keep it, or pass overwrite=True (--force) to replace it.")
    base = path.resolve().parent
    values.update(site_id=site_id, data_path=data_path, state_dir=state_dir)
    context = {"data_stem": Path(data_path).stem}
    lines = [_HEADER]
    for section in LAYOUT:
        lines.append(f"\n[{section}]\n")
        if section in SECTION_COMMENTS:
            lines.append(_comment(SECTION_COMMENTS[section]))
        for key in (k for k in KEYS if k.section == section):
            lines.append(_comment(key.comment))
            lines.append(_line(key, values.get(key.field), base=base, context=context))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in text.splitlines())


def _line(key: NodeKey, value: Any, *, base: Path, context: dict[str, str]) -> str:
    """``name = value`` for a given value, a default or a placeholder; else the example, commented out."""
    if value in (None, "") and key.default not in (REQUIRED, None):
        value = key.default
    if value in (None, "") and key.template is not None:
        value = base / key.template if key.type == "path" else key.template
    if value in (None, ""):
        return f"# {key.name} = {key.example.format(**context)}\n"
    return f"{key.name} = {_toml(key, value, base=base)}\n"


def _toml(key: NodeKey, value: Any, *, base: Path) -> str:
    if key.type == "path":
        resolved = Path(value).expanduser().resolve()
        try:
            return json.dumps(resolved.relative_to(base).as_posix())
        except ValueError:
            return json.dumps(resolved.as_posix())
    if key.type in ("task list", "column list"):
        return json.dumps(list(value))
    if key.type == "range":
        return json.dumps([float(v) for v in value])
    if key.type == "whole":
        return str(int(value))
    if key.type == "flag":
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)


# --- the site's disclosure rules ----------------------------------------------------


def disclosure_rules(*, site: SiteConfig, query_min: int | None = None) -> DisclosureRules:
    """The disclosure rules in force at ``site`` for a query that asks for ``query_min``.

    The site's own minimum (default 5) and floor must keep its policy's limits (the
    [policy] keys min_cell_size and true_count_floor); checked here, where analytics
    apply them, so that an odd value in a simulation's SiteConfig never blocks training.
    """
    smallest = DEFAULT_MIN_CELL_SIZE if site.min_cell_size is None else site.min_cell_size
    if isinstance(smallest, bool) or not isinstance(smallest, int) or smallest < LOWEST_MIN_CELL_SIZE:
        raise DisclosureRuleError(
            f"A site's minimum cell size is a whole number of at least {LOWEST_MIN_CELL_SIZE}; "
            f"got {smallest!r}. Set min-cell-size to {LOWEST_MIN_CELL_SIZE} or more in the node config."
        )
    floor = site.true_count_floor
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int) or floor < 1):
        raise DisclosureRuleError(
            f"A true-count floor is a whole number of at least 1, or unset; got {floor!r}. "
            "Fix true-count-floor in the node config (DataSHIELD uses 3)."
        )
    return rules_for(site_min=smallest, site_floor=floor, query_min=query_min)
