"""Reading a site's own table, validated against its own data dictionary."""

from __future__ import annotations

import json
from typing import Any

from datasets_synthetic import DataDictionary, load_site

from federation.features import FeatureEncoder, SiteArrays, prepare_site_arrays
from federation.node.site import SiteConfig
from federation.spec import TrainingSpec


def site_dictionary(*, site: SiteConfig, config: Any = None) -> DataDictionary:
    """The site's own data dictionary; without one, the study's (DP-found ranges)."""
    if site.dictionary_path.exists():
        return DataDictionary.load(site.dictionary_path)
    if config is not None and "study-dictionary" in config:
        return DataDictionary.from_json(json.loads(str(config["study-dictionary"])))
    raise FileNotFoundError(
        f"site {site.site_id} has no data dictionary at {site.dictionary_path} and the study sent "
        "none; write one (public ranges) or run the study with DP range finding."
    )


def site_arrays(
    *, site: SiteConfig, spec: TrainingSpec, encoder: FeatureEncoder, config: Any = None
) -> SiteArrays:
    """The site's train/test split, encoded with the study's public constants."""
    dictionary = site_dictionary(site=site, config=config)
    frame = load_site(path=site.data_path, dictionary=dictionary)
    return prepare_site_arrays(
        frame=frame,
        encoder=encoder,
        test_fraction=spec.test_fraction,
        seed=spec.split_seed,
        site_id=site.site_id,
        split_column=spec.split_column,
    )
