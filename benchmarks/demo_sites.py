"""The demo's synthetic hospitals as workbench sites (data files, dictionary, capped
ledgers), set up as ``Workbench.simulate`` does, for the benchmarks that time studies."""

from __future__ import annotations

from pathlib import Path

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.data.dictionary import DataDictionary
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import Ledger

SITE_CAP = 10.0  # the demo's lifetime cap per hospital
DELTA = 1e-5


def demo_sites(
    *,
    workdir: Path,
    sites: int,
    rows: int,
    projects: dict[str, float],
    seed: int = 7,
    size_spread: float = 0.6,
    cap: float = SITE_CAP,
) -> tuple[list[SiteConfig], FeatureEncoder]:
    """``sites`` synthetic hospitals averaging ``rows`` patients under ``workdir``, each
    with a capped ledger and an allocation for each of ``projects`` (name -> epsilon),
    as ``Workbench.simulate`` and ``train`` set them; and the study's feature encoder."""
    data = write_hospitals(
        generate_hospitals(sites=sites, rows=rows, seed=seed, size_spread=size_spread), out=Path(workdir) / "data"
    )
    dictionary_path = data / "data_dictionary.json"
    configs = []
    for path in sorted(data.glob("*.parquet")):
        site = SiteConfig(
            site_id=path.stem,
            data_path=path,
            state_dir=Path(workdir) / "sites" / path.stem,
            dictionary_path=dictionary_path,
        )
        site.state_dir.mkdir(parents=True, exist_ok=True)
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            ledger.set_cap(
                dataset=site.dataset,
                epsilon=cap,
                delta=DELTA,
                actor="benchmark-it",
                reason="lifetime cap of a simulated hospital (benchmark)",
            )
            for project, epsilon in projects.items():
                ledger.allocate(
                    dataset=site.dataset,
                    project=project,
                    epsilon=epsilon,
                    actor="benchmark-board",
                    reason=f"allocation for study {project}",
                )
        configs.append(site)
    return configs, FeatureEncoder.from_dictionary(dictionary=DataDictionary.load(dictionary_path))
