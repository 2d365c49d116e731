"""End to end: papermill runs every experiment of the smoke_study profile, then the book
builds from it, Studies included."""

import json
import os
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from conftest import PROJECT_ROOT, command
from vgg_transfer import runner
from vgg_transfer.record import SCHEMA_VERSION, RunRecord
from vgg_transfer.runner import sweep
from vgg_transfer.spec.config import load_experiments
from vgg_transfer.spec.profiles import STUDIES, resolve_grid

pytestmark = pytest.mark.slow


def _text(path):
    return BeautifulSoup(path.read_text(), "html.parser").get_text()


def test_every_run_folder_is_complete(site):
    assert {o.status for o in site["outcomes"]} == {"ok"}
    assert len(site["runs"]) == 12 and all(site["runs"].values())  # the experiments
    folder = site["outputs"] / site["profile"] / "runs"
    for names in site["runs"].values():
        for name in names:
            for file in ("config.json", "metrics.json", "history.csv", "predictions.csv",
                         "provenance.json", "timings.json", "run_key"):
                assert (folder / name / file).is_file(), (name, file)
    record = RunRecord.load(site["run"])
    metrics, provenance = record.metrics, record.provenance
    assert metrics.regime == "frozen" and metrics.cached_features and metrics.reference
    assert metrics.experiment == "frozen" and metrics.axes["seed"] == 0
    assert metrics.test_n == provenance.data["test"] and metrics.schema_version == SCHEMA_VERSION
    assert provenance.weights["name"] == "hed-bsds500"
    assert provenance.packages["tensorflow"] and provenance.hardware["cpu_count"]
    assert (site["run"] / "gradcam.npz").is_file()
    assert not any((folder / name / "model.keras").exists()  # grid points keep no model
                   for names in site["runs"].values() for name in names)
    assert not any((folder / name / "gradcam.npz").exists() for name in site["runs"]["mlp"])
    for name in site["runs"]:
        assert (site["outputs"] / site["profile"] / "notebooks" / f"{name}.ipynb").is_file()


def test_site_shows_figures_and_the_runs_accuracy(site):
    shown = f"{RunRecord.load(site['run']).metrics.test_accuracy:.1%}"
    html = site["html"]
    page = BeautifulSoup((html / "results/experiments/frozen.html").read_text(), "html.parser")
    images = [img["src"] for img in page.find_all("img") if img["src"].endswith(".png")]
    assert len(images) >= 4  # curves, sample predictions, confusion matrix, per-class
    for src in images:
        assert (html / "results/experiments" / src).is_file(), src
    assert shown in page.get_text()
    for page_name in ("results/intro", "transfer_learning", "results/vgg16", "method",
                      "results/comparison", "results/cost", "results/limitations",
                      "results/improvements", "results/conclusion", "results/reproducibility"):
        assert (html / f"{page_name}.html").is_file(), page_name


def test_studies_pages_show_this_builds_numbers(site):
    """Each study page exists and states numbers computed from the runs on disk."""
    html = site["html"] / "results" / "studies"
    assert sorted(p.stem for p in html.glob("*.html")) == sorted(STUDIES)
    folder = site["outputs"] / site["profile"] / "runs"
    metrics = {name: RunRecord.load(folder / name).metrics
               for names in site["runs"].values() for name in names}
    seeds = _text(html / "seeds.html")
    frozen = [m.test_accuracy for m in metrics.values()
              if m.experiment == "frozen" and m.reference]
    assert f"{sum(frozen) / len(frozen):.1%}" in seeds  # the mean over seeds
    assert "McNemar p =" in seeds and "in the 2 seeds" in seeds
    efficiency = _text(html / "data_efficiency.html")
    assert "100 images" in efficiency and "200 images" in efficiency
    resolution = _text(html / "resolution.html")
    assert "s per 1,000 images" in resolution and "nan" not in resolution
    calibration = _text(html / "calibration.html")
    eces = [m.test_ece for m in metrics.values() if m.experiment == "partial"]
    assert f"{sum(eces) / len(eces):.3f}" in calibration
    claims = _text(html / "claims.html")
    assert "73.7%" in claims and "33.7%" in claims  # the original's numbers, quoted
    assert "partial:" in claims
    frontier = _text(html / "frontier.html")  # scratch's smaller budgets, scored inside
    assert frontier.count("inside the 3-TFLOPs run") == 2 and "nan" not in frontier
    for page in html.glob("*.html"):  # every study says what budget produced it
        assert "per point" in _text(page) or page.stem == "protocol", page.stem
    for page in ("limitations", "improvements", "conclusion"):
        text = _text(site["html"] / "results" / f"{page}.html")
        assert "nan" not in text and "%" in text, page


def test_unchanged_runs_are_reused(site):
    plan = runner.plan.make_plan(site["profile"], site["overrides"], only=["frozen"],
                                 outputs=site["outputs"])
    outcomes = runner.profile.run_experiments(plan)
    assert [o.status for o in outcomes] == ["cached"]


def test_papermill_by_hand(site, tmp_path):
    """The README's command: papermill with -p parameters, run folder where asked."""
    run_dir = tmp_path / "run"
    # papermill's kernel start timeout is 60 s by default: on a busy machine a kernel can
    # take longer to answer, and the run then fails before its first cell
    args = [sys.executable, "-m", "papermill", str(PROJECT_ROOT / "notebooks/experiment.ipynb"),
            str(tmp_path / "out.ipynb"), "--start-timeout", "300", "-p", "regime", "frozen",
            "-p", "profile", "smoke", "-p", "epochs", "2", "-p", "run_dir", str(run_dir)]
    for key, value in site["overrides"].items():
        args += ["-p", key, str(value)]
    # started from another folder, with the data folder given relative to that one
    relative = os.path.relpath(os.environ["CIFAR10_DIR"], tmp_path)
    command(args, timeout=900, cwd=tmp_path, env={**os.environ, "CIFAR10_DIR": relative})
    record = RunRecord.load(run_dir)
    assert record.config.epochs == 2 and record.config.regime == "frozen"
    assert record.config.data_dir == str(Path(os.environ["CIFAR10_DIR"]).resolve())
    assert record.model_file is not None  # one run, not a grid run: its model is kept
    # the saved model scores another test folder beside the run, leaving its metrics alone
    metrics = (run_dir / "metrics.json").read_bytes()
    data = os.environ["CIFAR10_DIR"]
    result = command([sys.executable, "-m", "vgg_transfer", "evaluate", run_dir, "--data", data])
    (scored,) = (run_dir / "evaluations").glob("test_batch-*.json")
    evaluation = json.loads(scored.read_text())
    assert evaluation["test_n"] == record.metrics.test_n
    # same model, same images; the run scored through cached block outputs, the saved model
    # end to end, so a rounding difference may flip an image or two
    assert abs(evaluation["test_accuracy"] - record.metrics.test_accuracy) <= 0.002
    assert (run_dir / "metrics.json").read_bytes() == metrics
    assert "test accuracy" in result.stdout
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 3


def test_one_run_dir_needs_one_point(tmp_path):
    points = resolve_grid(load_experiments(), "frozen", "smoke_study")
    with pytest.raises(ValueError, match="has 4 runs under profile smoke_study.*train_size, seed"):
        sweep.run_in_notebook(points, "smoke_study", run_dir=str(tmp_path))


def test_unchanged_site_is_not_rebuilt(site, monkeypatch):
    book = site["html"].parents[1]
    profile = site["profile"]
    plan = runner.plan.make_plan(profile, outputs=site["outputs"], book=book)
    key = runner.book.site_key(plan)
    assert runner.book.site_key(plan) == key
    (site["html"] / ".site_key").write_text(key + "\n")

    def rebuilt(*args, **kwargs):
        raise AssertionError("an unchanged site was rebuilt")
    monkeypatch.setattr(runner.book, "build_pages", rebuilt)
    assert runner.book.build_report(plan) == site["index"]
    (book / "method.md").write_text((book / "method.md").read_text() + "\nChanged.\n")
    with pytest.raises(AssertionError, match="rebuilt"):
        runner.book.build_report(plan)
