"""The regime registry: each entry's phases, and what adding one takes."""

import numpy as np
import pytest

from vgg_transfer.run.models import build_model, param_counts
from vgg_transfer.run.training import TrainingPhase, phases_of
from vgg_transfer.spec import regimes
from vgg_transfer.spec.config import ConfigError, load_experiments
from vgg_transfer.spec.profiles import resolve

BLOCK5 = 3 * (3 * 3 * 512 * 512 + 512)
HEAD = 512 * 256 + 256 + 256 * 10 + 10


def _cfg(regime, **values):
    spec = load_experiments()
    spec["experiments"]["probe"] = {"regime": regime,
                                    "weights": "none" if not regimes.get(regime).pretrained
                                    else "hed-bsds500"}
    return resolve(spec, "probe", "smoke", overrides=values, env={})


def test_every_regime_has_a_colour_text_and_a_known_base():
    colours = [regimes.color(name) for name in regimes.NAMES]
    assert len(set(colours)) == len(colours)
    for entry in regimes.REGISTRY.values():
        assert entry.base in ("vgg16", "vgg16_bn", "none") and entry.description
        assert entry.init in ("pretrained", "random")
        assert entry.replaces is None or entry.replaces in regimes.REGISTRY
    assert regimes.names(init="random") == ["scratch", "scratch_bn", "mlp"]


def test_plans_read_their_numbers_from_the_config():
    assert phases_of("frozen", _cfg("frozen", epochs=4)) == [TrainingPhase(5, 4, 1e-4)]
    assert phases_of("partial", _cfg("partial")) == [TrainingPhase(4, 1, 1e-4)]
    cfg = _cfg("two_phase", head_epochs=7, unfreeze_from=3, patience=2)
    assert phases_of("two_phase", cfg) == [TrainingPhase(5, 7, 1e-4, 2, "head "),
                                      TrainingPhase(2, 1, 1e-5, None, "fine-tune ")]


def test_unknown_regime_names_the_allowed_ones():
    with pytest.raises(regimes.UnknownRegime, match="allowed: scratch, frozen"):
        regimes.get("thawed")


def test_a_new_regime_is_one_entry(monkeypatch):
    """An entry alone makes a regime: the config accepts it, the model builds with its
    frozen blocks, training plans its phases, the pages find its colour and text."""
    entry = regimes.Regime("block5", "pretrained VGG16, only block 5 and the head train",
                           base="vgg16", init="pretrained",
                           phases=(regimes.Phase(frozen=4, patience="patience"),),
                           color="#949494")
    monkeypatch.setitem(regimes.REGISTRY, "block5", entry)
    cfg = _cfg("block5", epochs=2)
    built = build_model(cfg.regime, "none")
    assert built.frozen_blocks == 4
    assert param_counts(built.model)["trainable"] == BLOCK5 + HEAD
    assert phases_of(cfg.regime, cfg) == [TrainingPhase(4, 2, 1e-4, cfg.patience)]
    assert regimes.color("block5") == "#949494" and "block 5" in regimes.describe("block5")
    with pytest.raises(ConfigError, match="starts from random weights"):
        _cfg("scratch", weights="hed-bsds500")
    assert np.isfinite(built.model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)).all()
