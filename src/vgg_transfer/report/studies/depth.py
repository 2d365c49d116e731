"""How deep to fine-tune: test accuracy and training time by the block fine-tuning starts from."""

from __future__ import annotations

import pandas as pd

from vgg_transfer.core.metrics import seed_summary
from vgg_transfer.record import RunRecord
from vgg_transfer.report.figures import new_axes, percent_axis
from vgg_transfer.report.selection import of_experiments, runs_frame
from vgg_transfer.report.tables import plain
from vgg_transfer.report.words import accuracy_cell
from vgg_transfer.spec.regimes import color


def _row(start: int, group: pd.DataFrame) -> dict:
    acc = seed_summary(group["test_accuracy"])
    if acc["n"] == 1:  # one run: the Wilson interval of its test set
        acc.update(ci_low=group["ci_low"].iloc[0], ci_high=group["ci_high"].iloc[0])
    trained = {1: "everything", 5: "block 5 and the head"}.get(
        int(start), f"blocks {int(start)}-5 and the head")
    return {"unfreeze from block": int(start), "trained": trained, "seeds": acc["n"],
            "mean": acc["mean"], "sd": acc["sd"], "val": float(group["val_accuracy"].mean()),
            "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
            "images seen": int(group["images_seen"].mean()),
            "optimizer steps": int(group["steps"].mean()),
            "training (s)": float(group["training_seconds"].mean()),
            "trainable parameters": int(group["trainable"].iloc[0])}


def study_table(runs: list[RunRecord], experiments: list[str]) -> pd.DataFrame:
    """Accuracy and training cost per block fine-tuning starts from (mean over seeds)."""
    chosen = of_experiments(runs, experiments)
    if not chosen:
        return pd.DataFrame()
    frame = runs_frame(chosen)
    frame["unfreeze_from"] = [run.config.unfreeze_from for run in chosen]
    return pd.DataFrame([_row(start, group) for start, group
                         in frame.groupby("unfreeze_from", sort=True)])


def finding(runs: list[RunRecord], experiments: list[str]) -> str:
    """The study's finding for the discussion pages (which hold runs, not the table)."""
    return sentence(study_table(runs, experiments))


def sentence(table: pd.DataFrame) -> str:
    """How deep fine-tuning paid: the best starting block against fine-tuning everything,
    at the same images seen (`table`: `study_table`)."""
    if len(table) < 2:
        return ""
    best = table.loc[table["val"].idxmax()]  # chosen on validation, reported on test
    text = (f"At {int(best['images seen']):,} images seen, fine-tuning from block "
            f"{int(best['unfreeze from block'])} reached the highest validation accuracy, "
            f"{best['val']:.1%} (test {best['mean']:.1%}), in {best['training (s)']:,.0f} s of "
            "training.")
    whole = table[table["unfreeze from block"] == 1]
    if len(whole) and int(best["unfreeze from block"]) != 1:
        w = whole.iloc[0]
        text += (f" Fine-tuning everything reached {w['mean']:.1%} in "
                 f"{w['training (s)']:,.0f} s, {w['training (s)'] / best['training (s)']:.1f}× "
                 "the time.")
    return text


def formatted(table: pd.DataFrame):
    shown = table.copy()
    shown.insert(2, "test accuracy", [accuracy_cell(r["mean"], r["sd"], r["seeds"], r["ci_low"],
                                                    r["ci_high"]) for _, r in table.iterrows()])
    shown = shown.drop(columns=["mean", "sd", "ci_low", "ci_high"]).rename(
        columns={"val": "validation accuracy"})
    return plain(shown, {"validation accuracy": "{:.1%}", "images seen": "{:,}",
                         "optimizer steps": "{:,}",
                         "training (s)": "{:,.0f}", "trainable parameters": "{:,}"})


def plot(table: pd.DataFrame):
    """Test accuracy against training time, one point per block fine-tuning starts from."""
    fig, (ax,) = new_axes(None, figsize=(7, 4.2))
    ax.errorbar(table["training (s)"], table["mean"], yerr=table["sd"].fillna(0), fmt="-o",
                color=color("finetune"), capsize=4)
    for _, row in table.iterrows():
        ax.annotate(f"from block {int(row['unfreeze from block'])}",
                    (row["training (s)"], row["mean"]), textcoords="offset points",
                    xytext=(6, -12), fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (s, log scale; cached block outputs included)")
    ax.set_ylabel("test accuracy")
    percent_axis(ax.yaxis)
    ax.set_title("How deep to fine-tune, at the same images seen")
    return fig
