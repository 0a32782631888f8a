"""A Grid that collects replies as they arrive, and names the sites that never answer.

Flower 1.42's deployed Grid (flwr/superlink/grid/http_grid.py) waits a fixed 3 s
between pulls in ``send_and_receive``, so every exchange with the sites lasts a
multiple of 3 s even when they answer in 0.3 s; and when a node dies mid-round its
reply is simply missing at the timeout, so a study would go on without that site
and never say so. ``PromptGrid`` wraps any Grid and implements
``send_and_receive`` with the Grid's public ``push_messages`` and
``pull_messages``, pulling every ``poll_seconds`` (0.1 s); a message still unanswered at
the timeout gets an error reply naming the timeout, which the study loop reports
as a failed site (and stops). Everything else is delegated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.app.error import Error
from flwr.serverapp import Grid

NO_REPLY_CODE = 0  # flwr's ErrorCode.UNKNOWN: Flower has no code for "no reply"


class PromptGrid:
    def __init__(self, grid: Grid, *, poll_seconds: float = 0.1) -> None:
        self._grid = grid
        self.poll_seconds = poll_seconds

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        ids = list(self._grid.push_messages(messages))
        sent = dict(zip(ids, messages, strict=False))
        waiting = set(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            received = list(self._grid.pull_messages(waiting))
            replies.extend(received)
            waiting.difference_update(m.metadata.reply_to_message_id for m in received)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.poll_seconds)
        for message_id in sorted(waiting):
            original = sent[message_id]
            reason = (
                f"no reply from node {original.metadata.dst_node_id} within {timeout:.0f} s "
                "(the node stopped, lost its connection or is overloaded)"
            )
            replies.append(Message(Error(code=NO_REPLY_CODE, reason=reason), reply_to=original))
        return replies
