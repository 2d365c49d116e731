"""Command line: `python -m vgg_transfer {run,build,report,clean,list,evaluate}`.

    python -m vgg_transfer report --profile quick      # run the experiments, build the site
    python -m vgg_transfer run --profile quick --only frozen --set epochs=2
    python -m vgg_transfer build --profile quick       # pages + site from finished runs
    python -m vgg_transfer run --profile study_gpu --workers 4   # the runs on 4 GPUs (Dask)
    python -m vgg_transfer evaluate outputs/quick/runs/finetune --data DIR  # a saved model
    python -m vgg_transfer clean
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from vgg_transfer.spec.config import ConfigError, load_experiments, parse_set
from vgg_transfer.spec.profiles import experiment_names, profile_names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgg_transfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, runs=True):
        p.add_argument("--profile", default="quick", help="profile in experiments.yaml")
        p.add_argument("--experiments", default=None, help="experiments file (YAML)")
        p.add_argument("--kernel", default=None,
                       help="Jupyter kernel for papermill (e.g. one with a GPU)")
        p.add_argument("--outputs", default=None, type=Path,
                       help="folder for run folders and caches (default: outputs/)")
        if runs:
            p.add_argument("--only", action="append", default=None,
                           help="run only this experiment (repeatable)")
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a config value for every experiment (repeatable)")
            p.add_argument("--force", action="store_true", help="re-run even unchanged runs")
            where = p.add_mutually_exclusive_group()
            where.add_argument("--workers", type=int, default=None, metavar="N",
                               help="run the runs on a local Dask cluster of N workers "
                                    "(one per GPU when there are GPUs)")
            where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                               help="run the runs on a running Dask cluster "
                                    "(e.g. tcp://host:8786); the outputs folder must be on "
                                    "a filesystem every worker sees")

    common(sub.add_parser("run", help="run a profile's experiments"))
    build = sub.add_parser("build", help="build the book from finished runs")
    common(build, runs=False)
    build.add_argument("--force", action="store_true", help="rebuild even an unchanged site")
    report = sub.add_parser("report", help="run the experiments, then build the book")
    common(report)
    for p in (sub.choices["build"], report):
        p.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    clean = sub.add_parser("clean", help="remove outputs and the built site")
    clean.add_argument("--profile", default=None, help="only this profile's runs")
    sub.add_parser("list", help="list the profiles and their experiments")
    evaluate = sub.add_parser("evaluate", help="score a run's saved model on another test set")
    evaluate.add_argument("run_dir", type=Path, help="a run folder holding model.keras")
    evaluate.add_argument("--data", required=True, type=Path,
                          help="a cifar-10-batches-py folder (its test_batch is scored)")
    return parser


def _evaluate(args) -> int:
    """`evaluate RUN_DIR --data DIR`: one line with the accuracy, the result in a file."""
    from vgg_transfer.files import read_json
    from vgg_transfer.run import rescore

    out = rescore.evaluate_saved(args.run_dir, args.data)
    result = read_json(out)
    low, high = result["test_accuracy_ci95"]
    print(f"{result['run']}: test accuracy {result['test_accuracy']:.2%} on "
          f"{result['test_n']:,} images (95% CI {low:.2%}–{high:.2%}); written to {out}")
    return 0


class _CellBanners(logging.Filter):
    """Keep the notebooks' own lines (one per epoch); drop papermill's per-cell banners,
    object reprs of displayed tables and blank lines. (TensorFlow's C++ start-up lines never
    reach the cells: see `runner.papermill.execute`.)"""

    BANNERS = ("Executing Cell", "Ending Cell", "Executing notebook", "Input Notebook",
               "Output Notebook", "Working directory", "Black is not", "<Figure size")

    def filter(self, record):
        lines = [line for line in record.getMessage().splitlines()
                 if line.strip() and not line.startswith(self.BANNERS)
                 and not re.fullmatch(r"<.* at 0x[0-9a-f]+>", line.strip())]
        if not lines:
            return False
        record.msg, record.args = "\n".join(lines), ()
        return True


def _log_notebook_output() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_CellBanners())
    logger = logging.getLogger("papermill")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _run_and_build(args, plan) -> list:
    """The runs of a plan and its site, as the command asks; returns the failed experiments."""
    from vgg_transfer import runner

    failed = []
    if args.command in ("run", "report"):
        outcomes = runner.profile.run_experiments(plan, args.force, workers=args.workers,
                                                  scheduler=args.scheduler)
        failed = [o for o in outcomes if o.status == "failed"]
        print("\nsummary: " + ", ".join(f"{o.name} {o.status}" for o in outcomes))
    if args.command in ("build", "report"):
        index = runner.book.build_report(plan, strict=not args.no_strict,
                                         force=getattr(args, "force", False))
        print(f"\nThe report: {index}")
    return failed


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _log_notebook_output()
    from vgg_transfer import runner
    from vgg_transfer.runner.plan import make_plan

    start = time.perf_counter()
    try:
        if args.command == "clean":
            for path in runner.profile.clean(args.profile):
                print(f"removed {path}")
            return 0
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "list":
            spec = load_experiments()
            for name in profile_names(spec):
                print(f"{name}: {', '.join(experiment_names(spec, name))}")
            return 0
        plan = make_plan(args.profile, parse_set(getattr(args, "set", None) or []),
                         getattr(args, "only", None), args.experiments,
                         args.outputs or runner.plan.OUTPUTS, kernel=args.kernel)
        with runner.lock.command_lock(plan.outputs, plan.profile):
            failed = _run_and_build(args, plan)
    except (runner.lock.Busy, runner.lock.NotWritable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept, and an interrupted run resumes from "
              "its last checkpoint on the next run", file=sys.stderr)
        return 130
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # one line for the user; the traceback is in the notebook
        from vgg_transfer.runner.sweep import one_line

        print(f"error: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return 1
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min")
    if failed:
        print(f"error: {len(failed)} experiment(s) failed: "
              + "; ".join(f"{o.name}: {o.error}" for o in failed), file=sys.stderr)
        return 1
    return 0
