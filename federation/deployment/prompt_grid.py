"""A Grid that collects replies as they arrive instead of every 3 seconds.

Flower 1.42's deployed Grid (flwr/superlink/grid/http_grid.py) waits a fixed 3 s
between pulls in ``send_and_receive``, so every exchange with the sites lasts a
multiple of 3 s even when they answer in 0.3 s. ``PromptGrid`` wraps any Grid
and implements ``send_and_receive`` with the Grid's public ``push_messages`` and
``pull_messages``, pulling every ``poll_seconds``; everything else is delegated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


class PromptGrid:
    def __init__(self, grid: Grid, *, poll_seconds: float = 0.05) -> None:
        self._grid = grid
        self.poll_seconds = poll_seconds

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        waiting = set(self._grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            received = list(self._grid.pull_messages(waiting))
            replies.extend(received)
            waiting.difference_update(m.metadata.reply_to_message_id for m in received)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.poll_seconds)
        return replies
