"""Imports run one way: cli -> runner -> {run, report} -> record -> spec -> the base (the
package's constants, `files`, `core`); run and report never import each other, and the page
side loads no backend."""

import ast
import subprocess
import sys
from pathlib import Path

import vgg_transfer

PACKAGE = Path(vgg_transfer.__file__).parent
RANK = {"__main__": 6, "cli": 5, "runner": 4, "run": 3, "report": 3, "record": 2, "spec": 1,
        "files": 0, "core": 0, "": -1}


def layer(module: str, package: Path = PACKAGE) -> str:
    """The layer of a module; a name of the package itself (`CLASS_NAMES`) is the base."""
    parts = module.split(".")
    if len(parts) < 2:
        return ""
    name = parts[1]
    if name in RANK or (package / name).is_dir() or (package / f"{name}.py").is_file():
        return name
    return ""


def imports(path: Path, module: str) -> list[str]:
    """Every vgg_transfer module `path` imports, at any depth of its code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("vgg_transfer"):
            found += [node.module if node.module != "vgg_transfer"
                      else f"vgg_transfer.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("vgg_transfer")]
    return found


def against_the_rule(package: Path = PACKAGE) -> list[str]:
    wrong = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(["vgg_transfer", *path.relative_to(package).with_suffix("").parts])
        source = layer(module.removesuffix(".__init__"), package)
        for target in imports(path, module):
            target_layer = layer(target, package)
            if target_layer == source:
                continue
            if target_layer not in RANK or RANK[target_layer] >= RANK[source]:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_imports_run_one_way():
    assert against_the_rule() == []


def test_the_rule_catches_an_import_against_it(tmp_path):
    package = tmp_path / "vgg_transfer"
    (package / "spec").mkdir(parents=True)
    (package / "spec" / "config.py").write_text("from vgg_transfer.run.backend import ENV\n")
    (package / "report").mkdir()
    (package / "report" / "pages.py").write_text(
        "def data():\n    from vgg_transfer.run import training\n")
    assert against_the_rule(package) == [
        "vgg_transfer.report.pages imports vgg_transfer.run",
        "vgg_transfer.spec.config imports vgg_transfer.run.backend"]


def test_the_page_side_sets_no_backend_environment():
    code = ("import os, sys; before = dict(os.environ)\n"
            "import vgg_transfer.report.pages, vgg_transfer.report.answer, "
            "vgg_transfer.report.discussion, vgg_transfer.report.studies.frontier\n"
            "print(sorted(k for k in os.environ if os.environ.get(k) != before.get(k)), "
            "sorted(m for m in sys.modules if m.startswith(('vgg_transfer.run', 'keras', "
            "'tensorflow', 'jax', 'torch'))))")
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith(("TF_", "KERAS"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[] []"
