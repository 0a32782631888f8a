"""python -m benchmarks.heart_disease.merge [--store FOLDER] [--results RESULTS.md]

One table of the DP rows of every stored run (``benchmarks.heart_disease.store``), by
family and total epsilon, written into RESULTS.md between two markers (the section
"All five epsilons"), with a plot of accuracy against epsilon beside it. The rest of
RESULTS.md (the run that wrote it) is left as it is. Figures are read from the stored
files, never recomputed: a run stored with its per-seed figures gives its interval
here; a row imported from an older RESULTS.md (``--import-markdown``) keeps the
summary that file printed, and says so.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from benchmarks.heart_disease.report import MAJORITY_PUBLISHED, interval
from benchmarks.heart_disease.store import DEFAULT_STORE, load_runs

BEGIN = "<!-- all-epsilons: written by python -m benchmarks.heart_disease.merge from the stored runs -->"
END = "<!-- all-epsilons: end -->"
FAMILY_NAMES = {
    "synth-": "tuned on synthetic hospitals (free)",
    "tuned-": "every candidate charged",
    "tuned2-": "two-stage: synthetic shortlist of 2, charged",
    "uncharged": "tuning NOT charged",
}
CENTRES = ("cleveland", "hungarian", "switzerland", "va")


def _summary(row: dict) -> dict:
    """Mean, sd, interval, AUC and largest spend of a stored row, per-seed or imported."""
    if "accuracy" in row:
        acc = row["accuracy"]
        low, high = interval(acc) if len(acc) > 1 else (None, None)
        return {
            "mean": float(np.mean(acc)),
            "sd": float(np.std(acc)) if len(acc) > 1 else 0.0,
            "low": low,
            "high": high,
            "seeds": len(acc),
            "auc": float(np.mean(row["auc"])),
            "spent": max(row["spent"]) if row["spent"] else None,
        }
    return {k: row.get(k) for k in ("mean", "sd", "low", "high", "seeds", "auc", "spent")}


def dp_rows(runs: list[dict]) -> list[dict]:
    """Every DP row of every run, with its run's provenance, sorted by family and epsilon."""
    out = []
    for run in runs:
        for row in run["rows"]:
            if row.get("family") not in FAMILY_NAMES or row.get("target_epsilon") is None:
                continue
            out.append({**row, **_summary(row), "run": run})
        for eps, why in run.get("refused", {}).items():
            out.append({"family": "tuned-", "target_epsilon": float(eps), "refused": why, "run": run})
        for eps, why in run.get("two_stage", {}).get("refused", {}).items():
            out.append({"family": "tuned2-", "target_epsilon": float(eps), "refused": why, "run": run})
    order = list(FAMILY_NAMES)
    return sorted(out, key=lambda r: (order.index(r["family"]), r["target_epsilon"], r["run"]["finished_utc"]))


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(rows: list[dict]) -> str:
    head = [
        "family",
        "total epsilon",
        "accuracy (mean ± sd [95% interval])",
        "seeds",
        "AUC",
        "epsilon spent (max over sites)",
        "vs majority 0.721",
        *CENTRES,
        "run",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        if "refused" in r:
            blank = ["-"] * (len(head) - 4)
            cells = [FAMILY_NAMES[r["family"]], f"{r['target_epsilon']:g}", "**not run: plan refused**", *blank]
            lines.append("| " + " | ".join([*cells, r["run"]["label"]]) + " |")
            continue
        acc = f"{r['mean']:.3f} ± {r['sd']:.3f}"
        if r["low"] is not None:
            acc += f" [{r['low']:.3f}, {r['high']:.3f}]"
        cells = [
            FAMILY_NAMES[r["family"]],
            f"{r['target_epsilon']:g}",
            acc,
            str(r["seeds"]),
            _fmt(r["auc"]),
            _fmt(r["spent"]),
            f"{r['mean'] - MAJORITY_PUBLISHED:+.3f}",
            *[_fmt(r["per_centre"].get(c)) for c in CENTRES],
            r["run"]["label"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy (mean ± sd over seeds) against total epsilon, one line per family."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    for family, colour in zip(FAMILY_NAMES, ("#1f77b4", "#d62728", "#9467bd", "#999999"), strict=True):
        mine = {}
        for r in rows:  # the newest run per epsilon
            if r["family"] == family and "refused" not in r:
                mine[r["target_epsilon"]] = r
        if not mine:
            continue
        eps = sorted(mine)
        ax.errorbar(
            eps,
            [mine[e]["mean"] for e in eps],
            yerr=[mine[e]["sd"] for e in eps],
            marker="o",
            capsize=3,
            color=colour,
            label=FAMILY_NAMES[family],
        )
    ax.axhline(MAJORITY_PUBLISHED, color="k", ls="--", lw=1, label="majority label 0.721")
    ax.axhline(0.80, color="#2ca02c", ls=":", lw=1.5, label="target 0.80")
    ax.set_xscale("log", base=2)
    ax.set_xticks([0.5, 1, 2, 4, 8], ["0.5", "1", "2", "4", "8"])
    ax.set_xlabel("total epsilon per hospital (tuning included, except the grey line)")
    ax.set_ylabel("mean per-centre test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def section(runs: list[dict], *, png: str) -> str:
    rows = dp_rows(runs)
    sources = [
        f"- {run['label']}: `{run['command']}`, finished {run['finished_utc']}"
        + (f", {run['seconds']:.0f} s" if run.get("seconds") else "")
        + (f"; {run['note']}" if run.get("note") else "")
        + (f" (load average then: {_load(run)})" if _load(run) else "")
        for run in runs
    ]
    plans = []
    for run in runs:
        for eps, plan in sorted(run.get("plans", {}).items(), key=lambda kv: float(kv[0])):
            plans.append(
                f"- total {eps} ({run['label']}): each of the charged candidates at epsilon "
                f"{plan['candidate_epsilon']:.3g} per hospital, the final training at {plan['final_target']:.3g}; "
                f"planned total {plan['planned_total']:.3f} (adding the runs' epsilons would say {plan['naive_sum']:.3g})"
            )
    refusals = [
        f"- {FAMILY_NAMES[r['family']]}, total {r['target_epsilon']:g} ({r['run']['label']}): {r['refused']}"
        for r in rows
        if "refused" in r
    ]
    for run in runs:
        two = run.get("two_stage", {})
        for eps, plan in sorted(two.get("plans", {}).items(), key=lambda kv: float(kv[0])):
            plans.append(
                f"- two-stage, total {eps} ({run['label']}): shortlist "
                + " | ".join(two.get("shortlist", {}).get(eps, []))
                + f"; each at epsilon {plan['candidate_epsilon']:.3g}, the final training at {plan['final_target']:.3g}; "
                f"planned total {plan['planned_total']:.3f} (adding would say {plan['naive_sum']:.3g})"
            )
    chosen = [
        f"- {FAMILY_NAMES[r['family']]}, eps {r['target_epsilon']:g} ({r['run']['label']}): " + " | ".join(r["chosen"])
        for r in rows
        if r.get("chosen") and "refused" not in r
    ]
    return "\n".join(
        [
            BEGIN,
            "## All five epsilons: every stored run",
            "",
            "Every DP row of every stored run (`benchmarks/heart_disease/stored_runs/`), by family and total epsilon per "
            "hospital. Same protocol, data, split and candidates as above; each run chose its own DP "
            "hyperparameters (the searches draw their noise from OS entropy), so rows of different runs differ by "
            "that too. Intervals are 95% t-intervals over seeds where the run stored its per-seed figures.",
            "",
            table(rows),
            "",
            f"![accuracy against total epsilon]({png})",
            "",
            "Runs:",
            "",
            *sources,
            "",
            "The charged search's split:",
            "",
            *plans,
            *refusals,
            "",
            "Chosen configurations:",
            "",
            *chosen,
            "",
            END,
        ]
    )


def _load(run: dict) -> str:
    for line in run.get("machine", []):
        if line.startswith("- load average"):
            return line.split(":", 1)[1].strip()
    return ""


def write(*, store: Path, results: Path) -> Path:
    runs = load_runs(store)
    if not runs:
        raise SystemExit(f"no stored runs in {store}: run the benchmark with --store {store} first.")
    for run in runs:
        run.setdefault("label", f"run of {run['finished_utc']}")
    png = results.with_name(results.stem + "_epsilons.png")
    plot(dp_rows(runs), png)
    text = results.read_text()
    block = section(runs, png=png.name)
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    results.write_text(text)
    return results


def import_markdown(
    *, results: Path, store: Path, label: str, heading: str, command: str, finished: str, seeds: int, note: str = ""
) -> Path:
    """Store the DP rows of a table in an older RESULTS.md (under ``## heading`` up to the
    next ``## ``) as a summary-only run: the figures that file printed, nothing else."""
    text = results.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    if not match:
        raise SystemExit(f"no section '## {heading}' in {results}")
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| DP") or len(cells) < 10:
            continue
        name = cells[0]
        family = "uncharged" if "not charged" in name else "synth-" if "synthetic" in name else "tuned-"
        eps = float(re.search(r"eps ([0-9.]+)", name).group(1))
        acc = re.match(r"([0-9.]+) ± ([0-9.]+)(?: \[([0-9.]+), ([0-9.]+)\])?", cells[1])
        rows.append(
            {
                "name": name,
                "family": family,
                "target_epsilon": eps,
                "mean": float(acc.group(1)),
                "sd": float(acc.group(2)),
                "low": float(acc.group(3)) if acc.group(3) else None,
                "high": float(acc.group(4)) if acc.group(4) else None,
                "seeds": seeds,
                "auc": float(cells[2]),
                "spent": float(cells[3].split()[0]),
                "per_centre": dict(zip(CENTRES, (float(c) for c in cells[5:9]), strict=True)),
                "chosen": [],
            }
        )
    record = {
        "label": label,
        "command": command,
        "finished_utc": finished,
        "note": f"summary imported from {note or results.name} (section '{heading}'); per-seed figures not kept",
        "rows": rows,
    }
    path = Path(store) / f"run-{finished.replace('-', '').replace(':', '').replace(' ', 'T')[:13]}-imported.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.heart_disease.merge", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args(argv)
    print(f"wrote {write(store=args.store, results=args.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
