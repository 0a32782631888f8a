"""python -m benchmarks.privacy_audit [--quick] [--out benchmarks/privacy_audit/RESULTS.md]

Audits both DP-SGD engines in one training run each (Steinke, Nasr & Jagielski 2023) at
a claimed epsilon of 2, with deliberately broken engines (noise off, clipping off) beside
them; then the audit's power across claims against a simulated exact implementation,
and what the bound can show at each number of canaries. Writes RESULTS.md and a plot.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from benchmarks.privacy_audit.broken import BROKEN
from benchmarks.privacy_audit.ideal import ideal_bounds
from benchmarks.privacy_audit.report import write_results
from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.training.dp_sgd import ENGINES
from federation.training.privacy_audit import AuditResult, audit_dp_sgd
from privacy_budgets.accounting import calibrate_dpsgd_noise

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"


@dataclass(frozen=True)
class Settings:
    canaries: int
    sampling_rate: float
    steps: int
    claim: float  # the noise is calibrated by the ledger's accountant to this epsilon
    seeds: tuple[int, ...]  # audits of each correct engine (each one training run)
    claims: tuple[float, ...]  # the power sweep, vectorized engine
    ideal_runs: int
    reach: tuple[int, ...]  # canary counts in the "what the bound can show" table
    delta: float = 1e-5
    max_grad_norm: float = 1.0


# A site of about 6,400 training rows at batch 128 (rate 1/50), 5 rounds of one epoch.
FULL = Settings(
    canaries=1000,
    sampling_rate=1 / 50,
    steps=250,
    claim=2.0,
    seeds=(0, 1, 2),
    claims=(0.5, 1.0, 2.0, 4.0, 8.0),
    ideal_runs=100,
    reach=(200, 500, 1000, 2000, 5000),
)
QUICK = Settings(
    canaries=200,
    sampling_rate=1 / 10,
    steps=50,
    claim=2.0,
    seeds=(0,),
    claims=(1.0, 2.0),
    ideal_runs=5,
    reach=(200, 1000),
)


@dataclass(frozen=True)
class Audit:
    mechanism: str  # "correct", "noise off", "clipping off"
    seed: int
    result: AuditResult


def noise_for(*, claim: float, settings: Settings) -> float:
    """The least noise the ledger's accountant allows for ``claim`` (as a site calibrates)."""
    return calibrate_dpsgd_noise(
        target_epsilon=claim, delta=settings.delta, sampling_rate=settings.sampling_rate, steps=settings.steps
    )


def audit(*, settings: Settings, noise: float, engine: str, seed: int, canaries: int | None = None) -> AuditResult:
    return audit_dp_sgd(
        noise_multiplier=noise,
        max_grad_norm=settings.max_grad_norm,
        sampling_rate=settings.sampling_rate,
        steps=settings.steps,
        delta=settings.delta,
        canaries=canaries or settings.canaries,
        engine=engine,
        dictionary=SYNTHETIC_HOSPITALS_DICTIONARY,
        seed=seed,
        progress=False,
    )


def run(*, settings: Settings, out: Path, command: str = "", show_progress: bool = True) -> list[Audit]:
    """Run every audit, write ``out`` (and a .png beside it); return the headline audits."""
    started = time.monotonic()
    noise = noise_for(claim=settings.claim, settings=settings)
    # One small audit per engine first: imports and first-call set-up stay out of the timings.
    for engine in ENGINES:
        audit(settings=settings, noise=noise, engine=engine, seed=0, canaries=20)
    plan = [(engine, "correct", seed) for engine in ENGINES for seed in settings.seeds]
    plan += [(engine, bug, 0) for engine in ENGINES for bug in BROKEN]
    headline: list[Audit] = []
    power: list[tuple[float, float, AuditResult, list[float]]] = []
    with tqdm(
        total=len(plan) + len(settings.claims), desc="privacy audit", unit="audit", disable=not show_progress
    ) as bar:
        for engine, mechanism, seed in plan:
            bar.set_postfix_str(f"{engine}, {mechanism}")
            broken = BROKEN[mechanism]() if mechanism in BROKEN else contextlib.nullcontext()
            with broken:
                headline.append(Audit(mechanism, seed, audit(settings=settings, noise=noise, engine=engine, seed=seed)))
            bar.update(1)
        for claim in settings.claims:
            bar.set_postfix_str(f"power at claim {claim:g}")
            sigma = noise_for(claim=claim, settings=settings)
            real = audit(settings=settings, noise=sigma, engine="vectorized", seed=0)
            ideal = ideal_bounds(
                noise_multiplier=sigma,
                sampling_rate=settings.sampling_rate,
                steps=settings.steps,
                canaries=settings.canaries,
                momentum=0.5,
                delta=settings.delta,
                runs=settings.ideal_runs,
                seed=1,
            )
            power.append((claim, sigma, real, ideal.tolist()))
            bar.update(1)
    write_results(
        out=out,
        settings=settings,
        noise=noise,
        headline=headline,
        power=power,
        command=command,
        seconds=time.monotonic() - started,
    )
    return headline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.privacy_audit", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="test size: 200 canaries, 50 steps (seconds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown results file (a .png goes beside it)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    command = shlex.join(["python", "-m", "benchmarks.privacy_audit", *(sys.argv[1:] if argv is None else argv)])
    headline = run(settings=settings, out=args.out, command=command)
    for item in headline:
        r = item.result
        print(
            f"{r.engine:10s} {item.mechanism:12s} seed {item.seed}: claimed {r.claimed_epsilon:.2f}, "
            f"audited >= {r.empirical_epsilon:.2f} ({r.correct}/{r.guesses} correct, {r.seconds:.1f} s)"
        )
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    caught = all(a.result.exceeds_claim for a in headline if a.mechanism in BROKEN)
    clean = not any(a.result.exceeds_claim for a in headline if a.mechanism == "correct")
    return 0 if caught and clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
