import pandas as pd

from vgg_transfer.report import compare_sentence, findings, phrase


def test_phrase():
    assert phrase([3, 30, 3], "epoch") == "3 or 30 epochs"
    assert phrase([2500], "image") == "2,500 images"
    assert phrase([1], "epoch") == "1 epoch"


def test_sentences_follow_the_numbers():
    row = {"A": "frozen", "B": "scratch", "accuracy A": 0.61, "accuracy B": 0.40,
           "difference (A − B)": 0.21, "p (McNemar, exact)": 1e-9}
    assert compare_sentence(row).startswith("**frozen** beats **scratch** by 21.0 points")
    row.update({"difference (A − B)": -0.01, "accuracy A": 0.39, "p (McNemar, exact)": 0.6})
    assert "not distinguishable" in compare_sentence(row)
    table = pd.DataFrame({"experiment": ["a", "b"], "test_accuracy": [0.5, 0.1],
                          "ci_low": [0.45, 0.08], "ci_high": [0.55, 0.12],
                          "training time (s)": [10.0, 100.0]})
    text = findings(table, pd.DataFrame([row]))
    assert "Ranked by test accuracy: **a** 50.0%" in text
    assert "Not distinguishable from chance (10%): **b**" in text
    assert "10× longer" in text
