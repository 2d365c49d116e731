"""The runs of a profile sequentially and on a local Dask cluster, timed in one run.

    python benchmarks/cluster_bench.py [--profile smoke_study] [--workers 2] [--out FILE]

Each mode runs into a fresh temporary outputs folder with the runner the command line uses
(`runner.profile.run_experiments`): sequentially (one papermill notebook per experiment, running its
runs), then with `workers` (every run a task on the cluster, then the notebooks, which only
draw their pages; the two phases are timed apart). Prints the wall times and their ratio,
each run's time, whether every metrics.json came out the same, and the ratio to expect with
one GPU per worker: the makespan of the runs dealt longest first to that many workers over
their sum, with and without the per-run start-up measured here (a fresh process per run).
Needs CIFAR10_DIR and WEIGHTS as the runs do.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from vgg_transfer import runner
from vgg_transfer.runner import cluster
from vgg_transfer.spec.config import PROJECT_ROOT, load_experiments
from vgg_transfer.spec.profiles import resolve_profile


def makespan(seconds: list[float], workers: int) -> float:
    """The finish time of jobs dealt longest first, each to the worker free soonest."""
    free = [0.0] * workers
    for job in sorted(seconds, reverse=True):
        heapq.heapreplace(free, free[0] + job)
    return max(free)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def same_metrics(first: Path, second: Path, names: list[str]) -> tuple[int, int]:
    """(runs whose metrics.json are byte-identical, runs identical but for the words saying
    whether frozen features were computed or read from the cache)."""
    identical = wording = 0
    for name in names:
        a, b = ((folder / name / "metrics.json").read_text() for folder in (first, second))
        identical += a == b
        wording += a != b and (a.replace("(read from the feature cache)", "(computed)")
                               == b.replace("(read from the feature cache)", "(computed)"))
    return identical, wording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke_study")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "benchmarks"
                                             / "cluster.json"))
    args = parser.parse_args()
    points = resolve_profile(load_experiments(), args.profile)
    names = [p.name for p in points]
    print(f"{args.profile}: {len(points)} runs; {cpu_name()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        sequential, parallel = Path(tmp) / "sequential", Path(tmp) / "cluster"
        start = time.perf_counter()
        outcomes = runner.profile.run_experiments(runner.plan.make_plan(args.profile,
                                                                        outputs=sequential))
        seq_seconds = time.perf_counter() - start
        assert {o.status for o in outcomes} == {"ok"}, outcomes

        start = time.perf_counter()
        plan = runner.plan.make_plan(args.profile, outputs=parallel)
        tasks = cluster.run_on_cluster(points, plan.runs_dir, workers=args.workers,
                                       feature_cache=plan.feature_cache)
        runs_seconds = time.perf_counter() - start
        outcomes = runner.profile.run_experiments(plan, workers=args.workers)
        par_seconds = time.perf_counter() - start
        assert {o.status for o in outcomes} == {"ok"}, outcomes
        assert {o.status for o in tasks.values()} == {"ok"}, tasks

        seq_runs, par_runs = (Path(f) / args.profile / "runs" for f in (sequential, parallel))
        run_seconds, worker_seconds = ({n: json.loads((folder / n / "timings.json").read_text())
                                        ["wall_seconds"] for n in names}
                                       for folder in (seq_runs, par_runs))
        identical, wording = same_metrics(seq_runs, par_runs, names)

    total = sum(run_seconds.values())
    # a task's time less its run's own: the process a worker starts for it (Python, imports)
    startup = sorted(tasks[n].seconds - worker_seconds[n] for n in names)[len(names) // 2]
    ideal = makespan(list(run_seconds.values()), args.workers) / total
    with_startup = makespan([s + startup for s in run_seconds.values()], args.workers) / total
    print(f"\n{'run':<28} {'sequential s':>12} {'on a worker s':>13} {'task s':>7}")
    for name in names:
        print(f"{name:<28} {run_seconds[name]:>12.1f} {worker_seconds[name]:>13.1f} "
              f"{tasks[name].seconds:>7.1f}")
    result = {
        "profile": args.profile, "runs": len(points), "workers": args.workers,
        "cpu": cpu_name(), "cores": os.cpu_count(), "load_average_end": os.getloadavg()[0],
        "sequential_seconds": seq_seconds, "cluster_seconds": par_seconds,
        "cluster_runs_seconds": runs_seconds, "cluster_pages_seconds": par_seconds - runs_seconds,
        "ratio": par_seconds / seq_seconds, "sum_of_runs_seconds": total,
        "median_startup_seconds": startup, "gpu_ratio_ideal": ideal,
        "gpu_ratio_with_startup": with_startup, "metrics_identical": identical,
        "metrics_identical_but_cache_wording": wording,
        "run_seconds": run_seconds, "worker_run_seconds": worker_seconds,
        "task_seconds": {n: tasks[n].seconds for n in names},
    }
    print(f"""
sequential runner:          {seq_seconds / 60:6.1f} min
{args.workers} workers:                  {par_seconds / 60:6.1f} min \
(runs {runs_seconds / 60:.1f} min, then the notebooks {(par_seconds - runs_seconds) / 60:.1f} min)
ratio cluster / sequential: {par_seconds / seq_seconds:6.2f}
metrics.json identical:     {identical} of {len(names)} byte for byte, {wording} more but for \
the feature-cache wording
sum of the runs' own times: {total / 60:6.1f} min; median start-up of a run's process on a \
worker {startup:.1f} s
expected ratio, one GPU per worker ({args.workers}): {ideal:.2f} (runs alone, longest first), \
{with_startup:.2f} (with that start-up), the notebooks' pass aside
load average at the end:    {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores)""")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
