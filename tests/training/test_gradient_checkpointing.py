"""train.gradient_checkpointing recomputes activations instead of keeping them: the same fold, trained with and
without it, scores the same rows the same (deterministic on CPU)."""

import numpy as np
import pytest

from relevance.model import finetune
from relevance.pipeline import _model_source
from relevance.runtime import resolve_runtime
from relevance.training.fold import train_fold
from relevance.training.rows import make_preprocessor, prepare_data
from tests.conftest import compose_train


@pytest.mark.parametrize("backbone", ["tiny", "multilingual_e5_small"])
def test_checkpointing_changes_memory_not_results(backbone, tmp_path, cache_dir, monkeypatch):
    enabled = []
    original = finetune.enable_gradient_checkpointing

    def spy(model):
        original(model)
        enabled.append(any(getattr(m, "is_gradient_checkpointing", False) for m in model.modules()))

    monkeypatch.setattr(finetune, "enable_gradient_checkpointing", spy)
    scores = []
    for checkpointing in (False, True):
        cfg = compose_train(
            [
                f"backbone={backbone}",
                "data.demo.train_rows=96",
                "train.epochs=1",
                f"train.gradient_checkpointing={checkpointing}",
            ],
            tmp_path,
            cache_dir,
        )
        runtime = resolve_runtime(cfg.strategy, cfg.train.precision, cfg.backbone.dtype, 1, 1)
        preprocessor = make_preprocessor(cfg)
        data, *_ = prepare_data(cfg, preprocessor)
        inputs, labels = data.training_rows(0)
        held_out = [data.inputs[i] for i in np.flatnonzero(data.folds == 0)]
        scored, _ = train_fold(cfg, runtime, _model_source(cfg, preprocessor), inputs, labels, [held_out], 0, None)
        scores.append(scored[0])
    assert enabled == [True]  # only the second training, and there it took hold
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-5)
    assert np.std(scores[0]) > 0  # it trained: the scores are not all one value
