"""The test set chooses nothing: every ranking and choice on the report's pages reads the
validation accuracy, so giving the runs each other's test predictions moves no name."""

import dataclasses
import re

from test_report import fake_run, mask
from vgg_transfer.report import discussion, sentences, stats
from vgg_transfer.report.studies import depth

# (experiment, regime, validation accuracy, test images right of 1000)
QUICK = [("scratch", "scratch", 0.28, 300), ("frozen", "frozen", 0.40, 390),
         ("finetune", "finetune", 0.33, 320), ("partial", "partial", 0.58, 590),
         ("scratch_bn", "scratch_bn", 0.36, 380)]


def _runs(rights=None):
    rights = rights or [n for *_, n in QUICK]
    return [fake_run(name, regime, 0, mask(n, 1000), val=(0.1, val))
            for (name, regime, val, _), n in zip(QUICK, rights, strict=False)]


def _order(text: str) -> list[str]:
    """The experiments a sentence names, in order of first mention."""
    names = [name for name, *_ in QUICK]
    found = re.findall(r"\*\*(\w+)\*\*", text) or re.findall(
        "|".join(sorted(names, key=len, reverse=True)), text)
    return list(dict.fromkeys(n for n in found if n in names))


def _pages(runs):
    names = [name for name, *_ in QUICK]
    table = stats.by_experiment(runs)
    tests = stats.pairwise_tests(runs, names)
    chosen = _order(sentences.answer(runs, names).split(": ", 1)[1])
    return {"ranking": sentences.ranked(table)["experiment"].tolist(),
            "ranking sentence": _order(sentences._ranking(table)),
            # which pairs the ladder compares (each sentence then says who is ahead on test)
            "ladder": [tuple(sorted((r.split("**")[1], r.split("**")[3])))
                       for r in sentences.ladder(table, tests)],
            "answer": sorted(chosen),
            "cost": _order(discussion.cost_answer(runs, names).split(":", 1)[1])}


def test_no_ranking_moves_when_only_test_accuracies_do():
    before = _pages(_runs())
    rights = [n for *_, n in QUICK]
    reversed_rights = rights[::-1]  # scratch gets scratch_bn's test predictions, and so on
    after = _pages(_runs(reversed_rights))
    assert before["ranking"] == ["partial", "frozen", "scratch_bn", "finetune", "scratch"]
    assert before["answer"] == ["partial", "scratch_bn"]
    assert before == after
    # and the test accuracies did move: the ranking is not the test's
    table = stats.by_experiment(_runs(reversed_rights)).set_index("experiment")
    assert table.loc["frozen", "test_accuracy"] > table.loc["partial", "test_accuracy"]


def test_the_depth_study_names_the_block_best_on_validation():
    def start(block, val, right):
        run = fake_run("depth", "finetune", 0, mask(right, 1000), val=(0.1, val),
                       axes={"unfreeze_from": block})
        return dataclasses.replace(run, config=run.config.model_copy(
            update={"unfreeze_from": block}))

    runs = [start(5, 0.45, 500), start(4, 0.55, 480), start(1, 0.50, 520)]
    text = depth.sentence(depth.study_table(runs, ["depth"]))
    assert "fine-tuning from block 4 reached the highest validation accuracy, 55.0%" in text
    assert "(test 48.0%)" in text
