"""The page notebooks' shared set-up, and gluing values into their text.

The runner writes one `Context` per build (`pages.json` beside the profile's runs): the
profile, its finished runs and experiments, what the comparison shows, the Studies and the
experiments each reads. Every page notebook takes the path of that file as its only
parameter and opens with one call:

    page = pages.setup(context)                                 # a page of the whole build
    page = pages.setup(context, study="seeds", reference=True)  # a Studies page

which sets the figures' style and loads the page's runs through `RunRecord`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from vgg_transfer import files
from vgg_transfer.record import RunRecord
from vgg_transfer.report import selection, stats

CONTEXT_FILE = "pages.json"


@dataclass(frozen=True)
class Context:
    """What a build tells its pages."""

    profile: str
    runs_dir: str                      # the profile's run folders
    run_names: list[str]               # its finished runs, in order
    experiments: list[str]             # its finished experiments, in order
    compare: list[str]                 # what the comparison page puts side by side
    studies: dict[str, list[str]] = field(default_factory=dict)  # study -> its experiments
    titles: dict[str, str] = field(default_factory=dict)        # study -> its page's title
    bench_file: str = "outputs/benchmarks/bench.json"            # benchmarks/bench.py's output

    def write(self, path: str | Path) -> Path:
        files.write_json(Path(path), dataclasses.asdict(self))
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> "Context":
        return cls(**files.read_json(Path(path)))


@dataclass
class Page:
    """One page's view of a build: its runs and experiments (a study's, or all of them)."""

    context: Context
    runs: list[RunRecord]
    experiments: list[str]
    study: str | None = None

    @property
    def profile(self) -> str:
        return self.context.profile

    @property
    def studies(self) -> dict[str, list[str]]:
        return self.context.studies

    @property
    def compare(self) -> list[str]:
        return self.context.compare

    @property
    def compared(self) -> list[RunRecord]:
        """The reference runs of the experiments the comparison shows."""
        return selection.of_experiments(self.runs, self.compare, reference=True)

    def comparison(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The comparison: one row per compared experiment, and their seed-paired tests."""
        compared = self.compared
        return stats.by_experiment(compared), stats.pairwise_tests(compared, self.compare)

    @cached_property
    def data(self):
        """The CIFAR-10 images the runs read (no backend needed)."""
        from vgg_transfer.core.data import load_cifar10

        return load_cifar10(self.runs[0].config.data_dir)

    def bench(self) -> dict | None:
        """The benchmark's results, or None before `benchmarks/bench.py` has run."""
        path = Path(self.context.bench_file)
        return json.loads(path.read_text()) if path.is_file() else None


def setup(context: str | Path, study: str | None = None,
          reference: bool | None = None) -> Page:
    """Set the figures' style and load a page's runs.

    Args:
        context: the build's `pages.json`, written by the runner.
        study: for a Studies page, its name: the page reads that study's experiments only.
        reference: with a study, True keeps only the runs at each experiment's own setting.
    """
    from vgg_transfer.report import figures  # here: the runner reads a Context without matplotlib

    figures.setup()
    ctx = Context.read(context)
    runs = selection.load(ctx.runs_dir, ctx.run_names)
    if study is None:
        return Page(ctx, runs, list(ctx.experiments))
    experiments = list(ctx.studies[study])
    return Page(ctx, selection.of_experiments(runs, experiments, reference), experiments, study)


# ---------------------------------------------------------------- glue

class Text(str):
    """A string that glues without quotes (`{glue:text}` shows text/plain, a repr otherwise)."""

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def glue(key: str, value) -> None:
    """A value for the page's text (`{glue:text}` with a format)."""
    from myst_nb import glue as myst_glue

    myst_glue(key, value, display=False)


def glue_text(key: str, text: str) -> None:
    """Words for the page's text, shown without quotes."""
    glue(key, Text(text))


def glue_md(key: str, markdown: str) -> None:
    """Markdown for a `{glue:md}` block (bullets, bold)."""
    from IPython.display import Markdown

    glue(key, Markdown(markdown))


CACHE_NOTE = ("The trainable part was trained on the cached outputs of the frozen blocks "
              "(frozen convolutions compute the same outputs every epoch, so they are "
              "computed once).")
RUN_VALUES = ("test_accuracy", "test_loss", "test_n", "train_n", "val_n", "epochs",
              "best_val_accuracy", "best_val_epoch", "final_train_accuracy")


def glue_run(run: RunRecord, runs: int) -> None:
    """The values an experiment page's text quotes, from the run it looks at closely."""
    m = run.metrics
    for key in RUN_VALUES:
        glue(key, getattr(m, key))
    glue("ci_low", m.test_accuracy_ci95[0])
    glue("ci_high", m.test_accuracy_ci95[1])
    glue("trainable", m.params.trainable)
    glue("train_minutes", run.training_seconds / 60)
    glue_text("name", m.name)
    glue_text("precision", run.config.precision)
    glue_text("weights_label", m.weights_label)
    glue_text("run_count", "one run" if runs == 1 else f"{runs} runs")
    glue_text("cache_note", CACHE_NOTE if m.cached_features else "")
