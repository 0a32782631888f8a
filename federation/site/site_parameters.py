"""Parameters a site trains for itself and never sends: today, a per-site intercept.

With ``TrainingSpec.site_offset`` a site adds its own logit offset to the shared
model (``federation.training.models.SiteOffset``). The offset is trained in the same DP-SGD
steps as the shared weights, kept in the site's state folder between rounds of a
run, used in the site's evaluation, and never leaves the site.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from federation.protocol.spec import TrainingSpec
from federation.site.site_config import SiteConfig
from federation.training.models import SiteOffset


def offset_path(*, site: SiteConfig, spec: TrainingSpec) -> Path:
    """Where this run's offset lives in the site's state folder (one file per project and run)."""
    return site.state_dir / "site-parameters" / f"{spec.project}--{spec.run_id}--{site.dataset}.json"


def load_offset(*, site: SiteConfig, spec: TrainingSpec) -> float:
    """This run's offset at this site so far (0.0 before its first round)."""
    path = offset_path(site=site, spec=spec)
    return float(json.loads(path.read_text())["offset"]) if path.exists() else 0.0


def save_offset(*, site: SiteConfig, spec: TrainingSpec, offset: float) -> None:
    """Write the offset atomically (whole or absent)."""
    path = offset_path(site=site, spec=spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"offset": offset}))
    os.replace(tmp, path)  # whole or absent


def with_site_parameters(*, model: nn.Module, site: SiteConfig, spec: TrainingSpec) -> nn.Module:
    """The model the site trains and evaluates: ``model`` itself, or with its own offset."""
    if not spec.site_offset:
        return model
    return SiteOffset(shared=model, offset=load_offset(site=site, spec=spec))


def keep_site_parameters(
    *, state: dict[str, torch.Tensor], site: SiteConfig, spec: TrainingSpec
) -> dict[str, torch.Tensor]:
    """Store the site's own parameters from a trained state; return what may be sent."""
    if not spec.site_offset:
        return state
    save_offset(site=site, spec=spec, offset=float(state["offset"]))
    return {k.removeprefix("shared."): v for k, v in state.items() if k.startswith("shared.")}
