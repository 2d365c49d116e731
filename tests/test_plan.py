"""A command's plan: the experiments file parsed once, every point resolved once, and each
experiment's kernel handed its points; the template's parameters are the config's fields."""

import json
import types

import papermill
import yaml

from conftest import PROJECT_ROOT
from vgg_transfer import cli
from vgg_transfer.runner import plan as plans
from vgg_transfer.runner import profile, sweep
from vgg_transfer.spec import config
from vgg_transfer.spec.config import ExperimentConfig

TEMPLATE = PROJECT_ROOT / "notebooks" / "experiment.ipynb"


def _count_parses(monkeypatch) -> list:
    """Every parse of an experiments file (a mapping with profiles) from now on."""
    parses = []

    def safe_load(text):
        value = yaml.safe_load(text)
        if isinstance(value, dict) and "profiles" in value:
            parses.append(value)
        return value
    monkeypatch.setattr(config, "yaml", types.SimpleNamespace(safe_load=safe_load,
                                                               safe_dump=yaml.safe_dump))
    return parses


def test_a_command_parses_the_experiments_file_once(tiny_cifar, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_cifar))
    monkeypatch.setenv("WEIGHTS", "hed-bsds500")
    parses, kernels = _count_parses(monkeypatch), {}

    def kernel(template, output, parameters, kernel_name, env=None):
        # what the experiment's kernel does first: its points, from the runner's file
        kernels[parameters["experiment"]] = sweep.template_runs(parameters)
        output.write_text(TEMPLATE.read_text())
    monkeypatch.setattr(profile, "execute", kernel)
    code = cli.main(["run", "--profile", "smoke", "--outputs", str(tmp_path / "out"),
                     "--set", "epochs=2"])
    assert code == 0
    assert len(parses) == 1
    expected = plans.make_plan("smoke", {"epochs": 2}, outputs=tmp_path / "out")
    assert len(parses) == 2  # make_plan above is a second command
    assert {name: [p.cfg for p in points] for name, points in kernels.items()} == \
        {name: [p.cfg for p in points] for name, points in expected.experiments().items()}
    assert all(p.cfg.epochs == 2 for points in kernels.values() for p in points)


def test_points_survive_the_file_to_the_kernel(tiny_cifar, tmp_path):
    spec = config.load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    from vgg_transfer.spec.profiles import resolve_grid

    points = resolve_grid(spec, "frozen", "smoke_study", env=env)
    assert len(points) > 1
    path = plans.write_grid(points, tmp_path / "frozen.json")
    assert plans.read_grid(path) == points
    assert json.loads(path.read_text())[0]["experiment"] == "frozen"


def test_the_template_takes_every_config_field():
    cell = json.loads(TEMPLATE.read_text())["cells"][1]
    assert "".join(cell["source"]) == sweep.template_parameters(), (
        "notebooks/experiment.ipynb's parameters cell differs from "
        "vgg_transfer.runner.sweep.template_parameters(); paste that function's output in")
    declared = set(papermill.inspect_notebook(str(TEMPLATE)))
    fields = set(ExperimentConfig.model_fields) - {"name"}
    assert declared == fields | set(sweep.RUNNER_PARAMETERS)
    assert {"early_stopping", "monitor", "save_model"} <= declared


def test_a_template_value_reaches_the_config(tiny_cifar, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_cifar))
    namespace = {name: None for name in ExperimentConfig.model_fields}
    namespace.update(experiment="frozen", profile="smoke", early_stopping=3, monitor="val_loss")
    (point,) = sweep.template_runs(namespace)
    assert (point.cfg.early_stopping, point.cfg.monitor) == (3, "val_loss")


def test_a_failed_notebook_is_reported_by_its_message_not_its_code():
    quoted = ('\n---\nRunsFailed    Traceback (most recent call last)\nCell In[6], line 1\n'
              '----> 1 raise RunsFailed(f"{len(failed)} of {len(outcomes)} runs failed: "\n'
              '    255 + "; ".join(f"{o.name}: {o.error}" for o in failed))\n\n'
              '\x1b[0;31mRunsFailed\x1b[0m: 1 of 1 runs failed: scratch: 60000 is more than '
              'the 45000 training images left\n')
    assert sweep.one_line(RuntimeError(quoted)) == (
        "1 of 1 runs failed: scratch: 60000 is more than the 45000 training images left")
    assert sweep.one_line(ValueError("no error word here")) == "no error word here"


def test_the_runner_and_papermill_by_hand_share_the_outputs_folders_feature_cache(tmp_path):
    """The cache folder is passed down from the plan, never guessed from a folder's name:
    the runner's runs and a hand-run template on the same outputs folder read one cache."""
    from vgg_transfer import files

    plan = plans.make_plan("smoke", {}, outputs=tmp_path / "out")
    assert plan.feature_cache == tmp_path / "out" / files.FEATURE_CACHE
    params = profile.notebook_parameters(plan, "frozen", plan.profile_grid_runs["frozen"], False)
    assert params["feature_cache"] == str(plan.feature_cache)
    # by hand, without the parameter: the default outputs folder's, as the runner's default
    assert files.feature_cache_of(sweep.MANUAL.parent) == plans.make_plan("smoke", {}).feature_cache
