"""Does bf16 change the demo's results? The same experiment trained in fp32 and in bf16, compared cell by cell.

Runs a config (default: the demo) twice with `amp=false` and `amp=true`, each its own experiment folder (its own
pretraining, transfer runs, analysis and report) under runs/bf16-check/, on the same data and stores, prepared
before either is timed. For every cell
(fraction, init, freeze) it prints the fp32 mean and standard deviation over seeds of the primary test metric,
the bf16 mean and sd, and whether the bf16 mean lies within the fp32 seed-to-seed spread (mean +- 2 sd; with
fewer than 2 fp32 seeds, not judged). A 3-seed sd is itself noisy (one cell's may be small by chance), so each cell
also gets the report's own test: bf16 - fp32 paired by seed (both share the seed's data subset and head), a paired
t-test, Holm-adjusted over the cells. It also prints both pretraining runs' test metrics and each experiment's
wall time.
On a CPU without native bf16 both runs are fp32 (run.uses_amp) and the script says so.

The last line: `bf16_results: K of N cells within the fp32 seed spread, M of N differ (paired t, Holm p < 0.05);
time bf16/fp32 = X.XX`.

Run: .venv/bin/python benchmarks/bf16_results.py [CONFIG] [key=value ...]   (default CONFIG: demo)
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

def experiment(name: str, amp: bool, config_path: Path, overrides: list[str]):
    from audio2image.config import load_config
    from audio2image.report import build_report
    from audio2image.sweep import run_sweep

    config = load_config(config_path, [*overrides, f"name={name}", f"amp={str(amp).lower()}",
                                       "out_dir=runs/bf16-check", "progress=false"])
    start = time.perf_counter()
    run_sweep(config)
    seconds = time.perf_counter() - start
    build_report(config.experiment_dir)
    return config, seconds


def prepare_data(config_path: Path, overrides: list[str]) -> None:
    from audio2image.config import load_config
    from audio2image.prepare.stores import ensure_store

    config = load_config(config_path, [*overrides, "progress=false"])
    for side in ("source", "target"):
        ensure_store(config, side)


def cells(experiment_dir: Path, metric: str) -> dict:
    """(fraction, init, freeze) -> {seed: the run's metric} over the completed runs."""
    from audio2image.report.read import read_results

    table: dict = {}
    for row in read_results(experiment_dir / "results.csv"):
        if row.get("status") == "completed" and math.isfinite(row.get(metric, math.nan)):
            table.setdefault((row["fraction"], row["init"], row["freeze"]), {})[row["seed"]] = row[metric]
    return table


def compare(ours: dict, theirs: dict) -> tuple[list[dict], int]:
    """Per cell judged (>= 2 fp32 seeds, a bf16 run): the fp32 and bf16 summaries, whether bf16's mean lies in the
    fp32 mean +- 2 sd, and the paired bf16 - fp32 difference over the seeds both have, Holm-adjusted."""
    from audio2image.report.stats import holm, paired_difference, summarize

    judged = []
    for key in sorted(ours):
        a, b = ours[key], theirs.get(key, {})
        if len(a) < 2 or not b:
            print(f"{key}: not judged (fp32 seeds {len(a)}, bf16 seeds {len(b)})")
            continue
        seeds = sorted(set(a) & set(b))
        fp32, bf16 = summarize(a.values()), summarize(b.values())
        judged.append({"key": key, "fp32": fp32, "bf16": bf16,
                       "within": abs(bf16["mean"] - fp32["mean"]) <= 2 * fp32["std"],
                       "paired": paired_difference([b[s] for s in seeds], [a[s] for s in seeds])})
    for cell, p in zip(judged, holm([cell["paired"]["p"] for cell in judged])):
        cell["holm_p"] = p
    differ = sum(1 for cell in judged if cell["holm_p"] < 0.05)
    return judged, differ


def main() -> None:
    from audio2image.cli import config_path
    from audio2image.report.read import experiment_facts, pretrain_dirs, read_config
    from audio2image.training.run import native_bf16
    from audio2image.training.taskkinds import kind_or_classification
    from audio2image.util import read_json_or_none

    args = sys.argv[1:]
    path = config_path(args.pop(0) if args and "=" not in args[0] else None)
    if not native_bf16():
        print("this CPU has no native bf16 (AMX / AVX-512 BF16): both runs would be fp32")
    prepare_data(path, args)  # both experiments then time their training alone, on the same stores
    fp32, fp32_seconds = experiment("fp32", False, path, args)
    bf16, bf16_seconds = experiment("bf16", True, path, args)
    facts = experiment_facts(fp32.experiment_dir, read_config(fp32.experiment_dir / "config.yaml"))
    metric = kind_or_classification(facts["target"]["task"]).test_metrics[0]
    for config in (fp32, bf16):
        for run_dir in pretrain_dirs(config.experiment_dir, "source"):
            result = read_json_or_none(run_dir / "result.json") or {}
            print(f"pretraining {config.name} {run_dir.name}: precision {result.get('precision')}, "
                  f"test {result.get('test')}")
    judged, differ = compare(cells(fp32.experiment_dir, metric), cells(bf16.experiment_dir, metric))
    print(f"cell (fraction, init, freeze): fp32 mean +- sd | bf16 mean +- sd | bf16 - fp32 paired by seed, Holm p"
          f"  ({metric}, x 100)")
    for cell in judged:
        f, b, d = cell["fp32"], cell["bf16"], cell["paired"]
        print(f"{cell['key']}: {100 * f['mean']:.2f} +- {100 * f['std']:.2f} | {100 * b['mean']:.2f} +- "
              f"{100 * b['std']:.2f} {'within' if cell['within'] else 'OUTSIDE'} | {100 * d['mean']:+.2f}, "
              f"p {cell['holm_p']:.2f}")
    within = sum(cell["within"] for cell in judged)
    print(f"experiment wall time: fp32 {fp32_seconds:.1f} s, bf16 {bf16_seconds:.1f} s")
    print(f"bf16_results: {within} of {len(judged)} cells within the fp32 seed spread, {differ} of {len(judged)} "
          f"differ (paired t, Holm p < 0.05); time bf16/fp32 = {bf16_seconds / fp32_seconds:.2f}")


if __name__ == "__main__":
    main()
