"""Reading a site's own table, validated against its own data dictionary.

A site answers a train and an evaluate message every round from the same file. In
a long-lived process (a simulated site's actor) the encoded arrays are kept between
messages, keyed by everything they depend on: the data file's identity (path, size,
modification time), the dictionary used, the study's encoder and the site's split. A
changed file is read and validated again. A fresh process per message (deployment)
reads it every time, as before.

The held-out split is the site's own (node.toml [training]: holdout_fraction,
holdout_seed, split_column): no value of a request chooses it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from federation.data.dictionary import DataDictionary
from federation.data.loader import load_site
from federation.errors import InternalFault
from federation.site.config import NodePolicy
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder, SiteArrays, prepare_site_arrays

_CACHE: OrderedDict[tuple, SiteArrays] = OrderedDict()
_CACHE_SIZE = 4  # sites (or splits) a process keeps encoded at once


class SiteDataMissing(InternalFault, FileNotFoundError):
    """A running node's data file is gone (moved, renamed, an unmounted disk)."""


def check_data_file(site: SiteConfig) -> None:
    """SiteDataMissing, naming the file and the fix, when the site's table is not there."""
    if not Path(site.data_path).is_file():
        raise SiteDataMissing(
            f"site {site.site_id}'s data file {site.data_path} is missing ([site] data in its node.toml): the "
            "node runs, but serves nothing that reads the data until the file is back. Fix: restore the file "
            "(or mount its disk), or correct [site] data; then run `workbench node check --config node.toml`."
        )


def site_dictionary(*, site: SiteConfig, config: Any = None) -> DataDictionary:
    """The site's own data dictionary; without one, the study's (DP-found ranges)."""
    check_data_file(site)  # a data folder that vanished would read as a missing dictionary
    if site.dictionary_path.exists():
        return DataDictionary.load(site.dictionary_path)
    if config is not None and "study-dictionary" in config:
        return DataDictionary.from_json(json.loads(str(config["study-dictionary"])))
    raise FileNotFoundError(
        f"site {site.site_id} has no data dictionary at {site.dictionary_path} and the study sent "
        "none; write one (public ranges) or run the study with DP range finding."
    )


def own_dictionary(site: SiteConfig) -> DataDictionary | None:
    """The site's own data dictionary, or None when it has none (then its policy lists
    the outcomes a study may predict)."""
    return DataDictionary.load(site.dictionary_path) if site.dictionary_path.exists() else None


def _file_identity(path: Path) -> tuple:
    stat = Path(path).stat()
    return (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def _cache_key(*, site: SiteConfig, policy: NodePolicy, encoder: FeatureEncoder, config: Any) -> tuple:
    if site.dictionary_path.exists():
        dictionary = _file_identity(site.dictionary_path)
    else:
        dictionary = str(config["study-dictionary"]) if config is not None and "study-dictionary" in config else None
    return (
        site.site_id,
        _file_identity(site.data_path),
        dictionary,
        encoder.to_json(),
        policy.holdout_fraction,
        policy.holdout_seed,
        policy.split_column,
    )


def site_arrays(*, site: SiteConfig, policy: NodePolicy, encoder: FeatureEncoder, config: Any = None) -> SiteArrays:
    """The site's train/test split (its policy's), encoded with the study's public constants."""
    check_data_file(site)
    key = _cache_key(site=site, policy=policy, encoder=encoder, config=config)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    dictionary = site_dictionary(site=site, config=config)
    frame = load_site(path=site.data_path, dictionary=dictionary)
    # Shared between messages: the handlers only read them (torch.from_numpy warns
    # on read-only arrays, so they are not flagged as such).
    arrays = prepare_site_arrays(
        frame=frame,
        encoder=encoder,
        test_fraction=policy.holdout_fraction,
        seed=policy.holdout_seed,
        site_id=site.site_id,
        split_column=policy.split_column or "",
    )
    _CACHE[key] = arrays
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return arrays
