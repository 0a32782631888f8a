"""`workbench data check` and `workbench data dictionary`: check and describe per-site data folders.

The root CLI mounts `app` in the `data` group, beside the synthetic sites of
``datasets_synthetic.cli``. Heavy imports (pandas, numpy) happen inside the
commands so that `workbench --help` stays fast. Our own errors become one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import typer

from federation.cli_support import EXIT_BAD_INPUT, fail, table

app = typer.Typer()


@app.command()
def check(
    data: Path = typer.Option(..., "--data", help="Per-site folder with data_dictionary.json."),
) -> None:
    """Validate every site file of a folder against its data dictionary (exit 2 on any failure: the data breaks its rules)."""
    from federation.data.errors import DataDictionaryError, DataValidationError
    from federation.data.loader import dictionary_for_folder, load_site_data, site_files

    try:
        if not data.is_dir():
            raise DataValidationError(f"{data}: the folder does not exist", file=data)
        dictionary = dictionary_for_folder(folder=data)
        paths = site_files(folder=data)
    except (DataValidationError, DataDictionaryError, OSError) as error:
        raise fail(error, code=EXIT_BAD_INPUT) from None
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
        raise typer.Exit(code=EXIT_BAD_INPUT)


@app.command()
def dictionary(
    data: Path = typer.Option(..., "--data", help="Per-site folder, or a data_dictionary.json file."),
) -> None:
    """Print a folder's data dictionary as a table."""
    from federation.data.dictionary import DataDictionary
    from federation.data.errors import DataDictionaryError
    from federation.data.loader import dictionary_for_folder

    try:
        loaded = DataDictionary.load(data) if data.is_file() else dictionary_for_folder(folder=data)
    except (DataDictionaryError, OSError) as error:
        raise fail(error, code=EXIT_BAD_INPUT) from None
    typer.echo(f"{loaded.name}: ranges from {loaded.source}; unit of privacy: {loaded.unit_of_privacy}")
    rows = [
        [c.name, c.kind, c.role, c.unit, c.allowed_values, c.missing, c.out_of_range, c.description]
        for c in loaded.columns
    ]
    typer.echo(table(["column", "kind", "role", "unit", "allowed", "missing", "out_of_range", "description"], rows))
