"""The page side's plumbing: the book's declaration, the table of contents, the pages' shared
set-up, and the rule that no page module loads a backend."""

import json
import subprocess
import sys

import nbformat
import pytest
import yaml

from conftest import PROJECT_ROOT
from test_report import fake_run, mask
from vgg_transfer import runner
from vgg_transfer.report import pages
from vgg_transfer.spec.config import ConfigError, load_experiments
from vgg_transfer.spec.profiles import STUDIES, book_pages

NOTEBOOKS = PROJECT_ROOT / "notebooks"
PAGES, STUDY_PAGES = NOTEBOOKS / "pages", NOTEBOOKS / "studies"
SRC = PROJECT_ROOT / "src"
# The page side, found by folder: every module of report/ (and its studies), with the record,
# the spec and the runner that builds the book.
PAGE_MODULES = (*sorted(".".join(p.relative_to(SRC).with_suffix("").parts)
                        for p in (SRC / "vgg_transfer" / "report").rglob("*.py")),
                "vgg_transfer.record", "vgg_transfer.spec.regimes", "vgg_transfer.spec.profiles",
                "vgg_transfer.runner.book", "vgg_transfer.runner.profile")


def test_the_books_declaration_names_pages_that_exist():
    declaration = book_pages(load_experiments())
    assert declaration["root"] == "intro"
    named = [page for part in declaration["parts"] if isinstance(part["pages"], list)
             for page in part["pages"]]
    for page in [declaration["root"], *named]:
        source = (PROJECT_ROOT / "book" / page if page.endswith(".md")
                  else PAGES / f"{page}.ipynb")
        assert source.is_file(), page
    for study in STUDIES:
        assert (STUDY_PAGES / f"{study}.ipynb").is_file(), study
    # an experiments file of one's own builds the project's book
    assert book_pages({"experiments": {}}) == declaration


@pytest.mark.parametrize("book, message", [
    ({"root": "intro"}, "a mapping with `root`"),
    ({"root": "intro", "parts": [{"caption": "A"}]}, "caption` and `pages`"),
    ({"root": "intro", "parts": [{"caption": "A", "pages": "everything"}]},
     "one of experiments, studies"),
    ({"root": "intro", "parts": [{"caption": "A", "pages": ["cost", "cost"]}]},
     "page 'cost' is declared twice"),
    ({"root": "intro", "parts": [{"caption": "A", "pages": "studies"},
                                 {"caption": "B", "pages": "studies"}]}, "'studies' is declared"),
])
def test_a_bad_declaration_names_what_is_wrong(book, message):
    with pytest.raises(ConfigError, match=message):
        book_pages({"book": book})


def test_toc_follows_the_declaration(tmp_path):
    declaration = book_pages(load_experiments())
    runner.book.write_toc(declaration, ["frozen", "scratch"], [], tmp_path)
    toc = yaml.safe_load((tmp_path / "_toc.yml").read_text())
    assert toc["root"] == "results/intro"
    assert [part["caption"] for part in toc["parts"]] == [
        "Background", "Experiments", "Results", "Discussion"]  # no studies: no Studies part
    files = [[c["file"] for c in part["chapters"]] for part in toc["parts"]]
    assert files[0] == ["transfer_learning", "results/vgg16", "method"]
    assert files[1] == ["results/experiments/frozen", "results/experiments/scratch"]
    runner.book.write_toc(declaration, ["frozen"], ["seeds", "protocol"], tmp_path)
    toc = yaml.safe_load((tmp_path / "_toc.yml").read_text())
    assert toc["parts"][3]["chapters"] == [{"file": "results/studies/seeds"},
                                          {"file": "results/studies/protocol"}]


def test_page_notebooks_come_from_the_declaration(tmp_path):
    declaration = book_pages(load_experiments())
    targets = runner.book._page_notebooks(declaration, ["seeds"], tmp_path)
    names = [(template.stem, output.relative_to(tmp_path).as_posix())
             for template, output in targets]
    assert names[:3] == [("intro", "intro.ipynb"), ("vgg16", "vgg16.ipynb"),
                         ("comparison", "comparison.ipynb")]
    assert ("seeds", "studies/seeds.ipynb") in names
    assert all(template.is_file() for template, _ in targets)
    assert not any(name.endswith(".md") for name, _ in names)


def _build(tmp_path):
    runs = [fake_run(name, name, seed, mask(n + seed)) for seed in (0, 1)
            for name, n in (("scratch", 50), ("frozen", 100))]
    runs.append(fake_run("frozen", "frozen", 0, mask(30), train_n=100,
                         axes={"train_size": 100}, reference=False))
    for run in runs:
        run.write(tmp_path / "runs" / run.name)
    context = pages.Context(
        profile="test", runs_dir=str(tmp_path / "runs"),
        run_names=[run.name for run in runs] + ["never-finished"],
        experiments=["scratch", "frozen"], compare=["scratch", "frozen"],
        studies={"seeds": ["frozen", "scratch"]}, titles={"seeds": "Seeds"},
        bench_file=str(tmp_path / "none.json"))
    return context.write(tmp_path / pages.CONTEXT_FILE), context


def test_one_setup_call_loads_a_pages_runs(tmp_path):
    path, context = _build(tmp_path)
    assert pages.Context.read(path) == context
    page = pages.setup(path)
    assert [run.name for run in page.runs] == ["scratch-s0", "frozen-s0", "scratch-s1",
                                               "frozen-s1", "frozen-n100-s0"]
    assert page.experiments == ["scratch", "frozen"] and page.bench() is None
    assert len(page.compared) == 4  # reference runs only
    table, tests = page.comparison()
    assert table["experiment"].tolist() == ["scratch", "frozen"] and len(tests) == 1
    study = pages.setup(path, study="seeds", reference=True)
    assert [run.name for run in study.runs] == ["frozen-s0", "frozen-s1", "scratch-s0",
                                                "scratch-s1"]
    assert study.experiments == ["frozen", "scratch"] and study.study == "seeds"


def _code_cells(name):
    return [cell for cell in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
            if cell.cell_type == "code"]


# every page template, as a path under notebooks/ without its suffix
TEMPLATES = sorted(str(p.relative_to(NOTEBOOKS).with_suffix("")) for p in NOTEBOOKS.rglob("*.ipynb")
                   if p.stem not in ("experiment", "vgg16"))


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_page_takes_the_context_and_sets_up_once(name):
    cells = _code_cells(name)
    parameters = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and parameters[0] is cells[0]
    assert "remove-cell" in parameters[0].metadata["tags"]
    assert runner.papermill.papermill_parameters(NOTEBOOKS / f"{name}.ipynb") == {"context"}
    setup = cells[1]
    assert "remove-cell" in setup.metadata["tags"] and "pages.setup(context" in setup.source
    assert sum("pages.setup(" in cell.source for cell in cells) == 1


def test_the_experiment_page_opens_without_plumbing(tmp_path):
    """Its parameters, papermill's injected values and the set-up stay off the page: the first
    thing a reader sees after the title is text, then the configuration table."""
    nb = nbformat.read(NOTEBOOKS / "experiment.ipynb", as_version=4)
    injected = nbformat.v4.new_code_cell("experiment = 'frozen'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(2, injected)
    executed = tmp_path / "executed.ipynb"
    nbformat.write(nb, executed)
    run = fake_run("frozen", "frozen", 0, mask(100))
    runner.book._title_experiment(executed, tmp_path / "page.ipynb", "frozen", [run])
    page = nbformat.read(tmp_path / "page.ipynb", as_version=4)
    assert page.cells[0].source.startswith(
        "# Experiment: frozen\n\n*pretrained VGG16 base frozen; only the head trains; "
        "weights: random init.*")
    shown = [cell for cell in page.cells
             if "remove-cell" not in cell.metadata.get("tags", [])]
    assert [cell.cell_type for cell in shown[:3]] == ["markdown", "markdown", "code"]
    assert "config_table" in shown[2].source


def test_page_modules_never_load_a_backend():
    assert "vgg_transfer.report.studies.depth" in PAGE_MODULES
    probe = ("import sys; "
             + "; ".join(f"import {name.removesuffix('.__init__')}" for name in PAGE_MODULES)
             + "; print(sorted(m for m in sys.modules if m.split('.')[0] in "
               "('tensorflow', 'keras', 'jax', 'torch')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_template_is_valid_nbformat_with_cell_ids():
    for path in sorted(NOTEBOOKS.rglob("*.ipynb")):
        raw = json.loads(path.read_text())
        assert all("id" in cell for cell in raw["cells"]), path  # nbformat 4.5 wants one each
        nbformat.validate(nbformat.read(path, as_version=4))
