"""train.wise_ft: each trained model moved back toward where it started (WiSE-FT), before it scores and is saved."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from relevance import build, checks
from relevance.data.training_data import TrainingRows
from relevance.errors import ConfigError
from relevance.model import finetune
from relevance.model.backbones import load_tokenizer
from relevance.runtime import resolve_runtime
from relevance.training.fold import ModelSource
from relevance.weights import resolve_source
from tests.conftest import compose_train


def _trained(keep: float, tmp_path, cache_dir) -> tuple[dict, np.ndarray]:
    """One tiny LoRA fold at train.wise_ft=keep (same seed, same rows): its saved adapter and its scores."""
    cfg = compose_train(["backbone=tiny", "train.batch_size=4", f"train.wise_ft={keep}"], tmp_path, cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    trainer = build.fold_trainer(
        cfg,
        resolve_runtime(cfg.strategy, "auto", "float32"),
        ModelSource(location, load_tokenizer(cfg.backbone, location), 64),
    )
    texts = [f"query: item {i}\ncategory: food,grocery {i % 5}" for i in range(24)]
    rows = TrainingRows(texts, np.array([i % 3 != 0 for i in range(24)], dtype=int))
    folder = tmp_path / f"keep-{keep}"
    scores = trainer.train(rows, [texts[:8]], 0, folder)[0][0]
    return load_file(folder / "adapter_model.safetensors"), scores


def test_a_lora_model_keeps_that_share_of_its_update_and_its_head_as_trained(tmp_path, cache_dir):
    whole, whole_scores = _trained(1.0, tmp_path, cache_dir)
    half, half_scores = _trained(0.5, tmp_path, cache_dir)
    assert whole.keys() == half.keys()
    lora_b = [name for name in whole if "lora_B" in name]
    assert lora_b and all(whole[name].abs().sum() > 0 for name in lora_b)  # the update is not zero to begin with
    for name, tensor in whole.items():
        expected = tensor * 0.5 if "lora_B" in name else tensor  # B starts at zero: half of B is half the update
        torch.testing.assert_close(half[name], expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(whole_scores, half_scores)  # what scored (and is saved) is the interpolated model


def test_a_full_fine_tune_moves_every_trained_tensor_but_the_heads_back_toward_its_start():
    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(3, 3), "classifier": torch.nn.Linear(3, 1)})
    model["encoder"].weight.requires_grad = False  # frozen (as the embeddings are): not interpolated
    backbone = OmegaConf.create({"finetune": "full", "head_module": "classifier"})
    start = finetune.interpolation_start(model, backbone)
    assert set(start) == {"encoder.bias"}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)  # "training"
    finetune.interpolate(model, start, 0.25)
    torch.testing.assert_close(model["encoder"].bias, before["encoder.bias"] + 0.25)
    torch.testing.assert_close(model["encoder"].weight, before["encoder.weight"] + 1.0)
    torch.testing.assert_close(model["classifier"].weight, before["classifier.weight"] + 1.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.wise_ft=0"], r"train.wise_ft=0(.0)? is the trained weights' share"),
        (["train.wise_ft=1.5"], r"train.wise_ft=1.5 is the trained weights' share"),
        (["train.wise_ft=0.5", "strategy=deepspeed_stage_3"], r"\(ZeRO-3\) leaves each device a shard"),
    ],
)
def test_a_share_that_cannot_work_is_refused_at_start(overrides, message, tmp_path, cache_dir):
    with pytest.raises(ConfigError, match=message):
        checks.check_config(compose_train(overrides, tmp_path, cache_dir))
