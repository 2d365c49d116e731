"""The original study, quoted: what its notebook ran and printed, and what this report changed.

These are the only numbers typed into the book, kept here so that this build's own numbers
can stand next to them. The original's regimes are its own names ("scratch", "frozen",
"unfrozen"); `as_run` is the regime of this report that does what the original's did, and
`regimes.lineage` follows the corrections of it.
"""

from __future__ import annotations

from vgg_transfer.spec import regimes

# What the original notebook printed (its cell outputs); it trained on all 50,000 training
# images for 10 epochs with ImageNet weights and validated on the test set.
ORIGINAL = {
    "scratch": {"model": "a multilayer perceptron on the pixels", "as_run": "mlp",
                "test_accuracy": 0.337, "train_accuracy": None},
    "frozen": {"model": "VGG16 with block 5 left trainable", "as_run": "partial",
               "test_accuracy": 0.737, "train_accuracy": 0.894},
    "unfrozen": {"model": "VGG16, everything trainable, one phase at 1e-4", "as_run": "finetune",
                 "test_accuracy": 0.100, "train_accuracy": None},
}

PROTOCOL = {"training images": "50,000 (all)", "validation": "the 10,000 test images",
            "test images": "10,000 (also the validation set)", "epochs": "10",
            "batch": "128", "learning rate": "Adam 1e-4", "seeds": "1, unseeded",
            "pretrained weights": "ImageNet", "input": "32×32"}

# Training images seen per regime by the full protocol (45,000 training images once a
# validation split is held out, 10 epochs).
FULL_PROTOCOL_IMAGES = 45_000 * 10

# Each change to the protocol, the original's regime it concerns, and why.
CHANGES = [
    ("scratch", "a multilayer perceptron (no convolutions)",
     "the VGG16 architecture from random weights (scratch), and a fair baseline: VGG16 with "
     "batch normalisation and augmentation (scratch_bn)",
     "the question is what pretraining adds to the same network"),
    ("frozen", "VGG16 base with block 5 trainable",
     "the whole base frozen and run in inference mode (frozen); block 5 trainable is a "
     "regime of its own (partial)",
     "frozen means frozen; a partly frozen base answers a different question"),
    ("unfrozen", "everything trainable from the first step, Adam 1e-4; collapsed to chance",
     "kept as finetune (built fresh, recompiled after setting trainable), and the Keras "
     "guide's two-phase recipe beside it (two_phase: head first, then the base at 1e-5)",
     "a collapse to chance points at a broken setup; a random head's large gradients can "
     "wreck pretrained features, which the two-phase recipe avoids"),
    ("all", "the test set as validation set",
     "validation carved from the training set; the test set used once per run",
     "choosing or stopping on test data biases the reported accuracy"),
    ("all", "one unseeded run per regime, compared by eye",
     "several seeds per point, mean ± sd and 95% t intervals, seed-paired McNemar tests",
     "a difference needs its uncertainty to mean anything"),
    ("all", "preprocessing varied by regime",
     "preprocess_input as a layer of every model",
     "the regimes must differ only in what they train"),
]


def ours(regime: str) -> list[str]:
    """This report's regimes for one of the original's: as it ran it, then each correction."""
    return regimes.lineage(ORIGINAL[regime]["as_run"])


def corrections() -> list[tuple[str, str]]:
    """(before, after) for each correction, in the order of the original's regimes."""
    return [pair for regime in ORIGINAL
            for pair in zip(ours(regime), ours(regime)[1:], strict=False)]
