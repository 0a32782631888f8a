"""`workbench data synth` and `workbench data uci`: write per-site data folders.

The root CLI mounts `app` in the `data` group, beside the checks of
``federation.data.cli``. Heavy imports (pandas, numpy) happen inside the commands so
that `workbench --help` stays fast. Our own errors become one line on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from federation.cli_support import EXIT_BAD_INPUT, fail, table

app = typer.Typer()


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
        raise fail(error, code=EXIT_BAD_INPUT) from None
    summary = federation.summary()
    rows_out = [
        [r.site, str(r.rows), f"{r.prevalence:.1%}", f"{r.mean_age:.1f}"] for r in summary.itertuples(index=False)
    ]
    typer.echo(table(["site", "rows", "cardiac_event", "mean age"], rows_out))
    typer.echo(f"wrote {len(federation.sites)} sites (seed {seed}) to {folder}")


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
        raise fail(error, code=EXIT_BAD_INPUT) from None
    typer.echo(f"wrote the UCI sites cleveland, hungarian, switzerland, va to {folder}")
