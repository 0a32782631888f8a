"""Released answers, kept at the site and replayed at no further cost.

Sending the same noisy answer again releases nothing new (it is post-processing of
a release already charged), so a replay costs no epsilon and writes no ledger entry;
it carries the signed receipts of the original release, which prove it was paid for.
Drawing fresh noise for a repeated question would instead let an analyst average the
noise away, and would be charged every time.

An answer is replayed only for exactly the same question, asked for the same project,
on the same data version, under the same disclosure rules and delta:

- the key hashes the query's canonical JSON, the project (a project does not receive
  answers released to another), the site's rules and its delta, and the data
  fingerprint (sha256 of the data file and its dictionary, ``SiteData.fingerprint``);
- when the fingerprint changes, every stored answer is dropped: changed data is answered
  afresh, and charged.

The store is a diskcache folder under the site's state folder (``SiteConfig.analytics_cache_dir``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache

from federation.analytics.disclosure import DisclosureRules
from federation.analytics.query import Query

_VERSION_KEY = "__data_version__"


@dataclass(frozen=True)
class CachedAnswer:
    release: str  # Release JSON text, exactly as first sent
    receipts: list[dict[str, Any]]
    released_at: str
    run_id: str | None
    noise_multiplier: float


class ReleaseCache:
    """One site's released answers; open it with ``with ReleaseCache(folder) as cache``."""

    def __init__(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(folder))

    def __enter__(self) -> ReleaseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cache.close()

    @staticmethod
    def key(*, query: Query, project: str, fingerprint: str, rules: DisclosureRules, delta: float) -> str:
        material = json.dumps(
            {
                "query": query.to_json(),
                "project": project,
                "data": fingerprint,
                "rules": rules.to_json(),
                "delta": delta,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def use_data_version(self, fingerprint: str) -> bool:
        """Drop every answer of another data version; True when some were dropped."""
        if self._cache.get(_VERSION_KEY) == fingerprint:
            return False
        dropped = len(self._cache) > 0
        self._cache.clear()
        self._cache.set(_VERSION_KEY, fingerprint)
        return dropped

    def data_version(self) -> str | None:
        """The fingerprint of the data the kept answers were released from (None: none yet)."""
        return self._cache.get(_VERSION_KEY)

    def get(self, key: str) -> CachedAnswer | None:
        value = self._cache.get(key)
        return None if value is None else CachedAnswer(**json.loads(value))

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def put(self, key: str, answer: CachedAnswer) -> None:
        self._cache.set(key, json.dumps(asdict(answer)))
