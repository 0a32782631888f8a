"""A curious coordinator's tools: the messages it may send, and what it may read back.

Every attack is a real Flower ``Message`` (with the metadata a SuperLink sets) handed to
the ClientApp a SuperNode runs, with the node config ``workbench node start`` passes
(so the site reads its own node.toml). ``leaks`` lists what a reply holds that it must
not: a value of the site's table, a path of the site, a number only the site knows.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, Metadata, RecordDict

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.coordinator.server_app import initial_arrays
from federation.protocol.spec import TrainingSpec
from federation.site.audit import audit_path, recent_entries
from federation.site.client_app import app
from federation.site.config import NodeConfig, load_node_config
from federation.training.features import FeatureEncoder
from privacy_budgets import Ledger

PROJECT = "cardio-study"
OTHER = "other-study"
DELTA = 1e-5
ENCODER = FeatureEncoder.from_dictionary(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)


@dataclass
class Site:
    toml: Path
    frame: pd.DataFrame
    root: Path

    @property
    def config(self) -> NodeConfig:
        return load_node_config(self.toml)

    def ask(self, message: Message) -> Message:
        """Hand ``message`` to the deployed ClientApp, as the SuperNode would."""
        context = Context(
            run_id=42, node_id=7, node_config=self.config.node_config_entries(), state=RecordDict(), run_config={}
        )
        return app(message, context)

    def ledger_entries(self) -> list:
        site = self.config.site_config()
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            return ledger.entries()

    def spent(self, project: str = PROJECT) -> float:
        site = self.config.site_config()
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            return ledger.spent(dataset=site.dataset, project=project)

    def audit(self) -> list[dict[str, Any]]:
        return [e for e in reversed(recent_entries(path=audit_path(self.config.state_dir))) if e["kind"] == "request"]


_COUNTER = iter(range(10**9))


def message(config: dict, *, message_type: str, arrays: ArrayRecord | None = None) -> Message:
    metadata = Metadata(
        run_id=42,
        message_id=f"m-{next(_COUNTER)}",
        src_node_id=1,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=600.0,
        message_type=message_type,
    )
    content = {"config": ConfigRecord(config)}
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=RecordDict(content), metadata=metadata)


def spec(**overrides: Any) -> TrainingSpec:
    values = dict(
        project=PROJECT,
        target_epsilon=1.0,
        rounds=3,
        model="logreg",
        batch_size=32,
        engine="vectorized",
        coordinator="curious-coordinator",
        run_id="run-1",
    )
    return TrainingSpec(**{**values, **overrides})


def study_message(
    kind: str,
    *,
    the_spec: TrainingSpec | None = None,
    server_round: int = 1,
    encoder: FeatureEncoder = ENCODER,
    arrays: ArrayRecord | None = None,
    extra: dict | None = None,
    **spec_overrides: Any,
) -> Message:
    """A train or evaluate message as a coordinator builds it (``extra``: raw config keys
    a hostile coordinator adds; ``spec_overrides``: fields of the spec)."""
    the_spec = the_spec or spec(**spec_overrides)
    config = {
        **the_spec.to_config(),
        "server-round": server_round,
        "feature-encoder": encoder.to_json(),
        **(extra or {}),
    }
    if arrays is None:
        arrays = initial_arrays(spec=the_spec, encoder=encoder)
    return message(config, message_type=MessageType.TRAIN if kind == "train" else MessageType.EVALUATE, arrays=arrays)


def refusal(reply: Message) -> dict[str, str]:
    assert "refusal" in reply.content, f"the site answered: {list(reply.content.keys())}"
    return dict(reply.content["refusal"])


def reply_text(reply: Message) -> str:
    """Everything a reply carries, as text."""
    parts = []
    for name, record in reply.content.items():
        if isinstance(record, ArrayRecord):
            continue
        parts.append(f"{name}: {json.dumps(dict(record), default=str)}")
    return "\n".join(parts)


def leaks(
    text: str, *, site: Site, columns: tuple[str, ...] = ("age", "systolic_bp", "cholesterol", "bmi")
) -> list[str]:
    """What ``text`` holds that belongs to the site alone: a path of the site, or a
    value of the table written as the data holds it (one decimal, e.g. '63.2')."""
    found = []
    for path in (str(site.root), str(site.config.state_dir), str(site.config.data_path)):
        if path in text:
            found.append(f"path {path}")
    numbers = set(re.findall(r"(?<![\d.])\d{2,3}\.\d(?!\d)", text))
    for column in columns:
        values = {f"{v:.1f}" for v in site.frame[column].dropna().unique()}
        hit = sorted(numbers & values)
        if hit:
            found.append(f"{column} values {hit[:5]}")
    return found


def set_key(path: Path, key: str, value: str) -> None:
    """Set ``key = value`` (TOML text) in a node.toml written by write_node_template,
    uncommenting the key's example line if needed (as a site's IT would edit it)."""
    text = path.read_text()
    pattern = re.compile(rf"^(# )?{re.escape(key)} = .*$", re.MULTILINE)
    assert len(pattern.findall(text)) == 1, f"{key} is not a unique key line of {path}"
    path.write_text(pattern.sub(lambda _: f"{key} = {value}", text))
