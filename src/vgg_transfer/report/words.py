"""Numbers as a reader sees them: counts in words, rates, accuracies with their spread."""

from __future__ import annotations


def phrase(values, unit: str) -> str:
    """Distinct counts as words: [3, 30, 3] -> "3 or 30 epochs", [2500] -> "2,500 images"."""
    counts = sorted({int(v) for v in values})
    joined = listing([f"{n:,}" for n in counts], "or")
    return f"{joined} {unit}{'' if counts == [1] else 's'}"


def listing(items: list[str], conjunction: str = "and") -> str:
    """"a", "a and b", "a, b and c" (or another conjunction)."""
    items = list(items)
    return (items[0] if len(items) == 1
            else ", ".join(items[:-1]) + f" {conjunction} " + items[-1])


def distinct(values) -> str:
    """Each value once, in first-seen order: "mixed_bfloat16", "float32 / mixed_bfloat16"."""
    return " / ".join(dict.fromkeys(str(v) for v in values))


def counts(values) -> str:
    """Distinct counts without a unit: [3, 30] -> "3 or 30"."""
    return phrase(values, "x").rsplit(" ", 1)[0]


def plural(n: int, unit: str) -> str:
    """"1 run", "3 runs"."""
    return f"{n} {unit}{'s' if n != 1 else ''}"


def rate(value: float) -> str:
    """A learning rate as written by hand: 1e-4 rather than 0.0001."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def accuracy_cell(mean: float, sd: float, n: int, low: float, high: float) -> str:
    """"41.2% ± 1.3 (38.0–44.4%)" over seeds; "41.2% (38.2–44.3%)" for one run."""
    spread = f" ± {sd * 100:.1f}" if n > 1 else ""
    return f"{mean:.1%}{spread} ({max(low, 0):.1%}–{min(high, 1):.1%})"  # a share: 0 to 1


def summary_cell(summary: dict | None) -> str:
    """"41.2% ± 1.3 (n = 3)", or "not run" when the experiment is not in this build."""
    if summary is None:
        return "not run in this build"
    if summary["n"] == 1:
        return f"{summary['mean']:.1%} (one run)"
    return f"{summary['mean']:.1%} ± {summary['sd'] * 100:.1f} (n = {summary['n']})"


def bullets(lines: list[str]) -> str:
    """Markdown bullets, one per non-empty line."""
    return "\n".join(f"- {line}" for line in lines if line)
