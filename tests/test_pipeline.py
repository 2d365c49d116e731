"""End to end: papermill runs the template on the smoke profile, then the book builds from it."""

import json
import subprocess
import sys

import pytest
from bs4 import BeautifulSoup

from vgg_transfer import runner

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_run_folder_is_complete(site):
    assert [o.status for o in site["outcomes"]] == ["ok"]
    run = site["run"]
    for name in ("config.json", "metrics.json", "history.csv", "predictions.csv",
                 "provenance.json", "timings.json", "notebook.ipynb", "run_key"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    provenance = json.loads((run / "provenance.json").read_text())
    assert metrics["regime"] == "frozen" and metrics["cached_features"]
    assert metrics["test_n"] == provenance["data"]["test"]
    assert provenance["weights"]["name"] == "hed-bsds500"
    assert provenance["packages"]["tensorflow"] and provenance["hardware"]["cpu_count"]


def test_site_shows_figures_and_the_runs_accuracy(site):
    metrics = json.loads((site["run"] / "metrics.json").read_text())
    shown = f"{metrics['test_accuracy']:.1%}"
    page = BeautifulSoup((site["html"] / "results/experiments/frozen.html").read_text(),
                         "html.parser")
    images = [img["src"] for img in page.find_all("img") if img["src"].endswith(".png")]
    assert len(images) >= 4  # curves, sample predictions, confusion matrix, per-class
    for src in images:
        assert (site["html"] / "results/experiments" / src).is_file(), src
    assert shown in page.get_text()
    comparison = (site["html"] / "results/comparison.html").read_text()
    assert shown in BeautifulSoup(comparison, "html.parser").get_text()
    for page_name in ("results/intro", "transfer_learning", "results/vgg16", "method",
                      "limitations", "improvements", "results/conclusion",
                      "results/reproducibility"):
        assert (site["html"] / f"{page_name}.html").is_file(), page_name


def test_unchanged_run_is_reused(site):
    outcomes = runner.run_experiments("smoke", site["overrides"], only=["frozen"],
                                      outputs=site["outputs"])
    assert [o.status for o in outcomes] == ["cached"]


def test_papermill_by_hand(site, tmp_path):
    """The README's command: papermill with -p parameters, run folder where asked."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "papermill", str(PROJECT_ROOT / "notebooks/experiment.ipynb"),
            str(tmp_path / "out.ipynb"), "-p", "regime", "frozen", "-p", "profile", "smoke",
            "-p", "epochs", "2", "-p", "run_dir", str(run_dir)]
    for key, value in site["overrides"].items():
        args += ["-p", key, str(value)]
    subprocess.run(args, check=True, capture_output=True, timeout=600, cwd=tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["epochs"] == 2 and config["regime"] == "frozen"
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 3


def test_unchanged_site_is_not_rebuilt(site, monkeypatch):
    book = site["html"].parents[1]
    key = runner.site_key("smoke", outputs=site["outputs"], book=book)
    assert runner.site_key("smoke", outputs=site["outputs"], book=book) == key
    (site["html"] / ".site_key").write_text(key + "\n")

    def rebuilt(*args, **kwargs):
        raise AssertionError("an unchanged site was rebuilt")
    monkeypatch.setattr(runner, "build_pages", rebuilt)
    assert runner.build_report("smoke", outputs=site["outputs"], book=book) == site["index"]
    (book / "method.md").write_text((book / "method.md").read_text() + "\nChanged.\n")
    with pytest.raises(AssertionError, match="rebuilt"):
        runner.build_report("smoke", outputs=site["outputs"], book=book)
