"""The one console script, ``workbench``. Each package owns its sub-commands:
``data`` (``check`` and ``dictionary`` from federation.data, ``synth`` and ``uci`` from
datasets_synthetic), ``budget`` (privacy_budgets), ``node`` (federation.site),
``coordinator`` (federation.coordinator); ``study`` and ``demo``
live here. Imports stay light until a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from datasets_synthetic.cli import app as synthetic_data_app
from federation.coordinator.cli import app as coordinator_app
from federation.data.cli import app as data_checks_app
from federation.site.cli import app as node_app
from privacy_budgets.cli import app as budget_app

app = typer.Typer(
    name="workbench",
    help="Privacy-preserving research on hospital data: federated DP training, DP analytics, budget ledgers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# `workbench data`: the commands of two packages in one group.
data_app = typer.Typer(
    name="data",
    help="Synthetic hospitals, the UCI heart-disease sites, and checks of per-site data folders.",
    no_args_is_help=True,
)
data_app.add_typer(synthetic_data_app)  # synth, uci
data_app.add_typer(data_checks_app)  # check, dictionary
app.add_typer(data_app, name="data")
app.add_typer(budget_app, name="budget")
app.add_typer(node_app, name="node")
app.add_typer(coordinator_app, name="coordinator")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _check_study_args(epsilon: float, rounds: int, data: Optional[Path]) -> None:
    import math

    if not math.isfinite(epsilon) or epsilon <= 0:
        _fail(f"--epsilon must be a positive number (the project's total at each hospital); got {epsilon}.")
    if rounds < 1:
        _fail(f"--rounds must be at least 1; got {rounds}.")
    if data is not None and not data.is_dir():
        _fail(
            f"--data must be a folder of per-site files; {str(data)!r} is not a folder. "
            "Make one with `workbench data synth --out DIR` or `workbench data uci --out DIR`."
        )


def _run_study(**kwargs) -> None:
    from federation.errors import BadInput, InternalFault, Refused
    from privacy_budgets.errors import PrivacyBudgetError
    from workbench import settings
    from workbench.study import run_study

    settings.progress = False  # each round prints its own line
    try:
        run_study(echo=typer.echo, **kwargs)
    except (BadInput, Refused, InternalFault, PrivacyBudgetError, KeyError) as err:  # federation/errors.py: exit 2
        _fail(str(err).strip("'\""))


@app.command()
def study(
    data: Optional[Path] = typer.Option(
        None, help="Folder of per-site files (CSV or Parquet) with data_dictionary.json."
    ),
    coordinator: Optional[Path] = typer.Option(
        None,
        help="Run on real hospital nodes through this coordinator folder (`workbench coordinator init`) "
        "instead of simulating --data.",
    ),
    dictionary: Optional[Path] = typer.Option(None, help="With --coordinator: the study's public data dictionary."),
    target: Optional[str] = typer.Option(None, help="Binary outcome column (default: the dictionary's target)."),
    epsilon: float = typer.Option(
        ...,
        help="The project's total epsilon at each hospital: what the project already spent there counts towards it.",
    ),
    rounds: int = typer.Option(5, help="Federated rounds."),
    out: Path = typer.Option(..., help="Folder for ledgers, receipts and summary.json."),
    project: str = typer.Option("study", help="Project name the ledgers charge."),
    delta: float = typer.Option(1e-5, help="Delta of each hospital's dataset."),
    site_cap: float = typer.Option(10.0, help="Lifetime epsilon cap of each simulated hospital."),
    strategy: str = typer.Option("fedavg", help="fedavg, fedadam or fedyogi."),
    model: str = typer.Option("mlp", help="mlp or logreg."),
    baselines: bool = typer.Option(True, help="Also train non-private pooled and local-only baselines."),
) -> None:
    """Run a private federated study on a folder of per-site files (simulation engine), or on
    real hospital nodes with --coordinator."""
    if (data is None) == (coordinator is None):
        _fail(
            "give either --data (a folder of per-site files, simulated here) or --coordinator "
            "(a coordinator folder; the sites run their own nodes), not both or neither."
        )
    _check_study_args(epsilon, rounds, data)
    if coordinator is not None:
        _run_connected(
            coordinator=coordinator,
            dictionary=dictionary,
            target=target,
            epsilon=epsilon,
            rounds=rounds,
            out=out,
            project=project,
            delta=delta,
            strategy=strategy,
            model=model,
        )
        return
    _run_study(
        data=data,
        target=target,
        epsilon=epsilon,
        rounds=rounds,
        out=out,
        project=project,
        delta=delta,
        site_cap=site_cap,
        strategy=strategy,
        model=model,
        baselines=baselines,
    )


def _run_connected(**kwargs) -> None:
    from federation.errors import BadInput, InternalFault, Refused
    from workbench import settings
    from workbench.connected import run_connected_study

    settings.progress = False
    try:
        run_connected_study(echo=typer.echo, **kwargs)
    except (BadInput, Refused, InternalFault, FileNotFoundError) as err:  # federation/errors.py: exit 2
        _fail(str(err))


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="Folder for data, ledgers, receipts and summary.json."),
    sites: int = typer.Option(4, help="Synthetic hospitals."),
    rows: int = typer.Option(5000, help="Patients per hospital, on average."),
    epsilon: float = typer.Option(
        1.0,
        help="The project's total epsilon at each hospital: what the project already spent there counts towards it.",
    ),
    rounds: int = typer.Option(5, help="Federated rounds."),
    seed: int = typer.Option(7, help="Seed of the synthetic hospitals."),
    project: str = typer.Option("", help="Project name (default: demo-<time>, a new study each run)."),
) -> None:
    """The same study on freshly generated synthetic hospitals."""
    import time

    _check_study_args(epsilon, rounds, None)
    if sites < 1:
        _fail(f"--sites must be at least 1; got {sites}.")
    _run_study(
        data=None,
        epsilon=epsilon,
        rounds=rounds,
        out=out,
        project=project or time.strftime("demo-%Y%m%d-%H%M%S"),
        simulate_sites=sites,
        simulate_rows=rows,
        seed=seed,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
