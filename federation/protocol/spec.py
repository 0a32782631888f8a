"""A training study as the coordinator asks for it and every site reads it.

The spec travels in each Flower message as a ConfigRecord (flat, kebab-case keys,
as Flower's run config). A site recomputes every privacy number from it and from
its own data; it never trusts a figure the coordinator computed. Every size in it is
checked again at each site against that site's own limits (node.toml [training],
federation/site/training_limits.py).

What shapes a release but belongs to the site is not part of the spec at all: the
held-out split (its fraction, seed, minimum size, or a fixed split column). A spec or
a message that tries to set it is refused (``SITE_OWNED``).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from federation.errors import BadInput

Strategy = Literal["fedavg", "fedadam", "fedyogi"]
GradSampleMode = Literal["hooks", "ghost", "functorch"]

MODELS = ("mlp", "logreg")
STRATEGIES = ("fedavg", "fedadam", "fedyogi")


class SpecError(BadInput, ValueError):
    """A study parameter outside its allowed range."""


class SiteOwnedParameter(BadInput, TypeError):
    """A study tried to set what each site decides for itself (its held-out split)."""


# What a coordinator used to choose and now never may: name -> the site's own key.
SITE_OWNED: dict[str, str] = {
    "test_fraction": "holdout_fraction",
    "split_seed": "holdout_seed",
    "split_column": "split_column",
}
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def refuse_site_owned(names: Any) -> None:
    """Raise SiteOwnedParameter when ``names`` (keyword names or spec fields) holds one
    of ``SITE_OWNED``: the held-out split is each site's, set in its node.toml."""
    owned = [n for n in names if n in SITE_OWNED]
    if owned:
        keys = ", ".join(f"{n} (the site's [training] {SITE_OWNED[n]})" for n in owned)
        raise SiteOwnedParameter(
            f"a study may not set {keys}: each site chooses its own held-out split, so no coordinator "
            "can pick which patients an evaluation describes. Fix: leave it out; a hospital sets it in its "
            "node.toml, a simulation with Workbench.simulate(site_policy={...})."
        )


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a site needs to run its part of a private federated training.

    ``target_epsilon`` is each site's total for the whole study under this project
    (what the project already spent at the site, range finding included, counts
    towards it). Noise is calibrated once for all planned rounds at each site's own
    sampling rate; each round charges the steps that actually ran.
    """

    project: str
    target_epsilon: float
    rounds: int
    delta: float = 1e-5
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    model: str = "mlp"
    hidden: int = 32
    local_epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 2.0
    momentum: float = 0.5
    max_grad_norm: float = 1.0
    strategy: str = "fedavg"
    server_learning_rate: float = 0.05
    init_seed: int = 43  # the coordinator's seed for the starting model (public information only)
    grad_sample_mode: str = "hooks"
    engine: str = "opacus"  # or "vectorized": same mechanism, see federation/training/fast_dp_sgd.py
    coordinator: str = "coordinator"
    # Opt-in: each site also trains its own intercept, kept at the site (never sent).
    site_offset: bool = False

    def __post_init__(self) -> None:
        _require(
            bool(self.project) and self.project.replace("-", "").replace("_", "").isalnum(),
            "project",
            self.project,
            "a name of letters, digits, '-' or '_', e.g. 'quickstart'",
        )
        _require(
            _finite(self.target_epsilon) and self.target_epsilon > 0,
            "target_epsilon",
            self.target_epsilon,
            "a positive number, e.g. 1.0 (each site's total for the study)",
        )
        _require(
            _finite(self.delta) and 0 < self.delta < 1,
            "delta",
            self.delta,
            "a probability well below 1 / (patients per site), e.g. 1e-5",
        )
        _require(
            isinstance(self.run_id, str) and RUN_ID.fullmatch(self.run_id) is not None,
            "run_id",
            self.run_id,
            "1 to 64 letters, digits, '-' or '_', starting with a letter or digit (it names files at each site)",
        )
        _require(_whole(self.rounds) and self.rounds >= 1, "rounds", self.rounds, "a whole number >= 1")
        _require(self.model in MODELS, "model", self.model, f"one of {', '.join(MODELS)}")
        _require(_whole(self.hidden) and self.hidden >= 1, "hidden", self.hidden, "a whole number >= 1")
        _require(
            _whole(self.local_epochs) and self.local_epochs >= 1,
            "local_epochs",
            self.local_epochs,
            "a whole number >= 1",
        )
        _require(
            _whole(self.batch_size) and self.batch_size >= 1,
            "batch_size",
            self.batch_size,
            "a whole number >= 1 (the expected Poisson batch size)",
        )
        _require(
            _finite(self.learning_rate) and self.learning_rate > 0,
            "learning_rate",
            self.learning_rate,
            "a positive number",
        )
        _require(_finite(self.momentum) and 0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _require(
            _finite(self.max_grad_norm) and self.max_grad_norm > 0,
            "max_grad_norm",
            self.max_grad_norm,
            "a positive clipping norm, e.g. 1.0",
        )
        _require(self.strategy in STRATEGIES, "strategy", self.strategy, f"one of {', '.join(STRATEGIES)}")
        _require(
            _finite(self.server_learning_rate) and self.server_learning_rate > 0,
            "server_learning_rate",
            self.server_learning_rate,
            "a positive number",
        )
        _require(_whole(self.init_seed), "init_seed", self.init_seed, "a whole number (the starting model's seed)")
        # Opacus's "ew" mode is left out: it crashes on an empty Poisson batch.
        _require(
            self.grad_sample_mode in ("hooks", "ghost", "functorch"),
            "grad_sample_mode",
            self.grad_sample_mode,
            "one of hooks, ghost, functorch (Opacus's modes)",
        )
        _require(
            self.engine in ("opacus", "vectorized"),
            "engine",
            self.engine,
            "'opacus' (the reference) or 'vectorized' (the same DP-SGD, faster on small models)",
        )
        _require(isinstance(self.site_offset, bool), "site_offset", self.site_offset, "True or False")
        _require(
            not self.site_offset or self.engine == "vectorized",
            "engine",
            self.engine,
            "'vectorized' when site_offset is on (Opacus's hooks cannot train a bare offset parameter)",
        )

    def to_config(self) -> dict[str, Any]:
        """Flat kebab-case dict for a Flower ConfigRecord."""
        return {f"spec-{k.replace('_', '-')}": v for k, v in asdict(self).items()}

    @classmethod
    def from_config(cls, config: Any) -> TrainingSpec:
        """Read a spec back from a ConfigRecord (or any mapping); unknown keys are ignored,
        but one that sets a site's own choice (``SITE_OWNED``) is refused."""
        names = {f.name for f in fields(cls)}
        values = {}
        sent = []
        for key, value in dict(config).items():
            if key.startswith("spec-"):
                name = key[len("spec-") :].replace("-", "_")
                sent.append(name)
                if name in names:
                    values[name] = value
        refuse_site_owned(sent)
        return cls(**values)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, name: str, value: Any, fix: str) -> None:
    if not ok:
        raise SpecError(f"{name} must be {fix}; got {value!r}.")
