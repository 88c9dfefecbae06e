"""`relevance plan`: every backbone and every recipe built on the meta device in seconds, with its head and LoRA;
targets that match nothing and heads that do not exist are refused in one sentence."""

import pytest

from relevance import plan
from relevance.errors import ConfigError
from tests.conftest import ROOT, compose_train

BACKBONES = sorted(p.stem for p in (ROOT / "conf" / "backbone").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_on_meta_with_its_head_and_lora(backbone, tmp_path, cache_dir):
    cfg = compose_train([f"backbone={backbone}"], tmp_path, cache_dir)
    planned = plan.make_plan(cfg, rows=1000)
    assert planned.total > planned.trainable > 0
    if cfg.backbone.finetune == "lora":
        assert planned.targets and all(count % planned.layers == 0 for count in planned.targets.values())  # per block
    memory = planned.memory_gb()
    assert memory["weights"] > 0 and memory["activations"] > planned.memory_gb(checkpointing=True)["activations"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_recipe_plans(experiment, tmp_path, cache_dir):
    cfg = compose_train([f"experiment={experiment}"], tmp_path, cache_dir)
    assert "parameters:" in plan.report(cfg, plan.make_plan(cfg, rows=1000), mfu=0.3)


def test_qwen3_14b_counts_match_its_published_size(tmp_path, cache_dir):
    """13.99 B parameters; LoRA r16 on every linear layer of its 40 blocks: 7 x 40 adapters, 64.2 M trainable."""
    cfg = compose_train(["backbone=qwen3_14b", "lora.r=16"], tmp_path, cache_dir)
    planned = plan.make_plan(cfg, rows=1000)
    assert planned.total == pytest.approx(13.99e9 + planned.trainable, rel=1e-3)
    lora = planned.trainable - 5120  # the one-logit head trains in full beside the adapters
    assert lora == pytest.approx(64.2e6, rel=2e-3)
    assert planned.targets == {
        name: 40 for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    }


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (
            ["backbone.lora_targets=[qkv_proj]"],
            "backbone.lora_targets=['qkv_proj'] does not fit Qwen3ForSequenceClassification",
        ),
        (["backbone.head_module=classifier"], "backbone.head_module=classifier is not a module of"),
    ],
)
def test_a_target_or_head_that_does_not_exist_is_refused(overrides, words, tmp_path, cache_dir):
    cfg = compose_train(["backbone=qwen3_8b", *overrides], tmp_path, cache_dir)
    with pytest.raises(ConfigError) as caught:
        plan.make_plan(cfg, rows=1000)
    assert words in str(caught.value)


def test_zero_3_shards_the_weights_over_the_gpus(tmp_path, cache_dir):
    one = plan.make_plan(compose_train(["backbone=qwen2_5_14b"], tmp_path, cache_dir), rows=1000)
    four = plan.make_plan(
        compose_train(
            ["backbone=qwen2_5_14b", "strategy=deepspeed_stage_3", "strategy.devices=4"], tmp_path, cache_dir
        ),
        rows=1000,
    )
    assert four.memory_gb()["weights"] == pytest.approx(one.memory_gb()["weights"] / 4)


def test_relevance_plan_prints_the_plan_and_refuses_a_wrong_key(tmp_path, cache_dir):
    from tests import entry_points

    env = {"RELEVANCE_CACHE": str(cache_dir)}
    result = entry_points.run("relevance", "plan", "backbone=qwen3_14b", "lora.r=16", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "parameters: 14.05 B, trainable 64.2 M" in result.stdout and "H100-80G: " in result.stdout
    wrong = entry_points.run("relevance", "plan", "lora.rank=16", cwd=tmp_path, env=env)
    assert wrong.returncode == 2 and "Key 'rank' not in 'Lora'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_4bit_weights_take_about_a_quarter_of_bf16(tmp_path, cache_dir):
    bf16 = plan.make_plan(compose_train(["backbone=gemma3_12b"], tmp_path, cache_dir), rows=1000)
    nf4 = plan.make_plan(
        compose_train(["backbone=gemma3_12b", "backbone.quantization=4bit"], tmp_path, cache_dir), 1000
    )
    assert nf4.memory_gb()["weights"] == pytest.approx(bf16.memory_gb()["weights"] * 0.55 / 2)


class _FakeGpu:
    """A GPU's reported size: no CUDA device exists on these machines, so its properties are stood in for."""

    def __init__(self, gigabytes: float):
        self.total_memory = gigabytes * 1e9


@pytest.mark.parametrize(("gigabytes", "refused"), [(24, True), (80, False)])
def test_a_run_that_cannot_fit_the_visible_gpu_is_refused_at_start(
    gigabytes, refused, tmp_path, cache_dir, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: _FakeGpu(gigabytes))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"a {gigabytes} GB GPU")
    cfg = compose_train(["backbone=qwen3_14b"], tmp_path, cache_dir)  # about 38 GB at the defaults
    if not refused:
        plan.check_fits(cfg)
        return
    with pytest.raises(ConfigError) as caught:
        plan.check_fits(cfg)
    assert "needs about 38 GB per GPU and a 24 GB GPU has 24 GB" in str(caught.value)
    assert "backbone.quantization=4bit" in str(caught.value)  # checkpointing alone (29 GB) would not fit either
