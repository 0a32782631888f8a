"""Synthetic hospitals with known ground truth, and the four UCI heart-disease sites.

Both are written as per-site folders that ``federation.data`` (the data dictionary,
the validating site loader) reads like any hospital's real data. Importing the
package is cheap: the submodules (and pandas/numpy behind them) load on first use
of a name.

>>> from datasets_synthetic import generate_hospitals, write_hospitals
>>> fed = generate_hospitals(sites=3, rows=500, seed=7)
>>> fed.dictionary.target
'cardiac_event'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "GroundTruth": "ground_truth",
    "SurvivalModel": "ground_truth",
    "SyntheticFederation": "generator",
    "generate_hospitals": "generator",
    "SYNTHETIC_HOSPITALS_DICTIONARY": "synthetic_dictionary",
    "write_hospitals": "write_synthetic",
    "UCI_HEART_DISEASE_DICTIONARY": "uci_heart_disease",
    "load_uci_heart_disease": "uci_heart_disease",
    "write_uci_sites": "uci_heart_disease",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datasets_synthetic' has no attribute '{name}'")
    value = getattr(import_module(f"datasets_synthetic.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from datasets_synthetic.generator import SyntheticFederation, generate_hospitals
    from datasets_synthetic.ground_truth import GroundTruth, SurvivalModel
    from datasets_synthetic.synthetic_dictionary import SYNTHETIC_HOSPITALS_DICTIONARY
    from datasets_synthetic.uci_heart_disease import (
        UCI_HEART_DISEASE_DICTIONARY,
        load_uci_heart_disease,
        write_uci_sites,
    )
    from datasets_synthetic.write_synthetic import write_hospitals
