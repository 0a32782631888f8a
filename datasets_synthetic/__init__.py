"""Data for the workbench: data dictionaries, synthetic hospitals with known truth, site loaders.

Importing the package is cheap: the submodules (and pandas/numpy behind them)
load on first use of a name.

>>> from datasets_synthetic import generate_hospitals, write_hospitals, load_sites
>>> fed = generate_hospitals(sites=3, rows=500, seed=7)
>>> fed.dictionary.target
'cardiac_event'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "ColumnSpec": "dictionary",
    "DataDictionary": "dictionary",
    "DataDictionaryError": "errors",
    "DataValidationError": "errors",
    "GroundTruth": "ground_truth",
    "SurvivalModel": "ground_truth",
    "SyntheticFederation": "generator",
    "generate_hospitals": "generator",
    "SYNTHETIC_HOSPITALS_DICTIONARY": "synthetic_dictionary",
    "write_hospitals": "write_synthetic",
    "SiteData": "loader",
    "load_site": "loader",
    "load_site_data": "loader",
    "load_sites": "loader",
    "UnrangedSchema": "unranged",
    "UnrangedColumn": "unranged",
    "infer_schema_without_ranges": "unranged",
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
    from datasets_synthetic.dictionary import ColumnSpec, DataDictionary
    from datasets_synthetic.errors import DataDictionaryError, DataValidationError
    from datasets_synthetic.generator import SyntheticFederation, generate_hospitals
    from datasets_synthetic.ground_truth import GroundTruth, SurvivalModel
    from datasets_synthetic.loader import SiteData, load_site, load_site_data, load_sites
    from datasets_synthetic.synthetic_dictionary import SYNTHETIC_HOSPITALS_DICTIONARY
    from datasets_synthetic.uci_heart_disease import (
        UCI_HEART_DISEASE_DICTIONARY,
        load_uci_heart_disease,
        write_uci_sites,
    )
    from datasets_synthetic.unranged import UnrangedColumn, UnrangedSchema, infer_schema_without_ranges
    from datasets_synthetic.write_synthetic import write_hospitals
