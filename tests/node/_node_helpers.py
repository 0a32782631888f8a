"""Helpers of the node tests (a module of its own: conftest names are not unique)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, Metadata, RecordDict

PROJECT = "cardio-study"
DELTA = 1e-5


def received(config: dict, *, message_type: str = MessageType.QUERY, arrays: ArrayRecord | None = None,
             src_node_id: int = 1, message_id: str = "m-1") -> Message:
    """A message as a site receives it from the SuperLink (a real Flower Message, with
    the metadata the SuperLink would have set)."""
    metadata = Metadata(run_id=42, message_id=message_id, src_node_id=src_node_id, dst_node_id=7,
                        reply_to_message_id="", group_id="", created_at=time.time(), ttl=600.0,
                        message_type=message_type)
    content = {"config": ConfigRecord(config)}
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=RecordDict(content), metadata=metadata)


def set_key(path: Path, key: str, value: str) -> None:
    """Set ``key = value`` (TOML text) in a node.toml written by write_node_template,
    uncommenting the key's example line if needed."""
    text = path.read_text()
    pattern = re.compile(rf"^(# )?{re.escape(key)} = .*$", re.MULTILINE)
    assert len(pattern.findall(text)) == 1, f"{key} is not a unique key line of {path}"
    path.write_text(pattern.sub(lambda _: f"{key} = {value}", text))


def remove_key(path: Path, key: str) -> None:
    text = path.read_text()
    pattern = re.compile(rf"^{re.escape(key)} = .*\n", re.MULTILINE)
    assert len(pattern.findall(text)) == 1
    path.write_text(pattern.sub("", text))
