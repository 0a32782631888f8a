"""The node's kill switch: a ``PAUSED`` file in its state folder.

While the file exists the node refuses every task (kind "paused") and says why.
A file is the switch, not a setting in node.toml, so that it works at once, across
every ClientApp process Flower starts, without restarting the node. An unreadable
file still pauses the node: a switch meant to stop data use must fail closed.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from federation.site.audit import utc_now

PAUSE_FILE = "PAUSED"


@dataclass(frozen=True)
class PauseState:
    """Why the node is paused, who paused it and when (UTC, ISO 8601)."""

    reason: str
    who: str
    when: str

    def describe(self) -> str:
        return f"paused since {self.when} by {self.who}: {self.reason}"


def pause_path(state_dir: Path) -> Path:
    return Path(state_dir) / PAUSE_FILE


def default_operator() -> str:
    """Who is at the keyboard, as ``user@host`` (recorded with a pause or resume)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def pause_node(*, state_dir: Path, reason: str, who: str | None = None) -> PauseState:
    """Pause the node (atomically); pausing a paused node replaces the reason."""
    reason = " ".join(str(reason).split())
    if not reason:
        raise ValueError("a pause needs a reason (--reason TEXT): it is shown to every coordinator refused.")
    state = PauseState(reason=reason, who=who or default_operator(), when=utc_now())
    target = pause_path(state_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{PAUSE_FILE}.partial")
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)  # a reader sees the old state or the new one, never half
    return state


def resume_node(*, state_dir: Path) -> PauseState | None:
    """Lift the pause; returns the pause that was lifted (None if the node was not paused)."""
    state = read_pause(state_dir=state_dir)
    try:
        pause_path(state_dir).unlink()
    except FileNotFoundError:
        return None
    return state


def read_pause(*, state_dir: Path) -> PauseState | None:
    """The node's pause, or None when it runs. An unreadable PAUSED file still pauses."""
    path = pause_path(state_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        return PauseState(reason=f"the pause file {path} could not be read ({err})", who="unknown", when="unknown")
    try:
        data = json.loads(raw)
        return PauseState(reason=str(data["reason"]), who=str(data["who"]), when=str(data["when"]))
    except (ValueError, KeyError, TypeError):
        return PauseState(
            reason=f"the pause file {path} is not in the expected form; "
            "remove it with `workbench node resume` once the site agrees",
            who="unknown",
            when="unknown",
        )
