"""Load real per-site files: one CSV or Parquet file per site in a folder.

A site folder looks like:

    hospital_01.parquet   (or .csv with a header row)
    hospital_02.csv
    data_dictionary.json  (public ranges; required unless a dictionary is passed)
    ground_truth.json, README.md, hidden files   (ignored)

Every file is validated against the data dictionary; any breach raises
DataValidationError naming the file, the row (1-based data row, header
excluded) and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError, DataValidationError
from federation.data.validation import RowConvention, validate_frame

SITE_SUFFIXES = (".csv", ".parquet")
DICTIONARY_FILE = "data_dictionary.json"
NOT_SITE_FILES = frozenset({DICTIONARY_FILE, "ground_truth.json", "README.md"})


@dataclass(frozen=True, kw_only=True, eq=False)
class SiteData:
    """One site's validated data.

    fingerprint: sha256 of the file's bytes and the dictionary's JSON, the "data
    version"; it changes when either changes, so caches keyed on it stay honest.
    warnings: things the loader accepted but a person should know (ignored extra
    columns, values clipped or blanked by the out_of_range policy).
    """

    site_id: str
    path: Path
    frame: pd.DataFrame
    fingerprint: str
    warnings: tuple[str, ...] = ()


def load_site(*, path: Path, dictionary: DataDictionary) -> pd.DataFrame:
    """The validated, typed frame of one site file (.csv with a header row, or .parquet)."""
    return load_site_data(path=path, dictionary=dictionary).frame


def load_site_data(*, path: Path, dictionary: DataDictionary, site_id: str | None = None) -> SiteData:
    """Like load_site, but with the fingerprint and warnings; site_id defaults to the file stem."""
    path = Path(path)
    content = read_site_bytes(path=path)
    if path.suffix.lower() == ".parquet":
        raw, rows = parse_parquet(path=path, content=content), RowConvention(header_lines=None)
    elif path.suffix.lower() == ".csv":
        raw, rows = parse_csv(path=path, content=content), RowConvention(header_lines=1)
    else:
        raise DataValidationError(
            f"{path.name}: unsupported file type '{path.suffix}'; site files must be {' or '.join(SITE_SUFFIXES)}",
            file=path,
        )
    return site_data_from_raw(raw=raw, content=content, path=path, dictionary=dictionary, rows=rows, site_id=site_id)


def site_data_from_raw(
    *,
    raw: pd.DataFrame,
    content: bytes,
    path: Path,
    dictionary: DataDictionary,
    rows: RowConvention,
    site_id: str | None = None,
) -> SiteData:
    """Validate an already-parsed table (used by the loaders of header-less formats, e.g. UCI)."""
    if len(raw) == 0:
        raise DataValidationError(
            f"{path.name}: the file has no data rows; a site file needs at least one row", file=path
        )
    frame, warnings = validate_frame(raw=raw, dictionary=dictionary, file=path, rows=rows)
    return SiteData(
        site_id=site_id or path.stem,
        path=path,
        frame=frame,
        fingerprint=fingerprint(content=content, dictionary=dictionary),
        warnings=warnings,
    )


def fingerprint(*, content: bytes, dictionary: DataDictionary) -> str:
    """sha256 over the file bytes and the dictionary's canonical JSON."""
    digest = hashlib.sha256(content)
    digest.update(b"\0")
    digest.update(json.dumps(dictionary.to_json(), sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def load_sites(*, folder: Path, dictionary: DataDictionary | None = None) -> dict[str, SiteData]:
    """Every site file in `folder`, validated, keyed by site id (the file stem), sorted.

    Without `dictionary`, reads `folder/data_dictionary.json`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DataValidationError(
            f"{folder}: the site folder {what}; pass a folder holding one .csv or .parquet file per site",
            file=folder,
        )
    if dictionary is None:
        dictionary = dictionary_for_folder(folder=folder)
    return {path.stem: load_site_data(path=path, dictionary=dictionary) for path in site_files(folder=folder)}


def dictionary_for_folder(*, folder: Path) -> DataDictionary:
    """The folder's data_dictionary.json, or a clear error saying where ranges must come from."""
    path = Path(folder) / DICTIONARY_FILE
    if not path.is_file():
        raise DataDictionaryError(
            f"{folder}: no {DICTIONARY_FILE} here and no dictionary was passed. The value ranges that "
            "differential privacy needs must come from public knowledge (a data dictionary: write "
            f"{DICTIONARY_FILE} or pass dictionary=...) or from a DP range query (the federation layer "
            "does that); they are never read from the data. To see the column kinds without ranges, "
            "use infer_schema_without_ranges(path=<one site file>)."
        )
    return DataDictionary.load(path)


def site_files(*, folder: Path) -> list[Path]:
    """The site files of a folder, sorted by name; errors on none or on two files of one site."""
    folder = Path(folder)
    candidates = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name not in NOT_SITE_FILES
    ]
    files = [p for p in candidates if p.suffix.lower() in SITE_SUFFIXES]
    if not files:
        present = ", ".join(p.name for p in sorted(folder.iterdir()) if not p.name.startswith(".")) or "nothing"
        raise DataValidationError(
            f"{folder}: no site files (.csv or .parquet) in this folder (it holds: {present}); "
            "put one file per site here, named <site_id>.csv or <site_id>.parquet",
            file=folder,
        )
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise DataValidationError(
                f"{folder}: two files for site '{path.stem}' ({by_stem[path.stem].name} and {path.name}); "
                "keep exactly one file per site",
                file=path,
            )
        by_stem[path.stem] = path
    return files


def read_site_bytes(*, path: Path) -> bytes:
    if not path.is_file():
        what = "is a folder, not a file" if path.exists() else "does not exist"
        raise DataValidationError(f"{path}: the site file {what}", file=path)
    content = path.read_bytes()
    if not content.strip():
        raise DataValidationError(
            f"{path.name}: the file is empty; a site file needs a header row and at least one data row",
            file=path,
        )
    return content


def parse_csv(*, path: Path, content: bytes) -> pd.DataFrame:
    """Every cell as text, so the validator can quote a bad cell exactly as the file shows it."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataValidationError(
            f"{path.name}: not readable as UTF-8 text (byte {error.start}); save the file as UTF-8 CSV",
            file=path,
        ) from None
    header = next(csv.reader(io.StringIO(text)), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataValidationError(
            f"{path.name}: the header names column(s) {', '.join(repr(n) for n in repeated)} more than once; "
            "give every column a unique name",
            file=path,
            column=repeated[0],
        )
    # Trailing blank lines are dropped; any other row must have one field per column
    # (pandas would silently shift a row with an extra field into an index).
    text = text.rstrip() + "\n"
    check_field_counts(path=path, text=text, expected=len(header), rows=RowConvention(header_lines=1))
    try:
        return pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise DataValidationError(
            f"{path.name}: not readable as CSV: {str(error).strip()}. Check that every row has the same "
            "number of comma-separated fields as the header",
            file=path,
        ) from None


def check_field_counts(*, path: Path, text: str, expected: int, rows: RowConvention) -> None:
    """Every data row of a CSV text has `expected` fields; else name the first row that does not."""
    skip = rows.header_lines or 0
    try:
        records = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as error:
        raise DataValidationError(
            f"{path.name}: not readable as CSV ({error}); check the quoting of the cells", file=path
        ) from None
    for index, fields in enumerate(records):
        if index >= skip and len(fields) != expected:
            row = index - skip + 1
            problem = "is blank" if not fields else f"has {len(fields)} comma-separated fields"
            raise DataValidationError(
                f"{path.name}, row {row}: the row {problem}, expected {expected} (one per column) "
                f"{rows.note(row)}; fix or remove the row",
                file=path,
                row=row,
            )


def parse_parquet(*, path: Path, content: bytes) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(content))
    except Exception as error:  # pyarrow raises several unrelated types for a damaged file
        raise DataValidationError(
            f"{path.name}: not readable as Parquet ({type(error).__name__}: {error}); "
            "re-export the file, or save it as CSV",
            file=path,
        ) from None
