"""`workbench data ...`: make, check and describe per-site data folders.

The root CLI mounts `app`. Heavy imports (pandas, numpy) happen inside the
commands so that `workbench --help` stays fast. Our own errors become one line
on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="data",
    help="Synthetic hospitals, the UCI heart-disease sites, and checks of per-site data folders.",
    no_args_is_help=True,
)

EXIT_INVALID_DATA = 1
EXIT_BAD_ARGUMENTS = 2


def _fail(error: BaseException, *, code: int) -> typer.Exit:
    message = " ".join(str(error).split()) if str(error) else type(error).__name__
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (created)."),
    sites: int = typer.Option(4, "--sites", help="Number of hospitals (1-999)."),
    rows: int = typer.Option(5000, "--rows", help="Average rows per hospital (>= 20)."),
    seed: int = typer.Option(7, "--seed", help="Random seed; the same seed gives the same files."),
    size_spread: float = typer.Option(0.6, "--size-spread", help="Sites get (1 +- spread) x rows."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace different site files in --out."),
) -> None:
    """Write synthetic hospitals (Parquet), their data dictionary and the ground truth."""
    from datasets_synthetic.generator import generate_hospitals
    from datasets_synthetic.write_synthetic import write_hospitals

    try:
        federation = generate_hospitals(sites=sites, rows=rows, seed=seed, size_spread=size_spread)
        folder = write_hospitals(federation, out=out, overwrite=overwrite)
    except (ValueError, OSError) as error:
        raise _fail(error, code=EXIT_BAD_ARGUMENTS) from None
    summary = federation.summary()
    rows_out = [
        [r.site, str(r.rows), f"{r.prevalence:.1%}", f"{r.mean_age:.1f}"]
        for r in summary.itertuples(index=False)
    ]
    typer.echo(_table(["site", "rows", "cardiac_event", "mean age"], rows_out))
    typer.echo(f"wrote {len(federation.sites)} sites (seed {seed}) to {folder}")


@app.command()
def check(
    data: Path = typer.Option(..., "--data", help="Per-site folder with data_dictionary.json."),
) -> None:
    """Validate every site file of a folder against its data dictionary (exit 1 on any failure)."""
    from datasets_synthetic.errors import DataDictionaryError, DataValidationError
    from datasets_synthetic.loader import dictionary_for_folder, load_site_data, site_files

    try:
        if not data.is_dir():
            raise DataValidationError(f"{data}: the folder does not exist", file=data)
        dictionary = dictionary_for_folder(folder=data)
        paths = site_files(folder=data)
    except (DataValidationError, DataDictionaryError, OSError) as error:
        raise _fail(error, code=EXIT_INVALID_DATA) from None
    failures = 0
    for path in paths:
        try:
            site = load_site_data(path=path, dictionary=dictionary)
        except DataValidationError as error:
            failures += 1
            typer.echo(f"FAIL {' '.join(str(error).split())}", err=True)  # the message names the file
            continue
        typer.echo(f"ok   {path.name}: {len(site.frame)} rows, fingerprint {site.fingerprint[:12]}")
        for warning in site.warnings:
            typer.echo(f"     warning: {warning}")
    if failures:
        typer.echo(f"error: {failures} of {len(paths)} site file(s) failed validation", err=True)
        raise typer.Exit(code=EXIT_INVALID_DATA)


@app.command()
def dictionary(
    data: Path = typer.Option(..., "--data", help="Per-site folder, or a data_dictionary.json file."),
) -> None:
    """Print a folder's data dictionary as a table."""
    from datasets_synthetic.dictionary import DataDictionary
    from datasets_synthetic.errors import DataDictionaryError
    from datasets_synthetic.loader import dictionary_for_folder

    try:
        loaded = DataDictionary.load(data) if data.is_file() else dictionary_for_folder(folder=data)
    except (DataDictionaryError, OSError) as error:
        raise _fail(error, code=EXIT_BAD_ARGUMENTS) from None
    typer.echo(f"{loaded.name}: ranges from {loaded.source}; unit of privacy: {loaded.unit_of_privacy}")
    rows = [
        [c.name, c.kind, c.role, c.unit, c.allowed_values, c.missing, c.out_of_range, c.description]
        for c in loaded.columns
    ]
    typer.echo(_table(["column", "kind", "role", "unit", "allowed", "missing", "out_of_range", "description"], rows))


@app.command()
def uci(
    out: Path = typer.Option(..., "--out", help="Folder to write (created)."),
    source: Optional[Path] = typer.Option(
        None, "--source", help="UCI folder; default $WORKBENCH_UCI_DIR or ../shared/data/uci_heart_disease."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace different site files in --out."),
) -> None:
    """Convert the four UCI heart-disease hospitals into a per-site folder (<site>.csv + dictionary)."""
    from datasets_synthetic.uci_heart_disease import write_uci_sites

    try:
        folder = write_uci_sites(folder=source, out=out, overwrite=overwrite)
    except (ValueError, OSError) as error:
        raise _fail(error, code=EXIT_BAD_ARGUMENTS) from None
    typer.echo(f"wrote the UCI sites cleveland, hungarian, switzerland, va to {folder}")
