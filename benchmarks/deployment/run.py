"""python -m benchmarks.deployment.run [--rounds 3] [--rows 1000] [--out benchmarks/deployment/RESULTS.md]

Wall time per round of one 3-site DP study, on loopback with TLS and node
authentication, beside Flower's simulation engine for the same study; each
deployment round split into the sites' work (training + evaluation handlers, as
the site executor logs them) and everything else. Variants, in order:

1. the workbench's deployment: site executor (one long-lived process per site),
   SuperNode idle waits capped at 0.25 s, replies collected every 0.1 s, executor polls every 0.1 s;
2. the same executor with Flower's own waits (3 s node poll, 3 s Grid poll);
3. Flower's stock deployment: ``flower-supernode --isolation subprocess``, one
   ``flwr-clientapp`` process per message (imports flwr, torch, Opacus each time);
4. Flower's simulation engine (Ray), the ServerApp in this process.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.deployment.measure import (
    VariantResult,
    measure_deployment,
    measure_simulation,
    start_stock_nodes,
    stop_stock_nodes,
)
from federation.engines.loopback import LoopbackFederation, build_loopback_federation

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
FAST = "workbench deployment: site executor, short polls"
EXECUTOR_FLOWER_POLLS = "site executor with Flower's 3 s polls"
STOCK = "Flower's stock deployment (a flwr-clientapp process per message)"
VARIANTS = ("fast", "executor-flower-polls", "stock", "simulation")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def results_markdown(*, results: list[VariantResult], sites: int, rows: int, rounds: int, command: str) -> str:
    lines = [
        "# Deployment Engine: wall time per round, 3 sites on loopback",
        "",
        f"Study: {sites} synthetic hospitals of about {rows} patients, MLP, DP-SGD (Opacus) at every site, "
        f"target epsilon 2, {rounds} rounds; each round is one training and one evaluation exchange. "
        "Deployment runs use real `flower-superlink` and `flower-supernode` processes with TLS and "
        "`--enable-supernode-auth`. Machine: 2 shared CPU cores, no GPU; load average before: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        f"Command: `{command}`",
        "",
        "## Seconds per round",
        "",
        "| variant | seconds per round (mean) | rounds 2+ (mean) | each round | site work (train + evaluate, slowest site) | of which training | everything else |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rest = None if r.site_work is None else r.per_round - r.site_work
        lines.append(
            f"| {r.name} | {r.per_round:.2f} | {r.steady:.2f} | {', '.join(f'{s:.2f}' for s in r.round_seconds)} | "
            f"{_fmt(r.site_work)} | {_fmt(r.training)} | {_fmt(rest)} |"
        )
    notes = [r for r in results if r.note]
    if notes:
        lines += ["", *[f"- {r.name}: {r.note}" for r in notes]]
    lines += [
        "",
        "Site work is measured only where the site executor runs the handlers (it logs each task's time); "
        "the stock node and the simulation run the same handlers on the same data. Site work and "
        "everything else are means over all rounds; round 1 carries first-time costs at the sites (data "
        "load, noise calibration for the whole study, Opacus's first call) and, in simulation, Ray's start. "
        "The machine's 2 cores are shared with other work (load average above): figures vary by about "
        "0.5 s a round between runs.",
        "",
        "## Where the time goes, and what the workbench changes",
        "",
        "- Flower 1.42's stock node starts a `flwr-clientapp` process for every message. That process "
        "imports flwr (about 2 s here) and the site's ClientApp imports torch, Opacus and pandas "
        "(about 5 s more): two messages per round per site, on 2 cores. The site executor "
        "(federation/site/site_executor.py) replaces Flower's SuperExec and those processes with "
        "one long-lived process per site that polls the SuperNode's Runtime API and runs the ClientApp "
        "in-process; it also refuses any bundle whose ClientApp is not the workbench's own.",
        "- Flower's SuperNode waits 3 s after every empty pull from the SuperLink, and its deployed Grid "
        "waits 3 s between pulls of replies: two exchanges per round cost up to 12 s of waiting. "
        "supernode_process.py caps the node's waits at 0.25 s; prompt_grid.py pulls replies every "
        "0.1 s through the Grid's public push/pull calls.",
    ]
    return "\n".join(lines) + "\n"


def run(
    *,
    out: Path | None,
    rounds: int = 3,
    rows: int = 1000,
    sites: int = 3,
    variants: tuple[str, ...] = VARIANTS,
    federation: LoopbackFederation | None = None,
    command: str = "",
) -> list[VariantResult]:
    """Measure ``variants``; write ``out`` (when given); return the results.

    With ``federation`` (already started, fast nodes) the given one is measured and
    left running; otherwise one is built in a temporary folder and stopped at the end.
    """
    own = federation is None
    tmp = tempfile.TemporaryDirectory(prefix="deploy-bench-") if own else None
    fed = federation or build_loopback_federation(root=Path(tmp.name), sites=sites, rows=rows, site_cap=100.0)
    results: list[VariantResult] = []
    tag = time.strftime("%H%M%S")
    try:
        if own:
            fed.start()
        if "fast" in variants:
            results.append(measure_deployment(fed, name=FAST, project=f"bench_fast_{tag}", rounds=rounds))
        if "executor-flower-polls" in variants:
            for site in fed.sites:
                fed.stop_site(site)
            for site in fed.sites:
                fed.start_site(site, poll_seconds=3.0)
            results.append(
                measure_deployment(
                    fed, name=EXECUTOR_FLOWER_POLLS, project=f"bench_slow_{tag}", rounds=rounds, prompt_replies=False
                )
            )
        if "stock" in variants:
            for site in fed.sites:
                fed.stop_site(site)
            handles = start_stock_nodes(fed)
            try:
                results.append(
                    measure_deployment(
                        fed, name=STOCK, project=f"bench_stock_{tag}", rounds=rounds, prompt_replies=False
                    )
                )
            finally:
                stop_stock_nodes(handles)
        if "simulation" in variants:
            results.append(measure_simulation(fed, project=f"bench_sim_{tag}", rounds=rounds))
    finally:
        if own:
            fed.stop()
            tmp.cleanup()
    if out is not None:
        out.write_text(
            results_markdown(
                results=results,
                sites=len(fed.sites),
                rows=rows,
                rounds=rounds,
                command=command or "python -m benchmarks.deployment.run",
            )
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--quick", action="store_true", help="test size: 2 rounds, 200 rows, the workbench variant only"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.rows, args.variants = 2, 200, VARIANTS[0]
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    command = "python -m benchmarks.deployment.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    results = run(out=args.out, rounds=args.rounds, rows=args.rows, variants=variants, command=command.strip())
    for r in results:
        print(
            f"{r.name}: {r.per_round:.2f} s/round, rounds 2+ {r.steady:.2f} s "
            f"(site work {_fmt(r.site_work)}, training {_fmt(r.training)})"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
