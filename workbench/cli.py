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


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


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


def _run(run, **kwargs) -> None:
    """Run a study; its errors become one line (and each site's charges) and the exit
    code of their kind; a study stopped early exits 1 (a site refused) or 3 (a site failed)."""
    from federation.cli_support import EXIT_REFUSED, EXIT_UNREACHABLE, exit_code_for
    from federation.errors import BadInput, Cancelled, InternalFault, Refused
    from privacy_budgets.errors import PrivacyBudgetError
    from workbench import settings
    from workbench.errors import WorkbenchError

    settings.progress = False  # each round prints its own line
    try:
        summary = run(echo=typer.echo, **kwargs)
    except KeyboardInterrupt:  # a simulation, or a connected study before its run existed
        _fail(
            "interrupted (Ctrl-C). A simulated study's ledgers (under --out) hold what it spent.",
            exit_code_for(KeyboardInterrupt()),
        )
    except (BadInput, Refused, InternalFault, Cancelled, PrivacyBudgetError, KeyError, FileNotFoundError) as err:
        charges = err.charges_text() if isinstance(err, WorkbenchError) else ""
        typer.echo(f"error: {' '.join(str(err).strip(chr(39) + chr(34)).split())}", err=True)
        if charges:
            typer.echo(charges, err=True)
        raise typer.Exit(code=exit_code_for(err)) from None
    kind = summary.get("stop_kind") or ""
    if kind:
        raise typer.Exit(code=EXIT_REFUSED if kind == "refused" else EXIT_UNREACHABLE)


study_app = typer.Typer(name="study", invoke_without_command=True)
app.add_typer(study_app, name="study")


@study_app.callback(invoke_without_command=True)
def study(
    ctx: typer.Context,
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
    epsilon: Optional[float] = typer.Option(
        None,
        help="Required. The project's total epsilon at each hospital: what the project already spent there counts "
        "towards it.",
    ),
    rounds: int = typer.Option(5, help="Federated rounds."),
    out: Optional[Path] = typer.Option(None, help="Required. Folder for ledgers, receipts and summary.json."),
    project: str = typer.Option("study", help="Project name the ledgers charge (each site allocates it)."),
    delta: float = typer.Option(1e-5, help="Delta of each hospital's dataset."),
    site_cap: float = typer.Option(10.0, help="Lifetime epsilon cap of each simulated hospital."),
    strategy: str = typer.Option("fedavg", help="fedavg, fedadam or fedyogi."),
    model: str = typer.Option("mlp", help="mlp or logreg."),
    baselines: bool = typer.Option(True, help="Also train non-private pooled and local-only baselines."),
    site_timeout: float = typer.Option(
        600.0,
        "--site-timeout",
        help="With --coordinator: seconds to wait for a site to connect or answer before the study names it and stops.",
    ),
    timeout: float = typer.Option(
        1800.0,
        "--timeout",
        help="With --coordinator: seconds the whole study may take; then it is cancelled (the sites refuse "
        "its messages after it, too).",
    ),
    researcher_key: Optional[Path] = typer.Option(
        None,
        "--researcher-key",
        help="With --coordinator: your private key (`workbench researcher init`); the study is signed with it, "
        "and each site serves it only if its ethics board approved the key for --project.",
    ),
    passphrase_file: Optional[Path] = typer.Option(
        None, "--passphrase-file", help="Read the researcher key's passphrase from this file (default: ask)."
    ),
) -> None:
    """Run a private federated study on a folder of per-site files (simulation engine), or on
    real hospital nodes with --coordinator; `workbench study cancel RUN` stops a connected one.

    Exit codes: 0 done, 1 a site refused (policy, budget, paused), 2 bad input, 3 a site or
    the coordinator failed or did not answer, 4 internal error, 130 interrupted or cancelled
    (the study's Flower run is stopped first, and each site's charges are printed)."""
    if ctx.invoked_subcommand is not None:
        return
    if (data is None) == (coordinator is None):
        _fail(
            "give either --data (a folder of per-site files, simulated here) or --coordinator "
            "(a coordinator folder; the sites run their own nodes), not both or neither."
        )
    if epsilon is None:
        _fail("--epsilon is required: the project's total epsilon at each hospital, e.g. --epsilon 1.")
    if out is None:
        _fail("--out is required: the folder for summary.json and the receipts, e.g. --out out/study.")
    _check_study_args(epsilon, rounds, data)
    if coordinator is not None:
        if not 0 < site_timeout <= timeout:
            _fail(
                f"--site-timeout must be a positive number of seconds, at most --timeout ({timeout:g}); got "
                f"{site_timeout:g}."
            )
        from workbench.study import run_study

        _run(
            run_study,
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
            site_timeout=site_timeout,
            timeout=timeout,
            researcher=researcher_key,
            passphrase=_read_passphrase(passphrase_file),
        )
        return
    from workbench.study import run_study

    _run(
        run_study,
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


def _read_passphrase(path: Optional[Path]) -> Optional[str]:
    if path is None:
        return None
    if not path.is_file():
        _fail(f"--passphrase-file {path} is not a file; give the file that holds the key's passphrase.")
    return path.read_text().rstrip("\n")


researcher_app = typer.Typer(name="researcher", help="Your researcher key: it signs your studies and queries.")
app.add_typer(researcher_app, name="researcher")


@researcher_app.command("init")
def researcher_init(
    out: Path = typer.Option(..., "--out", help="Where to write the private key (KEY and KEY.pub)."),
    name: str = typer.Option(..., "--name", help="Your name, as the sites' ethics boards will list you."),
    passphrase_file: Optional[Path] = typer.Option(
        None, "--passphrase-file", help="Read the new key's passphrase from this file (default: ask twice)."
    ),
    ssh_keygen: bool = typer.Option(False, "--ssh-keygen", help="Make the key with ssh-keygen instead of Python."),
) -> None:
    """Make your researcher key: OpenSSH Ed25519, passphrase-protected (mode 0600). Send KEY.pub
    to each site's ethics board; they approve it for your project."""
    from federation.cli_support import exit_code_for
    from privacy_budgets.errors import PrivacyBudgetError
    from workbench.researcher import init_researcher

    passphrase = _read_passphrase(passphrase_file)
    if passphrase is None:
        passphrase = typer.prompt("Passphrase for the new key", hide_input=True, confirmation_prompt=True)
    try:
        public = init_researcher(out=out, name=name, passphrase=passphrase, ssh_keygen=ssh_keygen)
    except PrivacyBudgetError as err:
        _fail(" ".join(str(err).split()), exit_code_for(err))
    typer.echo(f"Wrote {out} (passphrase-protected) and {out}.pub. Your fingerprint: {public.fingerprint}")
    typer.echo(
        f"Send {out}.pub to each site's ethics board: `workbench budget propose approve --researcher "
        f'"{name}={out}.pub" ...`. Keep the private key and its passphrase to yourself.'
    )


@study_app.command("cancel")
def cancel(
    run: str = typer.Argument(..., help="The study's run id (printed as it starts), or its Flower run id."),
    coordinator: Path = typer.Option(Path("coordinator"), "--coordinator", help="The coordinator folder."),
    reason: str = typer.Option("cancelled by `workbench study cancel`", "--reason", help="Why (recorded)."),
) -> None:
    """Cancel a connected study: its ServerApp stops, then its Flower run (no site is asked
    anything more for it); print what each site was charged for the rounds that ran."""
    from federation.cli_support import exit_code_for
    from federation.coordinator.study_runs import cancel_study
    from federation.errors import BadInput, PartyFailed

    try:
        folder, charges, said = cancel_study(coordinator=coordinator, run=run, reason=reason)
    except (BadInput, PartyFailed) as err:
        _fail(" ".join(str(err).split()), exit_code_for(err))
    typer.echo(f"study run {folder.path.name}: {said}.")
    typer.echo("what each site was charged (its signed receipts, as the coordinator mirrors them):")
    for charge in charges or []:
        typer.echo(f"  {charge.line()}")
    if not charges:
        typer.echo("  no site was sent anything.")


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
    from workbench.study import run_study

    _run(
        run_study,
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
