"""A site's ledger, kept open between the messages one process serves.

Opening a ledger reads its key and checks its identity; closing the last connection
to a WAL database checkpoints it (more fsyncs). A simulated site's actor serves a
train and an evaluate message every round, so it keeps the ledger open instead.
Every entry is still committed with a full sync before the handler goes on, and
other processes may write the same file meanwhile (SQLite's locking and the
ledger's head check cover that, as for any long-lived node). A file deleted or
replaced since it was opened is opened again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from privacy_budgets import Ledger

from federation.node.site import SiteConfig

_OPEN: OrderedDict[tuple[str, str], tuple[Ledger, tuple[int, int] | None]] = OrderedDict()
_POOL_SIZE = 16  # ledgers one process keeps open at once (least recently used closed first)


def _identity(path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _close(key: tuple[str, str]) -> None:
    ledger, _ = _OPEN.pop(key)
    ledger.close()


@contextmanager
def site_ledger(site: SiteConfig) -> Iterator[Ledger]:
    """``Ledger.open(site.ledger_path, site_id=site.site_id)``, reused while the file is the same."""
    key = (str(site.ledger_path.resolve()), site.site_id)
    if key in _OPEN and _OPEN[key][1] != _identity(site.ledger_path):
        _close(key)
    if key not in _OPEN:
        ledger = Ledger.open(site.ledger_path, site_id=site.site_id)
        _OPEN[key] = (ledger, _identity(site.ledger_path))
        while len(_OPEN) > _POOL_SIZE:
            _close(next(iter(_OPEN)))
    _OPEN.move_to_end(key)
    yield _OPEN[key][0]


def close_all() -> None:
    """Close every kept ledger (tests; a process about to end)."""
    for key in list(_OPEN):
        _close(key)
