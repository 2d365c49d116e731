"""The regimes, one entry each: everything the library and the book know about a regime.

A regime says which network is built (`base`), how it starts (`init`), which of its leading
VGG16 blocks are frozen in each training phase, what it is called on the pages and which
colour it wears in every figure. Models, training, the config's validation and the pages
all ask this registry; adding a regime is one entry here (plus its test).

This module imports nothing heavy: the page side reads it without a backend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """One phase of training.

    `frozen` is the number of leading VGG16 blocks kept frozen (5: the whole base; 0: none;
    "unfreeze_from": the config's `unfreeze_from` - 1). `epochs`, `learning_rate` and
    `patience` name the config fields that hold this phase's budget, rate and early stop
    (`patience=None`: run every epoch).
    """

    frozen: int | str = 0
    epochs: str = "epochs"
    learning_rate: str = "learning_rate"
    patience: str | None = None
    label: str = ""                    # the prefix of its epoch lines ("head ", "fine-tune ")
    monitor: str = "val_loss"          # what its own stopping rule watches
    restore_best: bool = False         # whether that rule restores the best epoch's weights

    def frozen_blocks(self, cfg) -> int:
        return cfg.unfreeze_from - 1 if self.frozen == "unfreeze_from" else int(self.frozen)


@dataclass(frozen=True)
class Regime:
    """A way of training VGG16 (or, for mlp, its head alone) on CIFAR-10."""

    name: str
    description: str                  # one line, as the pages show it
    base: str                         # "vgg16" (the weights' VGG16), "vgg16_bn", or "none"
    init: str                         # "pretrained" or "random"
    phases: tuple[Phase, ...]
    color: str                        # one colour per regime in every figure (colour-blind safe)
    replaces: str | None = None       # the regime this one corrects, as the original ran it

    @property
    def pretrained(self) -> bool:
        return self.init == "pretrained"

    @property
    def frozen_at_build(self) -> int:
        """Leading blocks frozen when the model is built (those of the first phase)."""
        first = self.phases[0].frozen
        return first if isinstance(first, int) else 0

    @property
    def phased(self) -> bool:
        return len(self.phases) > 1

    def training_fields(self) -> dict:
        """What of this entry computes a run (its network, initialisation and phases), as
        data for the run's key; its description, colour and `replaces` are words."""
        return {"base": self.base, "init": self.init,
                "phases": [dataclasses.asdict(phase) for phase in self.phases]}


ONE_PHASE = (Phase(),)

# Colours: seaborn's "colorblind" palette, fixed here so pages need not import seaborn.
REGISTRY: dict[str, Regime] = {r.name: r for r in (
    Regime("scratch", "VGG16 architecture trained from random initialisation",
           base="vgg16", init="random", phases=ONE_PHASE, color="#029e73", replaces="mlp"),
    Regime("frozen", "pretrained VGG16 base frozen; only the head trains",
           base="vgg16", init="pretrained", phases=(Phase(frozen=5),), color="#0173b2",
           replaces="partial"),
    Regime("finetune", "pretrained VGG16 base and head train in one phase (blocks before "
           "`unfreeze_from` stay frozen; by default none)", base="vgg16", init="pretrained",
           phases=(Phase(frozen="unfreeze_from"),), color="#de8f05"),
    Regime("partial", "pretrained VGG16 base with blocks 1–4 frozen; block 5 and the head "
           "train", base="vgg16", init="pretrained", phases=(Phase(frozen=4),),
           color="#cc78bc"),
    Regime("scratch_bn", "VGG16 layout with batch normalisation, trained from random "
           "initialisation", base="vgg16_bn", init="random", phases=ONE_PHASE,
           color="#d55e00", replaces="scratch"),
    Regime("two_phase", "the head on the frozen base first, then the unfrozen base at a low "
           "rate", base="vgg16", init="pretrained",
           phases=(Phase(frozen=5, epochs="head_epochs", patience="patience", label="head "),
                   Phase(frozen="unfreeze_from", learning_rate="finetune_learning_rate",
                         label="fine-tune ")),
           color="#ca9161", replaces="finetune"),
    Regime("mlp", "no convolutional base: the head alone on the pixels, from random "
           "initialisation", base="none", init="random", phases=ONE_PHASE, color="#fbafe4"),
)}

NAMES: tuple[str, ...] = tuple(REGISTRY)  # as declared; code that must see added entries
# reads REGISTRY itself


class UnknownRegime(ValueError):
    """A regime name that is not in the registry."""


def get(name: str) -> Regime:
    """The registry entry of a regime; a clear error naming the allowed ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownRegime(f"regime: unknown regime {name!r} "
                            f"(allowed: {', '.join(REGISTRY)})") from None


def names(*, init: str | None = None, base: str | None = None) -> list[str]:
    """Regime names in registry order, optionally only those with this init or base."""
    return [r.name for r in REGISTRY.values()
            if (init is None or r.init == init) and (base is None or r.base == base)]


def color(name: str) -> str:
    """A regime's colour; grey for anything that is not a regime."""
    return REGISTRY[name].color if name in REGISTRY else "#4d4d4d"


def describe(name: str) -> str:
    return REGISTRY[name].description if name in REGISTRY else name


def corrections() -> list[tuple[str, str]]:
    """(as the original ran it, as this report runs it) for each regime that corrects one."""
    return [(r.replaces, r.name) for r in REGISTRY.values() if r.replaces]


def lineage(name: str) -> list[str]:
    """A regime and the regimes that correct it, in turn: "mlp" -> [mlp, scratch, scratch_bn].

    The pages use it to measure each correction of the original study (`replaces`) in order.
    """
    chain = [get(name).name]
    while (after := next((r.name for r in REGISTRY.values() if r.replaces == chain[-1]),
                         None)) and after not in chain:
        chain.append(after)
    return chain
