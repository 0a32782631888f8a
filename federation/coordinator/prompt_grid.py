"""A Grid that collects replies as they arrive, names the sites that never answer, and
stops when the study is cancelled.

Flower 1.42's deployed Grid (flwr/superlink/grid/http_grid.py) waits a fixed 3 s
between pulls in ``send_and_receive``, so every exchange with the sites lasts a
multiple of 3 s even when they answer in 0.3 s; and when a node dies mid-round its
reply is simply missing at the timeout, so a study would go on without that site
and never say so. ``PromptGrid`` wraps any Grid and implements
``send_and_receive`` with the Grid's public ``push_messages`` and
``pull_messages``, pulling every ``poll_seconds`` (0.1 s); a message still unanswered at
the timeout gets an error reply naming the site and the timeout, which the study loop
reports as a failed site (and stops).

With a ``RunFolder`` it also keeps the run's journal (what was sent to which site, each
reply and its receipts, each reply that never came), the snapshot of what it waits for
(read by the workbench to say which site is late, and for how long), and checks between
pulls whether the run must stop (``should_stop``: a cancel, or no client following it):
then it raises ``RunCancelled``. Every message it sends lives only ``timeout`` seconds
in the SuperLink (its TTL): a node that comes back later is never handed a message the
coordinator stopped waiting for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Error, Message
from flwr.serverapp import Grid

from federation.coordinator.reply_check import REFUSED, REFUSED_CODE, SiteRegistry
from federation.errors import Cancelled
from federation.protocol.replies import REFUSAL_KEY, SITE_KEY

NO_REPLY_CODE = 0  # flwr's ErrorCode.UNKNOWN: Flower has no code for "no reply"
WAITING_REFRESH_SECONDS = 1.0  # how often the waiting snapshot is rewritten


class RunCancelled(Cancelled):
    """The run was told to stop (a cancel, a timeout, no client following it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def step_of(message: Message) -> tuple[str, str, int | None]:
    """(step label, task, round) of a message: "round 2 train", "train", 2."""
    task = str(message.metadata.message_type).split(".")[0]
    server_round = None
    try:
        config = message.content["config"] if "config" in message.content else {}
        server_round = int(config["server-round"]) if "server-round" in config else None
    except (KeyError, TypeError, ValueError):
        server_round = None
    label = f"round {server_round} {task}" if server_round is not None else task
    return label, task, server_round


def reply_event(reply: Message, *, site: str) -> dict[str, Any]:
    """A reply as the journal keeps it: status, refusal kind and reason, receipts."""
    if reply.has_error():
        return {"site": site, "status": "failed", "reason": reply.error.reason, "receipts": []}
    content = reply.content
    if REFUSAL_KEY in content:
        r = content[REFUSAL_KEY]
        return {"site": str(r["site-id"]), "status": "refused", "kind": str(r["kind"]), "reason": str(r["reason"])}
    receipts: list = []
    if SITE_KEY in content:
        record = content[SITE_KEY]
        site = str(record.get("site-id", site))
        try:
            receipts = json.loads(str(record.get("receipts", "[]")))
        except ValueError:
            receipts = []
        event = {"site": site, "status": "ok", "receipts": receipts}
        try:  # the site's newest signed audit head, for the mirror (head_mirror.py)
            event["audit_head"] = json.loads(str(record["audit-head"])) if "audit-head" in record else None
        except ValueError:
            event["audit_head"] = None
        return event
    return {"site": site, "status": "ok", "receipts": receipts}


class PromptGrid:
    def __init__(
        self,
        grid: Grid,
        *,
        poll_seconds: float = 0.1,
        site_names: dict[int, str] | None = None,
        journal: Any = None,
        should_stop: Callable[[], str | None] | None = None,
        registry: SiteRegistry | None = None,
    ) -> None:
        self._grid = grid
        self.poll_seconds = poll_seconds
        self.site_names = dict(site_names or {})
        self.journal = journal  # a RunFolder, or None
        self.should_stop = should_stop or (lambda: None)
        # Checks each reply's claimed site and receipts before they enter the journal (reply_check.py).
        self.registry = registry

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def site_name(self, node_id: int) -> str:
        return self.site_names.get(int(node_id), f"node {node_id}")

    def check_stop(self) -> None:
        reason = self.should_stop()
        if reason:
            raise RunCancelled(reason)

    def get_node_ids(self) -> Iterable[int]:
        self.check_stop()
        return self._grid.get_node_ids()

    def _journal(self, event: dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.journal(event)

    def _waiting(self, state: dict[str, Any] | None) -> None:
        if self.journal is not None:
            self.journal.write_waiting(state)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self.check_stop()
        if timeout is not None:
            for message in messages:
                message.metadata.ttl = float(timeout)  # the SuperLink drops it after that
        ids = list(self._grid.push_messages(messages))
        sent = dict(zip(ids, messages, strict=False))
        steps = {mid: step_of(m) for mid, m in sent.items()}
        started = time.time()
        for label in dict.fromkeys(s[0] for s in steps.values()):
            _, task, server_round = next(s for s in steps.values() if s[0] == label)
            sites = [self.site_name(sent[mid].metadata.dst_node_id) for mid in sent if steps[mid][0] == label]
            self._journal({"event": "sent", "step": label, "task": task, "round": server_round, "sites": sites})
        waiting = set(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        next_snapshot = 0.0
        try:
            while waiting:
                received = list(self._grid.pull_messages(waiting))
                for reply in received:
                    original = reply.metadata.reply_to_message_id
                    if original not in waiting:
                        continue
                    label, task, server_round = steps[original]
                    site = self.site_name(sent[original].metadata.dst_node_id)
                    if reply.has_error():
                        # Flower's own error replies (a message that expired, a node that went
                        # offline) come from the SuperLink: name the site they were for.
                        reply = Message(
                            Error(
                                code=reply.error.code,
                                reason=(
                                    f"site {site} did not answer {label}: {reply.error.reason} (its node stopped or "
                                    "lost its connection; the site may have spent budget on it: its ledger says)"
                                ),
                            ),
                            reply_to=sent[original],
                        )
                    elif self.registry is not None and (problem := self.registry.problem(reply)) is not None:
                        # A rogue node's reply, or forged receipts: dropped before the mirror sees them.
                        reply = Message(
                            Error(code=REFUSED_CODE, reason=f"{REFUSED}: {problem}"), reply_to=sent[original]
                        )
                    self._journal(
                        {"event": "reply", "step": label, "task": task, "round": server_round}
                        | reply_event(reply, site=site)
                    )
                    replies.append(reply)
                    waiting.discard(original)
                if not waiting or (deadline is not None and time.monotonic() >= deadline):
                    break
                self.check_stop()
                if time.monotonic() >= next_snapshot:
                    self._waiting(self._snapshot(waiting=waiting, sent=sent, steps=steps, since=started))
                    next_snapshot = time.monotonic() + WAITING_REFRESH_SECONDS
                time.sleep(self.poll_seconds)
        except RunCancelled as cancelled:
            for message_id in sorted(waiting):
                label, task, server_round = steps[message_id]
                site = self.site_name(sent[message_id].metadata.dst_node_id)
                self._journal(
                    {
                        "event": "no-reply",
                        "step": label,
                        "task": task,
                        "round": server_round,
                        "site": site,
                        "reason": f"cancelled while waiting: {cancelled.reason}",
                    }
                )
            raise
        finally:
            self._waiting(None)
        for message_id in sorted(waiting):
            original = sent[message_id]
            label, task, server_round = steps[message_id]
            site = self.site_name(original.metadata.dst_node_id)
            reason = (
                f"no reply from site {site} within {timeout:.0f} s to {label} (its node stopped, lost its "
                "connection or is overloaded; the site may have spent budget on it: its ledger says)"
            )
            self._journal(
                {
                    "event": "no-reply",
                    "step": label,
                    "task": task,
                    "round": server_round,
                    "site": site,
                    "reason": reason,
                }
            )
            replies.append(Message(Error(code=NO_REPLY_CODE, reason=reason), reply_to=original))
        return replies

    def _snapshot(
        self, *, waiting: set[str], sent: dict[str, Message], steps: dict[str, tuple], since: float
    ) -> dict[str, Any]:
        sites = {self.site_name(sent[mid].metadata.dst_node_id): steps[mid][0] for mid in waiting}
        answered = sorted({self.site_name(m.metadata.dst_node_id) for mid, m in sent.items() if mid not in waiting})
        return {"what": "reply", "since": since, "sites": sites, "answered": answered, "time": time.time()}

    def clear_waiting(self) -> None:
        self._waiting(None)

    def wait_snapshot(self, *, missing: list[str], connected: list[str], since: float) -> None:
        """While sites have not connected yet (study_loop.wait_for_sites)."""
        self._waiting(
            {
                "what": "connection",
                "since": since,
                "sites": dict.fromkeys(missing, "to connect"),
                "answered": connected,
                "time": time.time(),
            }
        )
