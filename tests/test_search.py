"""A line's learning rate, chosen on validation among candidates that run once per line."""

import json

import pytest

from vgg_transfer.spec.config import make_config
from vgg_transfer.spec.profiles import GridRun


def _point(tiny_cifar, seed, budget_points=None, **more):
    values = {"name": f"line-s{seed}", "regime": "frozen", "weights": "none",
              "data_dir": str(tiny_cifar), "train_size": 60, "val_size": 20, "epochs": 4,
              "batch_size": 8, "precision": "float32", "seed": seed, "flops_budget": 2e11,
              "budget_points": budget_points, "schedule": "wsd", "save_model": False,
              "lr_search": {"learning_rates": [1e-5, 1e-3, 1e-1], "set": {"epochs": 3}}, **more}
    return GridRun(make_config(values), "line", {"seed": seed})


def test_the_search_runs_once_per_line_and_the_rate_is_chosen_on_validation(tiny_cifar,
                                                                            tmp_path):
    from vgg_transfer.record import RunRecord
    from vgg_transfer.runner import search, sweep

    points = [_point(tiny_cifar, 0, [1e11]), _point(tiny_cifar, 1)]
    searched, _ = search.with_candidates(points)
    assert len(searched) == 3                         # the two seeds share one search
    assert {p.cfg.seed for p in searched} == {0} and all(not p.cfg.budget_points
                                                       for p in searched)
    assert [p.cfg.epochs for p in searched] == [3, 3, 3]  # the search's own `set`
    outcomes = sweep.run_in_order(points, tmp_path)
    assert [o.status for o in outcomes] == ["ok"] * 5
    candidates = [RunRecord.load(tmp_path / p.name) for p in searched]
    val = [c.metrics.final_val_accuracy for c in candidates]
    chosen = [p.cfg.learning_rate for p in searched][val.index(max(val))]
    for point in points:
        record = RunRecord.load(tmp_path / point.name)
        assert record.config.learning_rate == chosen
        assert record.metrics.lr_search["chosen"] == chosen
        rows = record.metrics.lr_search["candidates"]
        assert [r["val_accuracy"] for r in rows] == val
        assert record.metrics.lr_search["flops"] == pytest.approx(
            sum(c.training_flops for c in candidates))
    # run again: every run, the searches' too, is current
    assert [o.status for o in sweep.run_in_order(points, tmp_path)] == ["cached"] * 5


def test_a_searched_runs_key_holds_its_search_not_a_rate(tiny_cifar):
    from vgg_transfer.runner.sweep import run_key

    point = _point(tiny_cifar, 0)
    other_rate = point.cfg.model_copy(update={"learning_rate": 0.5})
    assert run_key(point.cfg, "c") == run_key(other_rate, "c")
    wider = _point(tiny_cifar, 0, lr_search={"learning_rates": [1e-5, 1e-3]})
    assert run_key(point.cfg, "c") != run_key(wider.cfg, "c")


def test_a_missing_candidate_fails_the_point_not_the_sweep(tiny_cifar, tmp_path):
    from vgg_transfer.runner import search

    with pytest.raises(search.SearchFailed, match="no finished run"):
        search.choose(_point(tiny_cifar, 0), tmp_path)
    assert json.dumps(search.choose(GridRun(make_config({"name": "x", "regime": "frozen"}),
                                          "x"), tmp_path)[1]) == "null"
