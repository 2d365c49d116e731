"""Page computations on hand-made runs: sentences, seed pairing, tables, study helpers."""

import numpy as np
import pandas as pd
import pytest

from vgg_transfer import discussion, report, studies
from vgg_transfer.report import compare_sentence, findings, phrase


def fake_run(experiment, regime, seed, correct, train_n=2000, axes=None, reference=True,
             image_size=32, head="flatten", confidence=0.6, val=(0.3, 0.4)):
    """A run as `artifacts.load_run` returns it, with `correct` marking the right test images."""
    correct = np.asarray(correct, bool)
    true = np.arange(len(correct)) % 10
    predicted = np.where(correct, true, (true + 1) % 10)
    acc = float(correct.mean())
    axes = {**(axes or {}), "seed": seed}
    return {
        "dir": None,
        "metrics": {"name": report.point_name(experiment, axes), "experiment": experiment,
                    "axes": axes, "reference": reference, "regime": regime, "weights": "none",
                    "weights_label": "random init", "test_accuracy": acc,
                    "test_accuracy_ci95": [acc - 0.03, acc + 0.03], "test_n": len(correct),
                    "test_ece": abs(confidence - acc), "test_loss": 1.0, "train_n": train_n,
                    "val_n": 500, "epochs": len(val), "best_val_accuracy": max(val),
                    "final_train_accuracy": 0.5, "params": {"trainable": 10},
                    "per_class_accuracy": {}},
        "config": {"seed": seed, "image_size": image_size, "head": head, "regime": regime,
                   "batch_size": 128, "learning_rate": 1e-4, "finetune_learning_rate": 1e-5,
                   "unfreeze_from": 1, "data_dir": None},
        "timings": {"train_seconds": 10.0, "feature_seconds": 0.0, "wall_seconds": 12.0,
                    "test_seconds": 1.0, "test_images_per_second": 1000.0,
                    "feature_images_per_second": None},
        "provenance": {"peak_rss_mb": 100.0},
        "history": pd.DataFrame({"epoch": range(1, len(val) + 1), "val_accuracy": val}),
        "predictions": pd.DataFrame({"true": true, "predicted": predicted,
                                     "confidence": np.full(len(correct), confidence)}),
    }


def mask(n_right, n=200, offset=0):
    out = np.zeros(n, bool)
    out[offset:offset + n_right] = True
    return out


def test_phrase():
    assert phrase([3, 30, 3], "epoch") == "3 or 30 epochs"
    assert phrase([2500], "image") == "2,500 images"
    assert phrase([1], "epoch") == "1 epoch"


def test_sentences_follow_the_numbers():
    row = {"A": "frozen", "B": "scratch", "accuracy A": 0.61, "accuracy B": 0.40,
           "difference (A − B)": 0.21, "largest p (McNemar, exact)": 1e-9, "p per seed": [1e-9],
           "differences": [0.21]}
    assert compare_sentence(row).startswith("**frozen** beats **scratch** by 21.0 points")
    row.update({"difference (A − B)": -0.01, "accuracy A": 0.39, "p per seed": [0.6],
                "differences": [-0.01]})
    assert "not distinguishable" in compare_sentence(row)
    table = pd.DataFrame({"experiment": ["a", "b"], "test_accuracy": [0.5, 0.1],
                          "sd": [np.nan, np.nan], "seeds": [1, 1],
                          "ci_low": [0.45, 0.08], "ci_high": [0.55, 0.12],
                          "training time (s)": [10.0, 100.0]})
    text = findings(table, pd.DataFrame([row]))
    assert "Ranked by test accuracy: **a** 50.0% (45.0%–55.0%)" in text
    assert "Not distinguishable from chance (10%): **b**" in text
    assert "10× longer" in text


def test_beats_needs_every_seed():
    row = {"A": "a", "B": "b", "accuracy A": 0.6, "accuracy B": 0.5,
           "difference (A − B)": 0.1, "p per seed": [0.001, 0.2, 0.003],
           "differences": [0.12, 0.05, 0.13]}
    sentence = compare_sentence(row)
    assert "significantly so in only 2 of 3 seeds" in sentence and "beats" not in sentence
    row["p per seed"] = [0.001, 0.01, 0.003]
    assert "**a** beats **b** by 10.0 points" in compare_sentence(row)
    assert "in every seed" in compare_sentence(row)
    row["differences"] = [0.12, -0.02, 0.2]  # significant, but not the same way round
    sentence = compare_sentence(row)
    assert "beats" not in sentence
    assert "significantly so in only 2 of 3 seeds, and significantly behind in 1" in sentence
    # ahead on the mean, but the one significant seed goes the other way
    row.update({"p per seed": [0.5, 0.01, 0.4], "differences": [0.2, -0.05, 0.15]})
    assert "**a** is ahead of **b**" in compare_sentence(row)
    assert "significantly so in no seed, and significantly behind in 1" in compare_sentence(row)


def test_runs_are_paired_by_seed():
    # a: 150, 140 right of 200; b: 100, 100; seed 2 of a has no partner in b
    a = [fake_run("a", "frozen", 0, mask(150)), fake_run("a", "frozen", 1, mask(140)),
         fake_run("a", "frozen", 2, mask(10))]
    b = [fake_run("b", "scratch", 1, mask(100)), fake_run("b", "scratch", 0, mask(100))]
    row = report.paired_test(a, b, "a", "b")
    assert row["seeds"] == 2
    assert row["accuracy A"] == pytest.approx((0.75 + 0.70) / 2)
    assert row["accuracy B"] == pytest.approx(0.5)
    # images 100..149 (seed 0) and 100..139 (seed 1) are right only for a
    assert (row["only A right"], row["only B right"]) == (90, 0)
    assert row["differences"] == pytest.approx([0.25, 0.20])
    assert max(row["p per seed"]) == row["largest p (McNemar, exact)"] < 1e-10
    tests = report.pairwise_tests(a + b)
    assert tests[["A", "B"]].values.tolist() == [["a", "b"]]


def test_comparison_table_over_seeds():
    runs = [fake_run("a", "frozen", s, mask(n)) for s, n in enumerate((100, 120, 140))]
    runs.append(fake_run("a", "frozen", 0, mask(10), axes={"train_size": 500},
                         reference=False))  # not at the reference setting: left out
    table = report.comparison_table(runs)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["seeds"] == 3 and row["test_accuracy"] == pytest.approx(0.6)
    assert row["sd"] == pytest.approx(0.1)
    assert row["ci_low"] == pytest.approx(0.6 - 0.248414, abs=1e-6)
    single = report.comparison_table(runs[:1]).iloc[0]  # one run: its Wilson interval
    assert single["ci_low"] == pytest.approx(0.47) and np.isnan(single["sd"])


def test_accuracy_cell_clips_to_a_share():
    assert report.accuracy_cell(0.1, 0.05, 3, -0.02, 0.22) == "10.0% ± 5.0 (0.0%–22.0%)"
    assert report.accuracy_cell(0.5, np.nan, 1, 0.45, 0.55) == "50.0% (45.0%–55.0%)"


def test_data_efficiency_and_where_transfer_pays():
    runs = []
    for seed in (0, 1):
        # at 2,000 images: 3 images right only for sbn, 8 only for fro -> p = 0.23
        for size, base, transfer in ((500, mask(40), mask(120)),
                                     (2000, mask(110), mask(115, offset=3))):
            axes = {"train_size": size}
            runs.append(fake_run("sbn", "scratch_bn", seed, base, train_n=size, axes=axes,
                                 reference=size == 2000))
            runs.append(fake_run("fro", "frozen", seed, transfer, train_n=size, axes=axes,
                                 reference=size == 2000))
    table = studies.by_setting(runs, ["sbn", "fro"], "train_n")
    assert table[["experiment", "train_n", "mean"]].values.tolist() == [
        ["sbn", 500, 0.2], ["sbn", 2000, 0.55], ["fro", 500, 0.6], ["fro", 2000, 0.575]]
    lines = studies.where_transfer_pays(runs, "sbn", ["fro"])
    assert lines[0].startswith("**500 images**: **fro** beats **sbn** by 40.0 points "
                               "(60.0% against 20.0%, means over seeds) in every seed")
    assert "not distinguishable" in lines[1] and lines[1].startswith("**2,000 images**")


def test_centre_share():
    uniform = np.ones((1, 32, 32))
    centred = np.zeros((1, 32, 32))
    centred[0, 12:20, 12:20] = 1
    corner = np.zeros((1, 32, 32))
    corner[0, :4, :4] = 1
    shares = studies.centre_share(np.concatenate([uniform, centred, corner]))
    assert shares.tolist() == [0.25, 1.0, 0.0]
    assert np.isnan(studies.centre_share(np.zeros((1, 32, 32)))[0])


def test_calibration_table_and_collapse():
    runs = [fake_run("fro", "frozen", s, mask(100), confidence=0.9, val=(0.1, 0.1, 0.1))
            for s in (0, 1)]
    table = studies.calibration_table(runs, ["fro", "missing"])
    assert table["experiment"].tolist() == ["fro"]
    assert table["confidence − accuracy"].iloc[0] == pytest.approx(0.4)
    assert table["ECE"].iloc[0] == pytest.approx(0.4)
    runs = [{**r, "metrics": {**r["metrics"], "experiment": "finetune"}} for r in runs]
    assert studies.collapse(runs, "finetune")["collapsed"]
    assert "stayed at chance" in studies.collapse_sentence(runs)


def test_claims_cite_this_builds_numbers():
    runs = [fake_run(name, regime, s, mask(n)) for s in (0, 1)
            for name, regime, n in (("mlp", "mlp", 60), ("scratch", "scratch", 40),
                                    ("partial", "partial", 90), ("finetune", "finetune", 80))]
    claims = studies.claims_table(runs)
    assert claims["the original's regime"].tolist() == ["scratch", "frozen", "unfrozen"]
    assert claims.loc[0, "this build measured (test)"].startswith("mlp: 30.0% ± 0.0 (n = 2)")
    assert "VGG16 from random weights reaches 20.0%" in claims.loc[0, "cause of the difference"]
    assert "did not collapse" not in claims.loc[2, "cause of the difference"]
    assert "learns" in claims.loc[2, "cause of the difference"]


def test_seed_noise():
    runs = [fake_run("a", "frozen", s, mask(n, 1000)) for s, n in enumerate((480, 500, 520))]
    noise = discussion.seed_noise(runs, ["a"])
    assert noise["seed_sd"] == pytest.approx(0.02)
    assert noise["test_sd"] == pytest.approx(np.sqrt(0.25 / 1000))
    # 2.0 points against 1.6: the same order; 5.0 against 1.6: larger
    assert "of the same order as test-set noise" in discussion.seed_noise_sentence(runs, ["a"])
    runs = [fake_run("a", "frozen", s, mask(n, 1000)) for s, n in enumerate((450, 500, 550))]
    assert "larger than test-set noise" in discussion.seed_noise_sentence(runs, ["a"])


def test_rise_margin_hand_computed():
    from vgg_transfer.discussion import rise_margin

    before, after = {"sd": 0.013, "n": 3}, {"sd": 0.015, "n": 3}
    # 2 * sqrt(0.013² / 3 + 0.015² / 3) = 2 * sqrt(0.00013133) = 0.022920
    assert rise_margin(before, after) == pytest.approx(0.022920, abs=1e-6)
    assert rise_margin({"sd": float("nan"), "n": 1}, after) == 0.0
