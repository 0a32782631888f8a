"""Reading a site's own table, validated against its own data dictionary."""

from __future__ import annotations

from datasets_synthetic import DataDictionary, load_site

from federation.features import FeatureEncoder, SiteArrays, prepare_site_arrays
from federation.node.site import SiteConfig
from federation.spec import TrainingSpec


def site_arrays(*, site: SiteConfig, spec: TrainingSpec, encoder: FeatureEncoder) -> SiteArrays:
    """The site's train/test split, encoded with the study's public constants."""
    dictionary = DataDictionary.load(site.dictionary_path)
    frame = load_site(path=site.data_path, dictionary=dictionary)
    return prepare_site_arrays(
        frame=frame,
        encoder=encoder,
        test_fraction=spec.test_fraction,
        seed=spec.split_seed,
        site_id=site.site_id,
    )
