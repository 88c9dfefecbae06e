"""The base trains in train mode: train.gradient_checkpointing recomputes each block in the backward pass (it did
nothing while transformers' eval mode stayed on), and train.dropout decides the base's dropout, not the mode."""

import numpy as np
import pytest
import torch

from relevance import build
from relevance.runtime import resolve_runtime
from relevance.training import fold as fold_module
from tests.conftest import compose_train, tiny_demo

FRESH_MODEL = fold_module.fresh_model


def train_one_fold(overrides, tmp_path, cache_dir, monkeypatch):
    """One fold on 96 demo rows; returns the held-out scores and, per training step, how often the first block
    ran forward with gradients on and whether its dropout was active."""
    seen = {"forward": 0, "dropout": set(), "training": set()}

    def watched(*args, **kwargs):
        model, head = FRESH_MODEL(*args, **kwargs)
        block = next(m for m in model.modules() if type(m).__name__.endswith("Layer"))
        inside = next(block.children())  # the block's own hooks sit outside its checkpoint; this one runs inside

        def hook(module, inputs, output):
            if torch.is_grad_enabled():
                seen["forward"] += 1
                seen["training"].add(block.training)
                seen["dropout"].update(m.p for m in block.modules() if isinstance(m, torch.nn.Dropout))

        inside.register_forward_hook(hook)
        return model, head

    monkeypatch.setattr(fold_module, "fresh_model", watched)
    cfg = compose_train([*tiny_demo(96, backbone=None), "train.epochs=1", *overrides], tmp_path, cache_dir)
    runtime = resolve_runtime(cfg.strategy, cfg.train.precision, cfg.backbone.dtype, 1, 1)
    preprocessor = build.make_preprocessor(cfg)
    data, *_ = build.training_data(cfg, preprocessor)
    held_out = [data.inputs[i] for i in np.flatnonzero(data.folds == 0)]
    trainer = build.fold_trainer(cfg, runtime, build.model_source(cfg, preprocessor))
    scored, _ = trainer.train(data.training_rows(0), [held_out], 0, None)
    return scored[0], seen


@pytest.mark.parametrize("backbone", ["tiny", "multilingual_e5_small"])
def test_checkpointing_recomputes_each_block_and_changes_memory_not_results(backbone, tmp_path, cache_dir, monkeypatch):
    plain, plain_seen = train_one_fold([f"backbone={backbone}"], tmp_path, cache_dir, monkeypatch)
    checkpointed, seen = train_one_fold(
        [f"backbone={backbone}", "train.gradient_checkpointing=true"], tmp_path, cache_dir, monkeypatch
    )
    assert plain_seen["forward"] > 0 and seen["training"] == {True}
    assert seen["forward"] == 2 * plain_seen["forward"]  # forward, then again in the backward pass
    np.testing.assert_allclose(plain, checkpointed, atol=1e-5)
    assert np.std(plain) > 0  # it trained: the scores are not all one value


def test_dropout_is_the_settings_choice_and_training_runs_in_train_mode(tmp_path, cache_dir, monkeypatch):
    off, off_seen = train_one_fold(["backbone=multilingual_e5_small"], tmp_path, cache_dir, monkeypatch)
    on, on_seen = train_one_fold(
        ["backbone=multilingual_e5_small", "train.dropout=true"], tmp_path, cache_dir, monkeypatch
    )
    assert off_seen["training"] == on_seen["training"] == {True}
    assert off_seen["dropout"] == {0.0} and on_seen["dropout"] == {0.1}  # e5's own rate
    assert np.max(np.abs(off - on)) > 1e-4  # the same seed and rows: only dropout differs
