"""Turning a site's table into model inputs with public constants only.

Scaling uses the ranges of the data dictionary (public clinical knowledge) or ranges
released by a charged DP query; never a mean, standard deviation, minimum or maximum
read from a site's raw data, which no privacy guarantee would cover.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FeatureSpec:
    """One input column and the public constants used to encode it."""

    name: str
    kind: str  # numeric | integer | binary | categorical
    low: float | None = None
    high: float | None = None
    fill: float | None = None
    categories: tuple[Any, ...] | None = None
    missing_indicator: bool = False

    def width(self) -> int:
        if self.kind == "categorical":
            return len(self.categories or ())
        return 1 + int(self.missing_indicator)


@dataclass(frozen=True)
class FeatureEncoder:
    """Encodes a site's frame the same way at every site and at the coordinator.

    >>> enc = FeatureEncoder(target="y", features=(FeatureSpec("age", "numeric", 20, 80, 50),))
    >>> enc.encode(pd.DataFrame({"age": [20.0, 80.0, 140.0, None]})).ravel().tolist()
    [0.0, 1.0, 1.0, 0.5]
    """

    target: str
    features: tuple[FeatureSpec, ...]

    @classmethod
    def from_dictionary(
        cls, *, dictionary: Any, ranges: dict[str, tuple[float, float]] | None = None
    ) -> FeatureEncoder:
        """Build from a ``federation.data.dictionary.DataDictionary`` (ranges may be overridden
        by DP-released ones)."""
        if dictionary.target is None:
            raise ValueError(
                f"data dictionary {dictionary.name!r} names no target column (role 'target'); "
                "mark the outcome to predict with role 'target'."
            )
        specs = []
        for name in dictionary.feature_columns:
            col = dictionary.column(name)
            low, high = (ranges or {}).get(name, (col.minimum, col.maximum))
            fill = col.fill
            if fill is None and col.kind in ("numeric", "integer") and low is not None:
                fill = (low + high) / 2
            specs.append(
                FeatureSpec(
                    name=name,
                    kind=col.kind,
                    low=None if low is None else float(low),
                    high=None if high is None else float(high),
                    fill=None if fill is None else float(fill),
                    categories=tuple(col.categories) if col.categories else None,
                    missing_indicator=col.missing == "allowed" and col.kind != "categorical",
                )
            )
        return cls(target=dictionary.target, features=tuple(specs))

    @property
    def n_features(self) -> int:
        return sum(f.width() for f in self.features)

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for f in self.features:
            if f.kind == "categorical":
                names += [f"{f.name}={c}" for c in f.categories or ()]
            else:
                names.append(f.name)
                if f.missing_indicator:
                    names.append(f"{f.name} missing")
        return names

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """A float32 matrix, one row per patient, values in [0, 1]."""
        columns: list[np.ndarray] = []
        for f in self.features:
            if f.name not in frame.columns:
                raise KeyError(
                    f"column {f.name!r} is in the study's feature list but not in this "
                    f"site's data (has: {', '.join(map(str, frame.columns))})."
                )
            raw = frame[f.name]
            if f.kind == "categorical":
                values = raw.astype(object)
                for category in f.categories or ():
                    columns.append((values == category).to_numpy(dtype=np.float32))
                continue
            x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            missing = np.isnan(x)
            x = np.where(missing, f.fill if f.fill is not None else 0.0, x)
            if f.kind in ("numeric", "integer"):
                span = (f.high - f.low) or 1.0
                x = (np.clip(x, f.low, f.high) - f.low) / span
            columns.append(x.astype(np.float32))
            if f.missing_indicator:
                columns.append(missing.astype(np.float32))
        return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0), np.float32)

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        return pd.to_numeric(frame[self.target], errors="coerce").to_numpy(dtype=np.float32)

    def to_json(self) -> str:
        return json.dumps({"target": self.target, "features": [asdict(f) for f in self.features]}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureEncoder:
        data = json.loads(text)
        return cls(
            target=data["target"],
            features=tuple(
                FeatureSpec(**{**f, "categories": tuple(f["categories"]) if f["categories"] else None})
                for f in data["features"]
            ),
        )


def split_indices(*, n_rows: int, test_fraction: float, seed: int, site_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A site's train/test split: deterministic for (seed, site), independent of values."""
    site_salt = int.from_bytes(hashlib.sha256(site_id.encode()).digest()[:4], "little")
    order = np.random.default_rng([seed, site_salt]).permutation(n_rows)
    n_test = max(1, int(round(n_rows * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass(frozen=True)
class SiteArrays:
    """A site's encoded train and test splits (rows without a label are left out)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def prepare_site_arrays(
    *,
    frame: pd.DataFrame,
    encoder: FeatureEncoder,
    test_fraction: float,
    seed: int,
    site_id: str,
    split_column: str = "",
) -> SiteArrays:
    """Encode and split; ``split_column`` (values "train"/"test") fixes the split instead
    of the seeded random one."""
    y = encoder.labels(frame)
    keep = ~np.isnan(y)
    x, y = encoder.encode(frame)[keep], y[keep]
    if split_column:
        train, test = fixed_split(frame=frame[keep], column=split_column, site_id=site_id)
    else:
        train, test = split_indices(n_rows=len(y), test_fraction=test_fraction, seed=seed, site_id=site_id)
    return SiteArrays(x[train], y[train], x[test], y[test])


def fixed_split(*, frame: pd.DataFrame, column: str, site_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Row positions marked "train" and "test" in ``column`` of a site's table."""
    if column not in frame.columns:
        raise KeyError(
            f"the study splits rows by column {column!r}, which site {site_id}'s data lacks; "
            "add it (values 'train'/'test') or run without split_column."
        )
    values = frame[column].astype(str).to_numpy()
    bad = sorted(set(values) - {"train", "test"})
    if bad:
        raise ValueError(f"column {column!r} at site {site_id} must hold only 'train' or 'test'; found {bad[:3]}.")
    return np.flatnonzero(values == "train"), np.flatnonzero(values == "test")
