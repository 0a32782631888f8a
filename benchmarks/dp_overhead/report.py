"""RESULTS.md and the plot beside it: machine, settings, tables of ratios, failures."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.dp_overhead.timing import STABLE_SPREAD, Timing
from benchmarks.dp_overhead.variants import BASELINE, LEARNING_RATE, MAX_GRAD_NORM, NOISE_MULTIPLIER, VARIANTS

TARGET = 1.5
DEFAULT = "opacus-hooks"


@dataclass(frozen=True)
class ConfigResult:
    workload: str
    rows: int
    n_params: int
    batch_size: int
    threads: int
    steps: int
    timings: list[Timing]
    failures: dict[str, str] = field(default_factory=dict)
    attempts: int = 1  # 2 when the first measurement was disturbed and was taken again
    stable: bool = True  # False: still disturbed on the last attempt; read with care

    def timing(self, variant: str) -> Timing | None:
        return next((t for t in self.timings if t.variant == variant), None)

    def best_private(self) -> Timing:
        return min((t for t in self.timings if t.private), key=lambda t: t.ratio)


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "CPU": model,
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "Python": sys.version.split()[0],
        "torch": version("torch"),
        "opacus": version("opacus"),
        "numpy": version("numpy"),
        "OS": platform.platform(),
    }


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def summary_table(results: list[ConfigResult]) -> str:
    """One row per configuration, one column per private variant: the epoch-time ratio."""
    private = [v.name for v in VARIANTS if v.private]
    lines = [
        _row(["model", "batch", "threads", "non-private ms", *private]),
        _row(["---"] * (4 + len(private))),
    ]
    for r in results:
        base = r.timing(BASELINE)
        cells = []
        for name in private:
            t = r.timing(name)
            cells.append("fails" if t is None else f"{t.ratio:.2f}x")
        flag = "" if r.stable else f" (disturbed: x{base.spread:.1f})"
        lines.append(_row([r.workload, r.batch_size, r.threads, f"{base.epoch_ms:.1f}{flag}", *cells]))
    return "\n".join(lines)


def detail_table(result: ConfigResult) -> str:
    lines = [
        _row(["variant", "epoch ms", "ratio", "ratio range", "epoch spread", "set-up ms"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for t in sorted(result.timings, key=lambda t: t.ratio):
        lines.append(
            _row(
                [
                    t.variant,
                    f"{t.epoch_ms:.1f}",
                    f"{t.ratio:.2f}x",
                    f"{t.ratio_low:.2f}-{t.ratio_high:.2f}",
                    f"x{t.spread:.2f}",
                    f"{t.setup_ms:.1f}",
                ]
            )
        )
    return "\n".join(lines)


def best_vs_default(results: list[ConfigResult]) -> str:
    """The default against the best, and the default against the DataLoader baseline
    (the kind of baseline behind the stack note's "Opacus 2.5x")."""
    lines = [
        _row(
            [
                "model",
                "batch",
                "threads",
                DEFAULT,
                f"{DEFAULT} / nonprivate-loader",
                "best private variant",
                "its ratio",
                f"<= {TARGET}x",
            ]
        ),
        _row(["---"] * 8),
    ]
    for r in results:
        default, best, loader = r.timing(DEFAULT), r.best_private(), r.timing("nonprivate-loader")
        against_loader = "-" if default is None or loader is None else f"{default.epoch_ms / loader.epoch_ms:.2f}x"
        lines.append(
            _row(
                [
                    r.workload + ("" if r.stable else " (disturbed)"),
                    r.batch_size,
                    r.threads,
                    "fails" if default is None else f"{default.ratio:.2f}x",
                    against_loader,
                    best.variant,
                    f"{best.ratio:.2f}x",
                    "yes" if best.ratio <= TARGET else "no",
                ]
            )
        )
    return "\n".join(lines)


CHANGES = """\
## What was changed and why

Opacus's time on a model this small is not arithmetic. Its default path pays, per step:
a `DataLoader` that draws the Poisson mask over all `n` rows and then fetches and collates
the chosen rows one by one; forward and backward hooks on every layer that store
per-sample gradients; and a `DPOptimizer` that loops over parameters in Python to
clip, accumulate, noise and scale. `federation/training/fast_dp_sgd.py` (`train_round(...,
engine="vectorized")`) runs the same mechanism with each of those done as a few
whole-tensor operations:

- **Sampling** (`federation/training/poisson_sampling.py`): the same Poisson batch (every row
  independently with rate q), drawn from Geometric(q) gaps between chosen rows, so
  the cost is proportional to the batch, not to `n`; rows are gathered with one
  `index_select`. The `+sampler` Opacus variants and `nonprivate-poisson` use the same
  sampler, to show how much of Opacus's overhead is the loader alone.
- **Clipping** (`federation/training/per_sample_clipping.py`): for a stack of `Linear` layers and
  element-wise activations, a sample's gradient for a layer is the outer product of its
  output gradient `g` and its input `a`, so its squared norm is `|g|^2 (|a|^2 + 1)` and the
  clipped sum is `(c * G)^T A`. One forward, one backward to the layer outputs, no
  per-sample gradient stored, no hooks (Opacus's ghost clipping needs a second backward).
  Other models use `torch.func` (`vmap` of `grad`) per-sample gradients (`vectorized-functorch`).
- **Noise and update**: parameters are views of one flat vector, so the Gaussian noise
  N(0, (sigma C)^2) is one draw over all coordinates, added to the sum, divided by the
  expected batch size `int(n q)` (as Opacus computes it) and applied by one SGD update.
  Empty batches take a noise-only step and every step is counted.

The tests in `tests/federation/test_dp_sgd_equivalence.py` hold this to Opacus (hooks):
equal clipped sums (`torch.allclose`) on the same batch, equal parameters after several
noiseless steps with and without momentum, noise of standard deviation sigma C / int(n q)
per coordinate, Binomial batch sizes with independent rows, and the steps and rate of
`planned_sampling`. Opacus stays the default engine and the reference.

Fairness: the baseline (`nonprivate-index`) is the fastest ordinary non-private loop
measured here (shuffled order, rows gathered by tensor indexing, `loss.backward()`,
`torch.optim.SGD`), faster than the usual shuffled `DataLoader` (`nonprivate-loader`).
Measured against a `DataLoader` loop instead (column `opacus-hooks / nonprivate-loader`),
Opacus's default looks much cheaper: that is the kind of baseline behind the stack
note's "2.5x", whose slow collate hides part of Opacus's cost in the denominator.
Every loop, private or not, reads the loss once a step. Set-up (copying the model,
wrapping it in Opacus) is paid once a round and reported apart from the epoch time.

Noise: with 2 threads on this shared 2-core machine, any other work makes the threads
wait on each other, so the 2-thread rows are the noisiest (see the ratio ranges and the
load average above); on models this small one thread was as fast or faster.
"""


def write_results(
    *,
    results: list[ConfigResult],
    out: Path,
    rows: int,
    repeats: int,
    command: str,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
    empty_batch_probes: dict[str, dict[str, str]],
) -> Path:
    """Write ``out`` (markdown) and ``out`` with suffix .png; return the png's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(results=results, path=png)
    info = machine()
    lines = [
        "# The cost of privacy: DP-SGD against non-private training, one epoch",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `{command}`.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)} (other work shares this machine)",
        "",
        "## Settings",
        "",
        f"- {rows} training rows; one epoch = ceil(rows / batch) steps, the steps `planned_sampling` charges.",
        f"- DP-SGD: noise multiplier {NOISE_MULTIPLIER}, clipping norm {MAX_GRAD_NORM}, SGD learning rate "
        f"{LEARNING_RATE}, Poisson sampling at rate 1 / ceil(rows / batch).",
        f"- {repeats} timed repeats after one untimed warm-up; each repeat runs every variant once, "
        "in a rotated order, in this one process.",
        f"- ratio = median over repeats of (variant's epoch time / `{BASELINE}`'s epoch time in the same "
        "repeat); the range is the smallest and largest of those per-repeat ratios.",
        f"- A configuration whose baseline epochs varied by more than x{STABLE_SPREAD} (slowest / fastest) "
        "was disturbed by other work and was measured again, once; one still disturbed is marked "
        "`disturbed` with its spread. Measured again: "
        + (
            ", ".join(f"{r.workload} batch {r.batch_size} {r.threads} threads" for r in results if r.attempts > 1)
            or "none"
        )
        + ".",
        "",
        "## Ratio of epoch time to non-private training",
        "",
        summary_table(results),
        "",
        f"![ratios]({png.name})",
        "",
        "## Best private variant against Opacus's default",
        "",
        best_vs_default(results),
        "",
        "## Variants",
        "",
        *[f"- `{v.name}`: {v.what}" for v in VARIANTS],
        "",
    ]
    failures = [(r, name, err) for r in results for name, err in r.failures.items()]
    lines += ["## Variants that fail here", ""]
    lines += [
        f"- `{name}` ({r.workload}, batch {r.batch_size}, {r.threads} threads): `{err}`" for r, name, err in failures
    ] or ["- none at these sizes"]
    lines += ["", "Empty Poisson batches (20 rows, expected batch 1, 60 steps; a third of the batches empty):", ""]
    for workload, outcome in empty_batch_probes.items():
        lines.append(
            f"- {workload}: "
            + "; ".join(
                f"`{name}` {'ok' if result == 'ok' else f'fails: `{result}`'}" for name, result in outcome.items()
            )
        )
    lines += ["", "## Every configuration", ""]
    for r in results:
        flag = "" if r.stable else " (disturbed)"
        lines += [
            f"### {r.workload} ({r.n_params} parameters), batch {r.batch_size}, {r.threads} threads, "
            f"{r.steps} steps{flag}",
            "",
            detail_table(r),
            "",
        ]
    lines += [CHANGES]
    out.write_text("\n".join(lines))
    return png


def plot(*, results: list[ConfigResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r.workload for r in results))
    private = [v.name for v in VARIANTS if v.private]
    fig, axes = plt.subplots(len(workloads), 1, figsize=(13, 4.2 * len(workloads)), squeeze=False)
    width = 0.8 / len(private)
    for ax, workload in zip(axes[:, 0], workloads, strict=False):
        group = [r for r in results if r.workload == workload]
        for i, name in enumerate(private):
            ratios = [(r.timing(name).ratio if r.timing(name) else float("nan")) for r in group]
            ax.bar([g + (i - len(private) / 2 + 0.5) * width for g in range(len(group))], ratios, width, label=name)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(TARGET, color="red", linestyle="--", linewidth=1, label=f"target {TARGET}x")
        ax.set_yscale("log")
        ax.set_xticks(range(len(group)), [f"batch {r.batch_size}\n{r.threads} thr" for r in group])
        ax.set_ylabel("epoch time / non-private")
        ax.set_title(f"{workload}: DP-SGD epoch time relative to non-private training")
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
