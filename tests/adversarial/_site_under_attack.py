"""A real hospital site for the adversarial tests of the analytics and the audit (issue 13):
a Parquet file with a planted patient whose values are distinctive, the data dictionary,
node.toml, a SQLite ledger with a cap and an allocation, and the audit log that serve()
writes. Attacks are played as the Flower messages a coordinator may send, into the site's
entry points (``serve`` and the ClientApp ``app``).

Its own module (fixtures are imported by the test files) so that it never collides with
another adversarial suite's conftest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, Metadata, RecordDict

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY, generate_hospitals
from federation.protocol.query_request import QueryRequest
from federation.site.audit import audit_path, recent_entries
from federation.site.client_app import app
from federation.site.config import NodeConfig, load_node_config, write_node_template
from federation.site.tasks import serve
from privacy_budgets import Ledger

PROJECT = "curious-study"
DELTA = 1e-5
# One planted patient whose values no refusal may ever repeat (the data's own values).
CANARY = {"age": 83.71, "bmi": 47.213, "cholesterol": 391.77, "systolic_bp": 211.9}
CANARY_TEXTS = ("83.71", "47.213", "391.77", "211.9")


@dataclass
class Site:
    toml: Path
    frame: pd.DataFrame
    root: Path

    @property
    def config(self) -> NodeConfig:
        return load_node_config(self.toml)

    @property
    def site(self):
        return self.config.site_config()

    @property
    def audit(self) -> Path:
        return audit_path(self.config.state_dir)

    def ledger_kinds(self) -> list[str]:
        with Ledger.open(self.site.ledger_path, site_id=self.site.site_id) as ledger:
            return [e.kind for e in ledger.entries()]

    def spent(self) -> float:
        with Ledger.open(self.site.ledger_path, site_id=self.site.site_id) as ledger:
            return ledger.spent(dataset=self.site.dataset, project=PROJECT)

    def requests(self) -> list[dict]:
        """The audit log's lines, oldest first."""
        return list(reversed(recent_entries(path=self.audit)))

    def set_policy(self, key: str, value: str) -> None:
        """Set ``key = value`` (TOML text) in node.toml, as the site's IT would."""
        import re

        text = self.toml.read_text()
        pattern = re.compile(rf"^(# )?{re.escape(key)} = .*$", re.MULTILINE)
        assert len(pattern.findall(text)) == 1, key
        self.toml.write_text(pattern.sub(lambda _: f"{key} = {value}", text))


@pytest.fixture(scope="module")
def hospitals():
    return generate_hospitals(sites=1, rows=400, seed=13)


@pytest.fixture
def site(tmp_path, hospitals) -> Site:
    """hospital_01 with the canary patient, a cap of 10 and an allocation of 3 for PROJECT."""
    data = tmp_path / "data"
    data.mkdir()
    frame = hospitals.sites["hospital_01"].copy()
    row = frame.iloc[[0]].copy()
    for column, value in CANARY.items():
        row[column] = value
    frame = pd.concat([frame, row], ignore_index=True)
    frame.to_parquet(data / "hospital_01.parquet", index=False)
    SYNTHETIC_HOSPITALS_DICTIONARY.save(data / "data_dictionary.json")
    root = tmp_path / "node"
    toml = root / "node.toml"
    write_node_template(
        path=toml,
        site_id="hospital-a",
        data_path=data / "hospital_01.parquet",
        state_dir=root / "state",
        coordinator_address="127.0.0.1:9092",
    )
    made = Site(toml=toml, frame=frame, root=tmp_path)
    config = made.site
    config.state_dir.mkdir(parents=True)
    with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
        ledger.set_cap(dataset=config.dataset, epsilon=10.0, delta=DELTA, actor="site IT", reason="test cap")
        ledger.allocate(dataset=config.dataset, project=PROJECT, epsilon=3.0, actor="board", reason="test")
    return made


def message(config: dict, *, message_id: str = "m-1") -> Message:
    """A query message as the SuperLink delivers it to the node."""
    metadata = Metadata(
        run_id=42,
        message_id=message_id,
        src_node_id=1,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=600.0,
        message_type=MessageType.QUERY,
    )
    return Message(content=RecordDict({"config": ConfigRecord(config)}), metadata=metadata)


def raw_query(kind: str, **fields) -> dict:
    """A query message's config with a query JSON written by hand: what a coordinator
    that does not use the workbench's Query class can send."""
    query = {
        "format": "workbench-analytics-query/1",
        "kind": kind,
        "column": None,
        "columns": [],
        "event": None,
        "bounds": None,
        "bins": [],
        "probabilities": [],
        "where": [],
        "by": [],
        "epsilon": None,
        "noise_multiplier": None,
        "mechanism": "gaussian",
        "min_cell_size": None,
    }
    query.update(fields)
    return {"query-kind": kind, "query": json.dumps(query), "project": PROJECT, "actor": "curious-coordinator"}


def request(query, *, run_id: str | None = None) -> dict:
    return QueryRequest(query=query, project=PROJECT, actor="curious-coordinator", run_id=run_id).to_config()


def ask(site: Site, config: dict, *, kind: str | None = None, message_id: str = "m-1") -> Message:
    """Through serve(): the site's one door (gate, handler, audit, alerts)."""
    kind = kind or f"query:{config['query-kind']}"
    return serve(kind=kind, msg=message(config, message_id=message_id), site=site.site, node_toml=site.toml)


def ask_client_app(site: Site, config: dict) -> Message:
    """Through the ClientApp a SuperNode runs, with the node config `node start` passes."""
    context = Context(
        run_id=42, node_id=7, node_config=site.config.node_config_entries(), state=RecordDict(), run_config={}
    )
    return app(message(config), context)


def refusal_of(reply: Message) -> dict:
    assert "refusal" in reply.content, f"expected a refusal, got {list(reply.content.keys())}"
    return dict(reply.content["refusal"])


def assert_tells_no_data(text: str, site: Site) -> None:
    """A refusal says what was refused, never what the data holds, nor where the site keeps it."""
    for value in CANARY_TEXTS:
        assert value not in text, f"a data value ({value}) in: {text}"
    assert str(site.root) not in text, f"a site path in: {text}"
