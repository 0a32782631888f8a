"""Every key a ``node.toml`` may hold, declared once: section, type, default, comment,
rule and fix.

The reader (``config.load_node_config``, which ``workbench node check`` and ``node
start`` run first), the template ``workbench node init`` writes
(``config.write_node_template``) and the checks of a policy built in code
(``config.NodePolicy``) are all made from ``KEYS``. A new key is one ``NodeKey`` here
and its field on ``NodeConfig`` (sections site, state, coordinator, node) or
``NodePolicy`` (sections policy, alerts); nothing else names it.

The site's disclosure rules live here too: the minimum cell size (default 5, never
below 3) and the optional floor on true counts are policy keys; the analytics
mechanism takes them as arguments (federation/analytics/disclosure.py).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from federation.analytics import limits as analytics_limits
from federation.analytics.query import MAX_BINS
from federation.errors import BadInput
from federation.protocol.task_kinds import ALL_QUERIES, EVALUATE, POLICY_WORDS, TRAIN


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # the default of a key the file must set
DEFAULT_FLEET_PORT = 9092
DEFAULT_CLIENTAPPIO_ADDRESS = "127.0.0.1:9094"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"  # one fixed port, for hospital IT's scrape configuration


class Broken(BadInput, ValueError):
    """A value breaks its key's rule: the rule, the fix, and the value to show (the
    reader adds the file and the key: NodeConfigError)."""

    def __init__(self, rule: str, fix: str, shown: Any) -> None:
        super().__init__(rule)
        self.rule, self.fix, self.shown = rule, fix, shown


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"Did you mean {close[0]!r}? " if close else ""


def is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("["):
        return host.endswith("]") and len(host) > 2
    return ":" not in host and not any(c.isspace() for c in host)


# --- types: each reads a TOML value (or checks a value given in code) and writes one --------


def _text(key: NodeKey, value: Any, base: Path | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Broken("must be a non-empty quoted string", key.fix, value)
    return value.strip()


def _path(key: NodeKey, value: Any, base: Path | None) -> Path:
    if isinstance(value, Path):
        return value
    text = _text(key, value, base)
    return ((base or Path.cwd()) / Path(text).expanduser()).resolve()


def _whole(key: NodeKey, value: Any, base: Path | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < key.lowest:
        raise Broken(f"must be a whole number of at least {key.lowest}", key.fix, value)
    return value


def _positive(key: NodeKey, value: Any, base: Path | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise Broken("must be a positive number", key.fix, value)
    return float(value)


def _address(key: NodeKey, value: Any, base: Path | None) -> str:
    if not isinstance(value, str) or not is_host_port(value):
        raise Broken('must be "host:port" with a port from 1 to 65535', key.fix, value)
    return value


def _address_or_off(key: NodeKey, value: Any, base: Path | None) -> str:
    if value == "off":
        return value
    if not isinstance(value, str) or not is_host_port(value):
        raise Broken('must be "host:port" (a port from 1 to 65535) or "off"', key.fix, value)
    return value


def _tasks(key: NodeKey, value: Any, base: Path | None) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise Broken("must be a non-empty list of task kinds", key.fix, value)
    for task in value:
        if task not in POLICY_WORDS:
            raise Broken(
                "holds an unknown task kind", f"{did_you_mean(str(task), POLICY_WORDS)}The kinds are {_WORDS}.", task
            )
    return tuple(dict.fromkeys(value))


def _fraction(key: NodeKey, value: Any, base: Path | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Broken("must be a number between 0 and 1", key.fix, value)
    if not 0 < value < 1:
        raise Broken("must be a number between 0 and 1 (both excluded)", key.fix, value)
    return float(value)


def _range(key: NodeKey, value: Any, base: Path | None) -> tuple[float, float]:
    numbers = isinstance(value, (list, tuple)) and len(value) == 2
    numbers = numbers and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in value
    )
    if not numbers or not value[0] < value[1]:
        raise Broken("must be [low, high]: two positive numbers, low below high", key.fix, value)
    return float(value[0]), float(value[1])


def _columns(key: NodeKey, value: Any, base: Path | None) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise Broken("must be a list of column names (quoted strings)", key.fix, value)
    return tuple(dict.fromkeys(v.strip() for v in value))


def _flag(key: NodeKey, value: Any, base: Path | None) -> bool:
    if not isinstance(value, bool):
        raise Broken("must be true or false (unquoted)", key.fix, value)
    return value


_WORDS = ", ".join(f'"{w}"' for w in POLICY_WORDS)
TYPES = {
    "text": _text,
    "path": _path,
    "whole": _whole,
    "positive number": _positive,
    "address": _address,
    "address or off": _address_or_off,
    "task list": _tasks,
    "fraction": _fraction,
    "range": _range,
    "column list": _columns,
    "flag": _flag,
}


@dataclass(frozen=True)
class NodeKey:
    """One key of node.toml.

    ``default``: REQUIRED (the file must set it), None (optional: unset when absent;
    the template writes it commented out with ``example``), or the value in force when
    absent (the template writes it). ``rules``: further rules of the read value, each a
    function that returns None or ``(rule, fix)``. ``field``: the attribute it fills on
    NodeConfig or NodePolicy. ``template``: the value ``node init`` writes when the
    caller gives none and the key has no default (a path against the file's folder).
    """

    section: str
    name: str
    type: str
    comment: str
    fix: str
    field: str
    default: Any = REQUIRED
    lowest: int = 1
    example: str = ""
    template: Any = None
    rules: tuple = ()

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"node key {self.label}: unknown type {self.type!r}; the types are {', '.join(TYPES)}.")

    @property
    def label(self) -> str:
        return f"[{self.section}] {self.name}"

    @property
    def optional(self) -> bool:
        return self.default is None

    def read(self, value: Any, *, base: Path | None = None) -> Any:
        """The value in force for ``value`` (raises Broken with the rule and the fix)."""
        read = TYPES[self.type](self, value, base)
        for rule in self.rules:
            broken = rule(read)
            if broken is not None:
                raise Broken(broken[0], broken[1], str(read))
        return read


def _site_name(value: str) -> tuple[str, str] | None:
    if value.replace("-", "").replace("_", "").isalnum():
        return None
    return (
        'must use only letters, digits, "-" or "_"',
        'rename it, e.g. id = "hospital-a" (the coordinator registers it by this name).',
    )


def _table_file(value: Path) -> tuple[str, str] | None:
    if value.suffix.lower() in (".csv", ".parquet"):
        return None
    return (
        "must name a .csv or .parquet file",
        "point it at the site's table; convert other formats to CSV or Parquet first.",
    )


def _web_url(value: str) -> tuple[str, str] | None:
    url = urlparse(value)
    if url.scheme in ("http", "https") and url.netloc:
        return None
    return (
        "must be an http:// or https:// URL",
        'write the full URL, e.g. webhook = "https://alerts.hospital.example/node".',
    )


def _at_most(value: int, highest: int, name: str) -> tuple[str, str] | None:
    if value <= highest:
        return None
    return (f"must be at most {highest}", f"set {name} to a whole number from 1 to {highest}.")


# The disclosure rules of the site (see the module docstring).
DEFAULT_MIN_CELL_SIZE = 5
LOWEST_MIN_CELL_SIZE = 3
DEFAULT_REPEATED_QUERY_LIMIT = 3
DEFAULT_ALLOWED_TASKS: tuple[str, ...] = (TRAIN, EVALUATE, ALL_QUERIES)

# The site's training policy (see the [training] keys): every size a coordinator picks
# is checked against these before any data is read or any privacy loss is computed.
DEFAULT_HOLDOUT_FRACTION = 0.25
DEFAULT_HOLDOUT_SEED = 43
DEFAULT_MIN_HOLDOUT_ROWS = 20
DEFAULT_EVALUATION_SHARE = 0.2
DEFAULT_NOISE_MULTIPLIER_RANGE = (0.5, 100.0)
DEFAULT_MAX_ROUNDS = 100
DEFAULT_MAX_LOCAL_EPOCHS = 10
DEFAULT_BATCH_SIZE_RANGE = (16.0, 4096.0)
DEFAULT_MAX_HIDDEN = 512
DEFAULT_MAX_GRAD_NORM_RANGE = (0.01, 10.0)
DEFAULT_LEARNING_RATE_RANGE = (0.0001, 10.0)
# Local tuning (task "tune"): every run trains a model here, so the site bounds the work
# a coordinator may ask for: how many candidates, and the mean of the random number of runs.
DEFAULT_MAX_TUNING_CANDIDATES = 16
DEFAULT_MAX_TUNING_RUNS = 10.0


def _at_most_half(value: float) -> tuple[str, str] | None:
    if value <= 0.5:
        return None
    return ("must be at most 0.5", "keep at least half for the rest: a number in (0, 0.5].")


SECTION_COMMENTS: dict[str, str] = {
    "processing": "What the site's records cannot know, for its record of processing (GDPR art. 30;\n"
    "`workbench budget report --art30 --node-toml node.toml`). All optional: a key left out is\n"
    "listed as not stated.",
    "training": "What a study may ask of this site. The held-out split, the outcomes and columns a study\n"
    "may use, and the limits on every size a coordinator picks are the site's: a request outside\n"
    "them is refused before any data is read, with the rule, the value and the fix.",
    "analytics": "Limits on what one analytics query may ask of this site. A query beyond them is\n"
    "refused before any data is read or any privacy loss computed, with the rule and the fix.",
    "alerts": "Where alerts go besides the audit log (refused requests, requests over a cap, a\n"
    "paused node being asked, repeated identical queries). Both optional.",
}

KEYS: tuple[NodeKey, ...] = (
    NodeKey(
        "site",
        "id",
        "text",
        field="site_id",
        rules=(_site_name,),
        comment='The name the coordinator knows this site by (letters, digits, "-", "_").',
        fix='name the site with letters, digits, "-" or "_", e.g. id = "hospital-a".',
    ),
    NodeKey(
        "site",
        "data",
        "path",
        field="data_path",
        rules=(_table_file,),
        comment="The site's table (CSV or Parquet). It is only ever read; no row leaves the site.",
        fix='give the site\'s data file (CSV or Parquet), e.g. data = "data/site.parquet".',
    ),
    NodeKey(
        "site",
        "dictionary",
        "path",
        field="dictionary_path",
        default=None,
        example='"data_dictionary.json"',
        comment="The data dictionary (column types, ranges, target) the table is checked against.\n"
        "Default: data_dictionary.json beside the data file.",
        fix='give the data dictionary file, e.g. dictionary = "data/data_dictionary.json", or remove the key.',
    ),
    NodeKey(
        "site",
        "dataset",
        "text",
        field="dataset",
        default=None,
        example='"{data_stem}"',
        comment="The dataset name the privacy ledger charges. Default: the data file's name without suffix.",
        fix='name the dataset the ledger charges, e.g. dataset = "cardiology", or remove the key.',
    ),
    NodeKey(
        "state",
        "dir",
        "path",
        field="state_dir",
        comment="Everything the node keeps: the privacy ledger (ledger.sqlite), the audit log\n"
        "(audit.jsonl), the pause switch (PAUSED), training plans and released answers.\n"
        "Back it up; never share it.",
        fix='give a folder for the ledger, audit log and caches, e.g. dir = "state".',
    ),
    NodeKey(
        "state",
        "checkpoint",
        "path",
        field="board_checkpoint",
        default=None,
        example='"/media/board/checkpoint.json"',
        comment="The ethics board's last checkpoint of the ledger (`workbench budget checkpoint --out`),\n"
        "kept outside the state folder. The node refuses to serve a ledger that is behind it.",
        fix='name the checkpoint JSON the board keeps, e.g. checkpoint = "/media/board/checkpoint.json", '
        "or remove the key.",
    ),
    NodeKey(
        "coordinator",
        "address",
        "address",
        field="coordinator_address",
        template=f"coordinator.example.org:{DEFAULT_FLEET_PORT}",
        comment='The coordinator\'s SuperLink Fleet API, "host:port", as the study team gave it.',
        fix="write the coordinator's Fleet API address as given by the study team, "
        f'e.g. address = "coordinator.example.org:{DEFAULT_FLEET_PORT}".',
    ),
    NodeKey(
        "coordinator",
        "ca_certificate",
        "path",
        field="ca_certificate",
        template=Path("ca.crt"),
        comment="The CA certificate the coordinator sent: the node trusts a SuperLink only if its\n"
        "TLS certificate is signed by this CA.",
        fix='name the CA certificate the coordinator sent you, e.g. ca_certificate = "ca.crt".',
    ),
    NodeKey(
        "node",
        "private_key",
        "path",
        field="node_private_key",
        template=Path("keys", "node_key"),
        comment="The node's private key (ECDSA P-384, OpenSSH format, mode 0600), made by\n"
        "`workbench node init`. Its public key, <private_key>.pub, is what the coordinator\n"
        "registers; the SuperLink accepts this node only with it.",
        fix='name the node\'s private key (made by `workbench node init`), e.g. private_key = "keys/node_key".',
    ),
    NodeKey(
        "node",
        "key_dir",
        "path",
        field="key_dir",
        default=None,
        template=Path("keys"),
        example='"keys"',
        comment="The key folder (mode 0700, outside the state folder): the privacy ledger's signing key\n"
        "(ledger.key) lives here, never beside the ledger, so whoever can write the state folder\n"
        "cannot sign a history of their own. Default: the folder of private_key.",
        fix='name a folder outside [state] dir, e.g. key_dir = "keys", or remove the key.',
    ),
    NodeKey(
        "node",
        "clientappio_address",
        "address",
        field="clientappio_address",
        default=DEFAULT_CLIENTAPPIO_ADDRESS,
        comment="Local address where the SuperNode hands tasks to the node's app (loopback only).",
        fix=f'use a free local port, e.g. clientappio_address = "{DEFAULT_CLIENTAPPIO_ADDRESS}".',
    ),
    NodeKey(
        "monitoring",
        "metrics",
        "address or off",
        field="metrics_address",
        default=DEFAULT_METRICS_ADDRESS,
        comment="Where the node serves its Prometheus metrics (requests served and refused, epsilon spent\n"
        'and remaining per project, ledger entries, last verifications, executor up): "host:port",\n'
        'loopback by default (only this machine can scrape it), or "off". Counts and budgets only: no\n'
        "data, no parameters, no reasons of refusals.",
        fix=f'write "host:port", e.g. metrics = "{DEFAULT_METRICS_ADDRESS}", or metrics = "off".',
    ),
    NodeKey(
        "processing",
        "controller",
        "text",
        field="processing_controller",
        default=None,
        example='"Hospital A, Data Protection, dataprotection@hospital-a.example"',
        comment="The controller: the hospital's name and contact, as its record of processing names it.",
        fix='write it as a quoted string, e.g. controller = "Hospital A, Data Protection, dataprotection@hospital-a.example", or remove the key.',
    ),
    NodeKey(
        "processing",
        "dpo",
        "text",
        field="processing_dpo",
        default=None,
        example='"dpo@hospital-a.example"',
        comment="The data protection officer's contact.",
        fix='write it as a quoted string, e.g. dpo = "dpo@hospital-a.example", or remove the key.',
    ),
    NodeKey(
        "processing",
        "data_subjects",
        "text",
        field="processing_data_subjects",
        default=None,
        example='"adult patients of the cardiology department, 2015-2024"',
        comment="The categories of data subjects whose rows the site holds.",
        fix='write it as a quoted string, e.g. data_subjects = "adult patients of the cardiology department, 2015-2024", or remove the key.',
    ),
    NodeKey(
        "processing",
        "data_categories",
        "text",
        field="processing_data_categories",
        default=None,
        example='"health data: diagnoses, laboratory values, age, sex"',
        comment="The categories of personal data in the site's table.",
        fix='write it as a quoted string, e.g. data_categories = "health data: diagnoses, laboratory values, age, sex", or remove the key.',
    ),
    NodeKey(
        "processing",
        "retention",
        "text",
        field="processing_retention",
        default=None,
        example='"the table is deleted 10 years after the study ends"',
        comment="The time limits for erasure of the data.",
        fix='write it as a quoted string, e.g. retention = "the table is deleted 10 years after the study ends", or remove the key.',
    ),
    NodeKey(
        "policy",
        "allowed_tasks",
        "task list",
        field="allowed_tasks",
        template=DEFAULT_ALLOWED_TASKS,
        comment='The tasks this site serves: "train", "evaluate", "query:<kind>" (count, sum, mean,\n'
        'variance, histogram, crosstab, quantiles, survival, ranges, cost) or "query:*" for\n'
        "every analytics query. Anything else is refused and recorded in the audit log.",
        fix=f'list what this site serves, e.g. allowed_tasks = ["train", "evaluate", "query:*"]; '
        f"the kinds are {_WORDS}.",
    ),
    NodeKey(
        "policy",
        "min_cell_size",
        "whole",
        field="min_cell_size",
        default=DEFAULT_MIN_CELL_SIZE,
        lowest=LOWEST_MIN_CELL_SIZE,
        comment="Smallest group (cell, stratum, filtered cohort) a released number may describe.\n"
        f"Never below {LOWEST_MIN_CELL_SIZE}.",
        fix=f"set min_cell_size = {DEFAULT_MIN_CELL_SIZE} (the workbench default) or any whole number "
        f"of at least {LOWEST_MIN_CELL_SIZE}.",
    ),
    NodeKey(
        "policy",
        "true_count_floor",
        "whole",
        field="true_count_floor",
        default=None,
        example="3",
        comment="Optional: also suppress cells whose TRUE count is below this floor (DataSHIELD uses 3).",
        fix="set a whole number of at least 1 (DataSHIELD uses 3), or remove the key.",
    ),
    NodeKey(
        "policy",
        "max_epsilon_per_request",
        "positive number",
        field="max_epsilon_per_request",
        default=None,
        example="1.0",
        comment="Optional: the most epsilon one request may cost at this site.",
        fix="set the most epsilon one request may cost, e.g. max_epsilon_per_request = 1.0, or remove the key.",
    ),
    NodeKey(
        "policy",
        "repeated_query_limit",
        "whole",
        field="repeated_query_limit",
        default=DEFAULT_REPEATED_QUERY_LIMIT,
        comment="Fresh answers to the same question allowed within 24 h before an alert is raised. A\n"
        "query is the same question whatever its epsilon, noise or label (same kind, columns,\n"
        "filter, bounds, bins and strata); free replays of a kept answer do not count. Other\n"
        "tasks: the same task with the same parameters.",
        fix="set how many identical requests may come before an alert, "
        f"e.g. repeated_query_limit = {DEFAULT_REPEATED_QUERY_LIMIT}.",
    ),
    NodeKey(
        "policy",
        "require_signed_requests",
        "flag",
        field="require_signed_requests",
        default=False,
        comment="Serve only requests a researcher signed (`workbench researcher init`) with a key this\n"
        "site's ethics board approved for the project (`workbench budget propose approve`): the\n"
        "site checks the signature, the approval, the expiry and that the request is not replayed\n"
        "before any work. `node init` writes true; a node.toml without the key (made before\n"
        "signed requests) reads false and serves unsigned requests (federation/THREAT_MODEL.md).",
        fix="write require_signed_requests = true (or false to serve unsigned requests).",
    ),
    NodeKey(
        "policy",
        "trusted_entities",
        "path",
        field="trusted_entities",
        default=None,
        example='"trusted_entities.yaml"',
        comment="Optional: the file of app-signing keys this site trusts (Flower --trusted-entities);\n"
        "the node then runs only app bundles signed by one of them. Only Flower's platform\n"
        "signs bundles: with a self-hosted coordinator (`flwr run`), a node that sets this\n"
        "refuses every study. Without it, the node's executor still runs only the\n"
        "workbench's own ClientApp, installed at this site.",
        fix="name the file of app-signing keys this site trusts, "
        'e.g. trusted_entities = "trusted_entities.yaml", or remove the key.',
    ),
    # --- [training]: every choice that shapes a training or evaluation release ---------
    NodeKey(
        "training",
        "holdout_fraction",
        "fraction",
        field="holdout_fraction",
        default=DEFAULT_HOLDOUT_FRACTION,
        rules=(_at_most_half,),
        comment="Share of the site's rows held out to evaluate every study's model (never trained on).\n"
        "The site's choice, never the coordinator's.",
        fix=f"set holdout_fraction = {DEFAULT_HOLDOUT_FRACTION} (the default) or any number in (0, 0.5].",
    ),
    NodeKey(
        "training",
        "holdout_seed",
        "whole",
        field="holdout_seed",
        default=DEFAULT_HOLDOUT_SEED,
        lowest=0,
        comment="Seed of the held-out split. `node init` writes a fresh random one: keep it private,\n"
        "so no coordinator can know which rows are held out.",
        fix="set a whole number of at least 0, e.g. holdout_seed = 918273.",
    ),
    NodeKey(
        "training",
        "min_holdout_rows",
        "whole",
        field="min_holdout_rows",
        default=DEFAULT_MIN_HOLDOUT_ROWS,
        lowest=LOWEST_MIN_CELL_SIZE,
        comment="Fewest held-out rows an evaluation may use; never below min_cell_size. A study on a\n"
        "smaller held-out split is refused before anything is computed.",
        fix=f"set min_holdout_rows = {DEFAULT_MIN_HOLDOUT_ROWS} (the default), at least min_cell_size.",
    ),
    NodeKey(
        "training",
        "split_column",
        "text",
        field="split_column",
        default=None,
        example='"split"',
        comment='Optional: a column of the table holding "train" or "test" that fixes the held-out\n'
        "split (e.g. a published benchmark's), instead of the seeded random one.",
        fix='name a column holding "train"/"test", e.g. split_column = "split", or remove the key.',
    ),
    NodeKey(
        "training",
        "allowed_targets",
        "column list",
        field="allowed_targets",
        default=None,
        example='["cardiac_event"]',
        comment="Optional: the outcomes a study may predict. Default: the column(s) the site's own\n"
        'data dictionary marks with role "target" (a site without one must list them here).',
        fix='list the outcome columns a study may predict, e.g. allowed_targets = ["cardiac_event"], '
        "or remove the key.",
    ),
    NodeKey(
        "training",
        "excluded_columns",
        "column list",
        field="excluded_columns",
        default=(),
        comment="Columns no study may use, as a feature or as its target.",
        fix='list column names, e.g. excluded_columns = ["hiv_status"], or [] for none.',
    ),
    NodeKey(
        "training",
        "evaluation_share",
        "fraction",
        field="evaluation_share",
        default=DEFAULT_EVALUATION_SHARE,
        rules=(_at_most_half,),
        comment="Share of a study's epsilon at this site that pays for its noisy evaluations and its\n"
        "one noisy row count (the FedAvg weight); DP-SGD gets the rest.",
        fix=f"set evaluation_share = {DEFAULT_EVALUATION_SHARE} (the default) or any number in (0, 0.5].",
    ),
    NodeKey(
        "training",
        "uncovered_releases",
        "whole",
        field="uncovered_releases",
        default=0,
        lowest=0,
        comment="Opt-in: how many exact numbers (no noise) one study run may also receive from this\n"
        "site: each round's training loss and each evaluation's exact metrics, each recorded in the\n"
        "ledger as an uncovered release and named in the privacy statement. 0: none (the default).",
        fix="set uncovered_releases = 0 (no release without noise) or a small whole number.",
    ),
    NodeKey(
        "training",
        "noise_multiplier_range",
        "range",
        field="noise_multiplier_range",
        default=DEFAULT_NOISE_MULTIPLIER_RANGE,
        comment="[least, most] DP-SGD noise multiplier this site calibrates to. A study that would need\n"
        "less noise uses the least (and spends less); one that needs more than the most is refused.",
        fix="set noise_multiplier_range = [0.5, 100.0] (the default): two positive numbers, low first.",
    ),
    NodeKey(
        "training",
        "max_rounds",
        "whole",
        field="max_rounds",
        default=DEFAULT_MAX_ROUNDS,
        comment="Most rounds one study may plan at this site.",
        fix=f"set max_rounds = {DEFAULT_MAX_ROUNDS} (the default) or another whole number of at least 1.",
    ),
    NodeKey(
        "training",
        "max_local_epochs",
        "whole",
        field="max_local_epochs",
        default=DEFAULT_MAX_LOCAL_EPOCHS,
        comment="Most passes over the site's training rows in one round.",
        fix=f"set max_local_epochs = {DEFAULT_MAX_LOCAL_EPOCHS} (the default) or another whole number.",
    ),
    NodeKey(
        "training",
        "batch_size_range",
        "range",
        field="batch_size_range",
        default=DEFAULT_BATCH_SIZE_RANGE,
        comment="[smallest, largest] expected batch size of a DP-SGD step.",
        fix="set batch_size_range = [16, 4096] (the default): two whole numbers, smallest first.",
    ),
    NodeKey(
        "training",
        "max_hidden",
        "whole",
        field="max_hidden",
        default=DEFAULT_MAX_HIDDEN,
        comment="Widest hidden layer a study's model may have (memory and time at the site).",
        fix=f"set max_hidden = {DEFAULT_MAX_HIDDEN} (the default) or another whole number.",
    ),
    NodeKey(
        "training",
        "max_grad_norm_range",
        "range",
        field="max_grad_norm_range",
        default=DEFAULT_MAX_GRAD_NORM_RANGE,
        comment="[least, most] per-patient clipping norm of a DP-SGD step.",
        fix="set max_grad_norm_range = [0.01, 10.0] (the default): two positive numbers, low first.",
    ),
    NodeKey(
        "training",
        "learning_rate_range",
        "range",
        field="learning_rate_range",
        default=DEFAULT_LEARNING_RATE_RANGE,
        comment="[least, most] learning rate of the site's local optimiser.",
        fix="set learning_rate_range = [0.0001, 10.0] (the default): two positive numbers, low first.",
    ),
    NodeKey(
        "training",
        "max_tuning_candidates",
        "whole",
        field="max_tuning_candidates",
        default=DEFAULT_MAX_TUNING_CANDIDATES,
        comment='Most candidate configurations one local tuning (task "tune") may ask this site to try.',
        fix=f"set max_tuning_candidates = {DEFAULT_MAX_TUNING_CANDIDATES} (the default) or another whole number.",
    ),
    NodeKey(
        "training",
        "max_tuning_runs",
        "positive number",
        field="max_tuning_runs",
        default=DEFAULT_MAX_TUNING_RUNS,
        comment="Largest expected number of training runs one local tuning may ask for (each run trains a\n"
        "model on this site's rows for all the study's rounds).",
        fix=f"set max_tuning_runs = {DEFAULT_MAX_TUNING_RUNS:g} (the default) or another positive number.",
    ),
    NodeKey(
        "analytics",
        "max_query_epsilon",
        "positive number",
        field="max_query_epsilon",
        default=analytics_limits.DEFAULT_MAX_QUERY_EPSILON,
        comment="The most epsilon one analytics query may ask for.",
        fix=f"set max_query_epsilon = {analytics_limits.DEFAULT_MAX_QUERY_EPSILON:g} (the default) or another "
        "positive number.",
    ),
    NodeKey(
        "analytics",
        "min_noise_multiplier",
        "positive number",
        field="min_noise_multiplier",
        default=analytics_limits.DEFAULT_MIN_NOISE_MULTIPLIER,
        comment="The least noise a query may state (noise per unit of sensitivity); also the least noise\n"
        "the site calibrates a query's epsilon to.",
        fix=f"set min_noise_multiplier = {analytics_limits.DEFAULT_MIN_NOISE_MULTIPLIER:g} (the default) or "
        "another positive number.",
    ),
    NodeKey(
        "analytics",
        "max_bins",
        "whole",
        field="max_bins",
        default=analytics_limits.DEFAULT_MAX_BINS,
        rules=(lambda value: _at_most(value, MAX_BINS, "max_bins"),),
        comment=f"Most bins of a histogram's, quantiles' or survival curve's grid (never above {MAX_BINS}).",
        fix=f"set max_bins = {analytics_limits.DEFAULT_MAX_BINS} (the default) or a whole number from 1 to {MAX_BINS}.",
    ),
    NodeKey(
        "analytics",
        "max_strata",
        "whole",
        field="max_strata",
        default=analytics_limits.DEFAULT_MAX_STRATA,
        comment="Most strata (combinations of the categories of a query's by columns) one query may ask for.",
        fix=f"set max_strata = {analytics_limits.DEFAULT_MAX_STRATA} (the default) or another whole number.",
    ),
    NodeKey(
        "analytics",
        "max_probabilities",
        "whole",
        field="max_probabilities",
        default=analytics_limits.DEFAULT_MAX_PROBABILITIES,
        comment="Most probabilities one quantiles query may ask for.",
        fix=f"set max_probabilities = {analytics_limits.DEFAULT_MAX_PROBABILITIES} (the default) or another "
        "whole number.",
    ),
    NodeKey(
        "alerts",
        "command",
        "text",
        field="alert_command",
        default=None,
        example='"/usr/local/bin/page-it-team"',
        comment="A shell command; it gets the alert as JSON on its standard input.",
        fix="give a shell command that reads the alert as JSON on stdin, or remove the key.",
    ),
    NodeKey(
        "alerts",
        "webhook",
        "text",
        field="alert_webhook",
        default=None,
        rules=(_web_url,),
        example='"https://alerts.hospital.example/node"',
        comment="An http(s) URL; the alert is POSTed to it as JSON.",
        fix='give an http(s) URL, e.g. webhook = "https://alerts.hospital.example/node", or remove the key.',
    ),
)

_ANNOTATIONS = {
    "text": "str",
    "path": "Path",
    "whole": "int",
    "positive number": "float",
    "address": "str",
    "address or off": "str",
    "task list": "tuple[str, ...]",
    "fraction": "float",
    "range": "tuple[float, float]",
    "column list": "tuple[str, ...]",
    "flag": "bool",
}


def dataclass_fields(keys: tuple[NodeKey, ...], *, defaults: bool) -> list[tuple]:
    """``dataclasses.make_dataclass`` fields for ``keys``: one per key, named by its field,
    with its default when ``defaults`` (keys without one first, as dataclasses require)."""
    specs = []
    for key in sorted(keys, key=lambda k: defaults and k.default is not REQUIRED):
        annotation = _ANNOTATIONS[key.type] + (" | None" if key.optional else "")
        if defaults and key.default is not REQUIRED:
            specs.append((key.field, annotation, field(default=key.default)))
        else:
            specs.append((key.field, annotation))
    return specs


POLICY_SECTIONS = ("policy", "training", "analytics", "alerts")  # keys of NodePolicy; the others are NodeConfig's
# Every section and its keys, in file order (anything else is refused).
LAYOUT: dict[str, tuple[str, ...]] = {}
for _key in KEYS:
    LAYOUT.setdefault(_key.section, ())
    LAYOUT[_key.section] += (_key.name,)
del _key
POLICY_KEYS: tuple[NodeKey, ...] = tuple(k for k in KEYS if k.section in POLICY_SECTIONS)
NODE_KEYS: tuple[NodeKey, ...] = tuple(k for k in KEYS if k.section not in POLICY_SECTIONS)
