import lightning as L
import numpy as np
import torch
from safetensors.torch import load_file

from relevance.model.backbones import load_tokenizer
from relevance.model.datamodule import PairDataModule
from relevance.model.heads import ClassifierHead, load_model
from relevance.model.module import RelevanceModule, apply_lora
from relevance.weights import resolve_source
from tests.conftest import compose_train


def tiny_module(tmp_path, cache_dir, targets="all-linear"):
    cfg = compose_train(["backbone=tiny"], tmp_path, cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    base = load_model(cfg.backbone, location, tokenizer, torch.float32)
    model = apply_lora(base, targets, "score", r=4, alpha=8, dropout=0.0)
    module = RelevanceModule(model, ClassifierHead(), lr=1e-2, weight_decay=0.0, warmup_ratio=0.1, scheduler="cosine")
    return module, tokenizer


def test_lora_freezes_the_base_and_trains_adapter_and_head(tmp_path, cache_dir):
    module, _ = tiny_module(tmp_path, cache_dir)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    assert any("mlp" in n for n in trainable)  # all-linear reaches the MLP, not just attention
    attention_only, _ = tiny_module(tmp_path, cache_dir, targets=["q_proj", "v_proj"])
    assert not any("mlp" in n for n, p in attention_only.named_parameters() if p.requires_grad)


def test_training_lowers_the_loss_and_checkpoints_hold_only_adapter_and_head(tmp_path, cache_dir):
    L.seed_everything(0)
    module, tokenizer = tiny_module(tmp_path, cache_dir)
    texts = ["query: casquette\ncategory: hats", "query: flour\ncategory: phone cases"] * 16
    labels = [1, 0] * 16
    data = PairDataModule(tokenizer, texts, labels, texts, batch_size=8, eval_batch_size=8, max_length=32, seed=0)
    batch = next(iter(data.predict_dataloader()))
    before = torch.nn.functional.binary_cross_entropy_with_logits(
        module(batch), torch.tensor([float(labels[i]) for i in batch["index"]])
    )
    trainer = L.Trainer(
        max_epochs=6,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    after = torch.nn.functional.binary_cross_entropy_with_logits(
        module(batch), torch.tensor([float(labels[i]) for i in batch["index"]])
    )
    assert after < before * 0.7

    trainer.save_checkpoint(tmp_path / "fold.ckpt")
    state = torch.load(tmp_path / "fold.ckpt", weights_only=False)["state_dict"]
    assert state and all("lora_" in k or "score" in k for k in state)
    total_base = sum(p.numel() for n, p in module.named_parameters() if not p.requires_grad)
    assert sum(v.numel() for v in state.values()) < total_base / 4

    module.model.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all("lora_" in k or "score" in k for k in saved) and any("score" in k for k in saved)
    assert not any("embed_tokens" in k for k in saved)


def test_a_fold_is_reproducible_on_cpu(tmp_path, cache_dir):
    """Same seed, same data: identical scores (seeded, deterministic Lightning on CPU)."""
    from relevance import build
    from relevance.data.training_data import TrainingRows
    from relevance.runtime import resolve_runtime
    from relevance.training.fold import ModelSource

    cfg = compose_train(["backbone=tiny", "train.batch_size=4"], tmp_path, cache_dir)
    runtime = resolve_runtime(cfg.strategy, "auto", "float32")
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    texts = [f"query: item {i}\ncategory: food,grocery" for i in range(24)]
    rows = TrainingRows(texts, np.array([i % 3 != 0 for i in range(24)], dtype=int))
    trainer = build.fold_trainer(cfg, runtime, ModelSource(location, tokenizer, 64))
    runs = [trainer.train(rows, [texts[:8]], 0, tmp_path / f"a{k}")[0][0] for k in range(2)]
    different = trainer.but(seed=7).train(rows, [texts[:8]], 0, tmp_path / "b")[0][0]
    assert (runs[0] == runs[1]).all()
    assert not (runs[0] == different).all()
    assert (tmp_path / "a0" / "adapter_model.safetensors").is_file()


def test_trainable_weights_are_float32_over_a_bf16_base_and_keep_small_steps(tmp_path, cache_dir):
    """Item 5 of issue 28: a bf16 base (as on a GPU) keeps every trainable tensor in float32, so an AdamW step smaller
    than bf16's resolution at the weight still moves it; the frozen base stays bf16."""
    from relevance import build
    from relevance.training.fold import ModelSource, fresh_model

    for head in ("classifier", "yes_no"):
        cfg = compose_train(["backbone=tiny", f"head={head}"], tmp_path, cache_dir)
        location = resolve_source(cfg.backbone, cache_dir)
        tokenizer = load_tokenizer(cfg.backbone, location)
        model, head_object = fresh_model(build.fold_settings(cfg), ModelSource(location, tokenizer, 32), torch.bfloat16)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and {p.dtype for p in trainable.values()} == {torch.float32}, head
        assert any(p.dtype == torch.bfloat16 for p in model.parameters() if not p.requires_grad)
        batch = next(
            iter(
                PairDataModule(
                    tokenizer, None, None, ["query: a\ncategory: b"] * 4, 4, 4, max_length=32, seed=0
                ).predict_dataloader()
            )
        )
        batch["labels"] = torch.ones(4)  # one label: identical rows of both labels would cancel
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = head_object(model, batch)  # as Lightning's bf16-mixed runs it
        loss.backward()
        if head == "classifier":
            score = next(p for n, p in trainable.items() if "score" in n)
            with torch.no_grad():
                score.fill_(1.0)  # at 1.0, bf16 cannot hold 1 + 1e-4: a bf16 weight would not move
            before = score.detach().clone()
            torch.optim.AdamW([score], lr=1e-4, weight_decay=0.0).step()
            moved = (score.detach() - before).abs().max().item()
            assert 0 < moved < torch.finfo(torch.bfloat16).eps


def test_weights_that_hold_nothing_are_refused_when_saved_and_when_logged(tmp_path, cache_dir):
    """Issue 28, item 2b: a ZeRO-3 rank that saves without gathering writes empty tensors (each parameter's `.data`
    is its empty shard stand-in outside GatheredParameters); such weights are refused, never logged."""
    import pytest

    from relevance.errors import TrainingError
    from relevance.model import finetune
    from relevance.serving.logged_model import log_model

    module, _ = tiny_module(tmp_path, cache_dir)
    cfg = compose_train(["backbone=tiny"], tmp_path, cache_dir)
    finetune.save(module.model, tmp_path / "whole", cfg.backbone)  # whole tensors: kept
    lora = next(p for n, p in module.model.named_parameters() if "lora_A" in n)
    lora.data = torch.empty(0)  # what a ZeRO-3 rank holds of a weight outside the gather
    with pytest.raises(TrainingError, match="empty tensors .*lora_A.*ZeRO-3"):
        finetune.save(module.model, tmp_path / "sharded", cfg.backbone)
    (tmp_path / "bundle" / "adapters").mkdir(parents=True)
    (tmp_path / "sharded").rename(tmp_path / "bundle" / "adapters" / "fold_0")
    with pytest.raises(TrainingError, match="fold_0/adapter_model.safetensors holds empty tensors"):
        log_model(tmp_path / "bundle", "QC", dict(cfg.backbone), "qc-tiny")
