"""Page computations on hand-made runs: sentences, seed pairing, tables, study helpers."""

import numpy as np
import pandas as pd
import pytest

from vgg_transfer.record import SCHEMA_VERSION, Metrics, Params, Provenance, RunRecord, Timings
from vgg_transfer.report import discussion, original, selection, stats, tables
from vgg_transfer.report.sentences import compare_sentence, findings
from vgg_transfer.report.studies import (
    calibration,
    claims,
    data_efficiency,
    depth,
    gradcam,
    protocol,
    seeds,
)
from vgg_transfer.report.words import accuracy_cell, phrase
from vgg_transfer.spec import regimes
from vgg_transfer.spec.config import ExperimentConfig
from vgg_transfer.spec.profiles import grid_run_name


def _predictions(correct: np.ndarray, confidence: float) -> pd.DataFrame:
    true = np.arange(len(correct)) % 10
    return pd.DataFrame({"true": true, "predicted": np.where(correct, true, (true + 1) % 10),
                         "confidence": np.full(len(correct), confidence)})


def _metrics(name, experiment, regime, axes, reference, correct, train_n, val, confidence):
    acc = float(correct.mean())
    return Metrics(
        schema_version=SCHEMA_VERSION, status="ok", name=name, experiment=experiment,
        axes=axes, reference=reference, regime=regime, weights="none",
        weights_label="random init", test_accuracy=acc,
        test_accuracy_ci95=[acc - 0.03, acc + 0.03], test_loss=1.0,
        test_ece=abs(confidence - acc), test_n=len(correct), test_correct=int(correct.sum()),
        per_class_accuracy={}, confusion_matrix=[], train_n=train_n, val_n=500,
        epochs=len(val), final_train_accuracy=0.5, final_val_accuracy=val[-1],
        best_val_accuracy=max(val), best_val_epoch=int(np.argmax(val)) + 1,
        params=Params(trainable=10, non_trainable=0, total=10), cached_features=False,
        notes=[], steps=len(val) * 16, images_seen=len(val) * train_n,
        phases=[{"frozen_blocks": 0, "epochs_budget": len(val), "epochs_run": len(val),
                 "learning_rate": 1e-4, "patience": None, "monitor": None,
                 "stopped_on_plateau": False, "restored_epoch": None, "cached_blocks": 0}])


TIMINGS = Timings(data_seconds=0.1, build_seconds=0.1, train_seconds=10.0, feature_seconds=0.0,
                  feature_images=0, epoch_seconds=[], test_seconds=1.0, gradcam_seconds=0.0,
                  wall_seconds=12.0, train_images_per_second=None,
                  feature_images_per_second=None, test_images_per_second=1000.0)


def _provenance(seed: int, train_n: int, test_n: int) -> Provenance:
    return Provenance(data={"kind": "folder", "path": None, "train": 50, "test": test_n},
                      split={"train_n": train_n, "val_n": 500, "seed": seed},
                      weights={"name": "none", "sha256": None},
                      backend={"name": "tensorflow", "version": "2.21.0", "packages": {},
                               "deterministic": True}, packages={},
                      hardware={"cpu": "test", "cpu_count": 1, "gpus": []}, git={},
                      wall_seconds=12.0, peak_rss_mb=100.0, finished="")


def fake_run(experiment, regime, seed, correct, train_n=2000, axes=None, reference=True,
             image_size=32, head="flatten", confidence=0.6, val=(0.3, 0.4), gradcam=None):
    """A `RunRecord` built from the record's own dataclasses, with `correct` marking the
    right test images."""
    correct = np.asarray(correct, bool)
    axes = {**(axes or {}), "seed": seed}
    name = grid_run_name(experiment, axes)
    config = ExperimentConfig(name=name, regime=regime, weights="none", seed=seed,
                              image_size=image_size, head=head, train_size=train_n,
                              precision="float32")  # the same on every machine
    return RunRecord(
        config=config,
        metrics=_metrics(name, experiment, regime, axes, reference, correct, train_n,
                         list(val), confidence),
        timings=TIMINGS, provenance=_provenance(seed, train_n, len(correct)),
        history=pd.DataFrame({"epoch": range(1, len(val) + 1), "val_accuracy": val}),
        predictions=_predictions(correct, confidence), gradcam=gradcam)


def mask(n_right, n=200, offset=0):
    out = np.zeros(n, bool)
    out[offset:offset + n_right] = True
    return out


def test_fake_runs_survive_a_round_trip(tmp_path):
    """The fakes are real records: written and read back, they compare equal."""
    run = fake_run("a", "frozen", 1, mask(150), axes={"train_size": 500}, reference=False)
    back = RunRecord.load(run.write(tmp_path / run.name))
    assert back.metrics == run.metrics and back.timings == run.timings
    assert back.provenance == run.provenance and back.config == run.config
    assert (back.name, back.seed, back.correct.sum()) == ("a-n500-s1", 1, 150)


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
    table = pd.DataFrame({"experiment": ["a", "b"], "val accuracy": [0.48, 0.12],
                          "test_accuracy": [0.5, 0.1],
                          "sd": [np.nan, np.nan], "seeds": [1, 1],
                          "ci_low": [0.45, 0.08], "ci_high": [0.55, 0.12],
                          "training time (s)": [10.0, 100.0]})
    text = findings(table, pd.DataFrame([row]))
    assert ("Ranked on validation accuracy, with each test accuracy: **a** (validation 48.0%; "
            "test 50.0% (45.0%–55.0%))") in text
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
    row = stats.paired_test(a, b, "a", "b")
    assert row["seeds"] == 2
    assert row["accuracy A"] == pytest.approx((0.75 + 0.70) / 2)
    assert row["accuracy B"] == pytest.approx(0.5)
    # images 100..149 (seed 0) and 100..139 (seed 1) are right only for a
    assert (row["only A right"], row["only B right"]) == (90, 0)
    assert row["differences"] == pytest.approx([0.25, 0.20])
    assert max(row["p per seed"]) == row["largest p (McNemar, exact)"] < 1e-10
    tests = stats.pairwise_tests(a + b)
    assert tests[["A", "B"]].values.tolist() == [["a", "b"]]
    back = stats.swapped(row)
    assert (back["A"], back["only A right"], back["differences"][0]) == ("b", 0, -0.25)


def test_comparison_table_over_seeds():
    runs = [fake_run("a", "frozen", s, mask(n)) for s, n in enumerate((100, 120, 140))]
    runs.append(fake_run("a", "frozen", 0, mask(10), axes={"train_size": 500},
                         reference=False))  # not at the reference setting: left out
    table = stats.by_experiment(runs)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["seeds"] == 3 and row["test_accuracy"] == pytest.approx(0.6)
    assert row["sd"] == pytest.approx(0.1)
    assert row["ci_low"] == pytest.approx(0.6 - 0.248414, abs=1e-6)
    single = stats.by_experiment(runs[:1]).iloc[0]  # one run: its Wilson interval
    assert single["ci_low"] == pytest.approx(0.47) and np.isnan(single["sd"])
    assert stats.by_experiment([]).empty


def test_accuracy_cell_clips_to_a_share():
    assert accuracy_cell(0.1, 0.05, 3, -0.02, 0.22) == "10.0% ± 5.0 (0.0%–22.0%)"
    assert accuracy_cell(0.5, np.nan, 1, 0.45, 0.55) == "50.0% (45.0%–55.0%)"


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
    table = stats.by_setting(runs, ["sbn", "fro"], "train_n")
    assert table[["experiment", "train_n", "mean"]].values.tolist() == [
        ["sbn", 500, 0.2], ["sbn", 2000, 0.55], ["fro", 500, 0.6], ["fro", 2000, 0.575]]
    lines = data_efficiency.where_transfer_pays(runs, "sbn", ["fro"])
    assert lines[0].startswith("**500 images**: **fro** beats **sbn** by 40.0 points "
                               "(60.0% against 20.0%, means over seeds) in every seed")
    assert "not distinguishable" in lines[1] and lines[1].startswith("**2,000 images**")
    # the baseline is the first experiment that trains a network from random weights
    assert data_efficiency.findings(runs, ["fro", "sbn"]) == lines


def test_centre_share():
    uniform = np.ones((1, 32, 32))
    centred = np.zeros((1, 32, 32))
    centred[0, 12:20, 12:20] = 1
    corner = np.zeros((1, 32, 32))
    corner[0, :4, :4] = 1
    shares = gradcam.centre_share(np.concatenate([uniform, centred, corner]))
    assert shares.tolist() == [0.25, 1.0, 0.0]
    assert np.isnan(gradcam.centre_share(np.zeros((1, 32, 32)))[0])


def test_gradcam_table_reads_the_records_heatmaps():
    heatmaps = np.zeros((3, 32, 32))
    heatmaps[0, 12:20, 12:20] = 1  # right: all in the centre
    heatmaps[1] = 1                # wrong: uniform
    heatmaps[2, :4, :4] = 1        # one per class: in a corner
    cam = {"heatmaps": heatmaps, "set": np.array(["right", "wrong", "fixed"]),
           "indices": np.arange(3), "predicted": np.zeros(3, int),
           "layer": np.array("block5_conv3"), "side": np.array(2)}
    runs = [fake_run("fro", "frozen", 0, mask(100), gradcam=cam),
            fake_run("sbn", "scratch_bn", 0, mask(100))]  # no heatmaps: left out
    table, cams = gradcam.study_table(runs, ["fro", "sbn"])
    assert table.to_dict("records") == [{
        "experiment": "fro", "run": "fro-s0", "layer": "block5_conv3", "map": "2×2",
        "centre share, right": 1.0, "centre share, wrong": 0.25,
        "centre share, one per class": 0.0}]
    assert cams["fro"]["run"] is runs[0]
    assert "fro 100% (right) / 25% (wrong)" in gradcam.finding(runs, ["fro"])


def test_calibration_table_and_collapse():
    runs = [fake_run("fro", "frozen", s, mask(100), confidence=0.9, val=(0.1, 0.1, 0.1))
            for s in (0, 1)]
    table = calibration.study_table(runs, ["fro", "missing"])
    assert table["experiment"].tolist() == ["fro"]
    assert table["confidence − accuracy"].iloc[0] == pytest.approx(0.4)
    assert table["ECE"].iloc[0] == pytest.approx(0.4)
    assert calibration.finding(runs, ["fro"]).startswith(
        "Expected calibration error ranges from 0.400 (fro)")
    runs = [fake_run("finetune", "finetune", s, mask(100), val=(0.1, 0.1, 0.1))
            for s in (0, 1)]
    assert stats.collapse(runs, "finetune")["collapsed"]
    assert "stayed at chance" in protocol.collapse_sentence(runs)


def test_claims_cite_this_builds_numbers():
    runs = [fake_run(name, name, s, mask(n)) for s in (0, 1)
            for name, n in (("mlp", 60), ("scratch", 40), ("partial", 90), ("finetune", 80))]
    table = claims.study_table(runs)
    assert table["the original's regime"].tolist() == ["scratch", "frozen", "unfrozen"]
    assert table.loc[0, "this build measured (test)"].startswith("mlp: 30.0% ± 0.0 (n = 2)")
    assert table.loc[1, "this build measured (test)"].endswith(
        "training accuracy in its last epoch 50.0% (dropout on)")
    assert "VGG16 from random weights reaches 20.0%" in table.loc[0, "cause of the difference"]
    assert "did not collapse" not in table.loc[2, "cause of the difference"]
    assert "learns" in table.loc[2, "cause of the difference"]


def test_the_originals_regimes_follow_the_registry():
    """Each correction of the original is measured in order: as it ran, then each fix."""
    assert original.ours("scratch") == ["mlp", "scratch", "scratch_bn"]
    assert original.corrections() == [("mlp", "scratch"), ("scratch", "scratch_bn"),
                                      ("partial", "frozen"), ("finetune", "two_phase")]
    assert set(original.corrections()) == set(regimes.corrections())
    runs = [fake_run(name, name, s, mask(n)) for s in (0, 1)
            for name, n in (("partial", 90), ("frozen", 120))]
    pairs = protocol.corrections_tested(runs, original.corrections())
    assert pairs[["A", "B"]].values.tolist() == [["frozen", "partial"]]


def test_seed_noise():
    runs = [fake_run("a", "frozen", s, mask(n, 1000)) for s, n in enumerate((480, 500, 520))]
    noise = seeds.seed_noise(runs, ["a"])
    assert noise["seed_sd"] == pytest.approx(0.02)
    assert noise["test_sd"] == pytest.approx(np.sqrt(0.25 / 1000))
    # 2.0 points against 1.6: the same order; 5.0 against 1.6: larger
    assert "of the same order as test-set noise" in seeds.finding(runs, ["a"])
    runs = [fake_run("a", "frozen", s, mask(n, 1000)) for s, n in enumerate((450, 500, 550))]
    assert "larger than test-set noise" in seeds.finding(runs, ["a"])


def test_rise_margin_hand_computed():
    before, after = {"sd": 0.013, "n": 3}, {"sd": 0.015, "n": 3}
    # 2 * sqrt(0.013² / 3 + 0.015² / 3) = 2 * sqrt(0.00013133) = 0.022920
    assert stats.rise_margin(before, after) == pytest.approx(0.022920, abs=1e-6)
    assert stats.rise_margin({"sd": float("nan"), "n": 1}, after) == 0.0


def _study_runs():
    runs = []
    for seed in (0, 1):
        for name, n in (("mlp", 40), ("scratch", 50), ("scratch_bn", 70), ("partial", 110),
                        ("frozen", 100), ("finetune", 60), ("two_phase", 130)):
            runs.append(fake_run(name, name, seed, mask(n + 5 * seed, offset=seed)))
        for size, n in ((100, 60), (200, 90)):
            runs.append(fake_run("frozen", "frozen", seed, mask(n + 3 * seed), train_n=size,
                                 axes={"train_size": size}, reference=False))
    return runs


def test_discussion_pages_say_what_the_build_measured():
    runs = _study_runs()
    studies = {"seeds": ["scratch", "scratch_bn", "mlp", "frozen", "partial", "finetune",
                         "two_phase"], "protocol": ["mlp", "partial", "frozen", "finetune"],
               "data_efficiency": ["scratch_bn", "frozen"]}
    limits = discussion.limitations(runs, studies)
    assert limits.startswith("- **Budgets, not convergence.** Still improving when their "
                             "budget ran out")
    assert "the whole network saw 4,000 images, 1% of the 450,000" in limits
    assert "**Few seeds.** 2 seeds per point" in limits and "±12.71 standard errors" in limits
    assert "**Many comparisons.** The seeds study runs 21 pairwise tests" in limits
    better = discussion.improvements(runs, studies)
    assert "**The full protocol on a GPU.** A regime that trains the whole network ran at " \
           "400 images/s here" in better
    assert "**How much to unfreeze.** Two-phase fine-tuning here unfroze blocks 1–5" in better
    assert better.endswith("the defaults here are the original study's, not tuned ones.")
    verdict = discussion.conclusion(runs, studies, ["scratch", "frozen", "finetune"])
    assert verdict.startswith("- Does transfer learning beat training from scratch")
    assert "Frozen as the original ran it (block 5 trainable) against truly frozen" in verdict
    assert "nan" not in limits + better + verdict


def test_tables_read_records():
    runs = _study_runs()
    cost = tables.cost_table(runs)
    assert cost.loc[0, "setting"] == "mlp" and cost.loc[0, "runs"] == 2
    assert cost["training images/s"].iloc[0] == pytest.approx(2000 * 2 / 10)
    settings = protocol.settings(runs)
    assert settings["this build"].tolist()[:3] == [
        "2,000 images", "500 images carved from the training set", "200, used once per run"]
    assert tables.run_summary(runs[0])["value"].tolist()[:3] == ["20.00%", "17.00% – 23.00%",
                                                                  "200"]
    assert tables.runs_table(runs[:2])["run"].tolist() == ["mlp-s0", "scratch-s0"]
    assert selection.setting(runs[-1]) == "frozen-n200"


def test_depth_table_and_sentence():
    runs = []
    for start, right, val in ((5, 120, 0.55), (3, 140, 0.62), (1, 130, 0.60)):
        run = fake_run("depth", "finetune", 0, mask(right), axes={"unfreeze_from": start},
                       val=(0.3, val))
        run.config = run.config.model_copy(update={"unfreeze_from": start})
        runs.append(run)
    table = depth.study_table(runs, ["depth"])
    assert table["unfreeze from block"].tolist() == [1, 3, 5]
    assert table["mean"].tolist() == [0.65, 0.7, 0.6]
    assert table["trained"].tolist() == ["everything", "blocks 3-5 and the head",
                                         "block 5 and the head"]
    assert not table["ci_low"].isna().any()  # one run each: the Wilson interval
    sentence = depth.finding(runs, ["depth"])
    assert ("fine-tuning from block 3 reached the highest validation accuracy, 62.0% (test "
            "70.0%)") in sentence
    assert "Fine-tuning everything reached 65.0%" in sentence
    assert "nan" not in depth.formatted(table).to_html()
