"""Backbones with a vision tower (Gemma-3 4B-27B) train as their text-only model (issue 28, item 4): the auto classes
would build the multimodal model, whose 165 vision layers LoRA's all-linear wraps and never trains (DDP fails on
their unused parameters), and which the plan did not describe. Loading the text-only class from a multimodal
checkpoint must also find every weight: without the key mapping it silently starts them random."""

import pytest
import torch
from omegaconf import OmegaConf
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

from relevance import plan
from relevance.errors import RelevanceError
from relevance.model import backbones
from relevance.model.backbones import load_decoder
from tests.conftest import ROOT, compose_train

HUB_BACKBONES = sorted(p.stem for p in (ROOT / "conf" / "backbone").glob("*.yaml") if "source: hub" in p.read_text())
MULTIMODAL_ON_THE_HUB = ("gemma3_12b", "gemma3_12b_pt")  # their config.json: model_type gemma3, a SigLIP tower
TEXT = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    sliding_window=16,
)
VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
)


class _Tokenizer:
    pad_token_id = 0


@pytest.fixture(scope="module")
def multimodal_checkpoint(tmp_path_factory):
    """A tiny random Gemma-3 with its vision tower, saved as transformers saves one."""
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(
        Gemma3Config(text_config=TEXT, vision_config=VISION, mm_tokens_per_image=4)
    ).eval()
    folder = tmp_path_factory.mktemp("gemma3-multimodal")
    model.save_pretrained(folder)
    return folder, model


def _backbone():
    return OmegaConf.create(
        {"name": "gemma3_tiny_mm", "family": "gemma3", "trust_remote_code": False, "attention": "eager"}
    )


def test_a_multimodal_checkpoint_loads_as_its_text_only_model_with_every_weight(multimodal_checkpoint):
    folder, multimodal = multimodal_checkpoint
    causal = load_decoder(_backbone(), str(folder), _Tokenizer(), torch.float32, causal_lm=True).eval()
    classifier = load_decoder(_backbone(), str(folder), _Tokenizer(), torch.float32, causal_lm=False)
    for model in (causal, classifier):
        assert not [name for name, _ in model.named_modules() if "vision" in name or "multi_modal" in name]
    ids = torch.tensor([[2, 5, 7, 9, 11]])
    with torch.no_grad():
        same = torch.allclose(causal(input_ids=ids).logits, multimodal(input_ids=ids).logits, atol=1e-5)
    assert same  # the same language model (eager attention here, SDPA there: equal to rounding)
    text_embeddings = multimodal.model.language_model.embed_tokens.weight
    assert torch.equal(classifier.model.embed_tokens.weight, text_embeddings)


def test_weights_missing_from_the_checkpoint_are_refused_not_left_random(multimodal_checkpoint, monkeypatch):
    folder, _ = multimodal_checkpoint
    monkeypatch.setattr(backbones, "TEXT_ONLY_KEYS", {})  # as before: the text-only class finds none of its weights
    with pytest.raises(RelevanceError, match=r"weight\(s\) of the model were not in the checkpoint"):
        load_decoder(_backbone(), str(folder), _Tokenizer(), torch.float32, causal_lm=True)


def _hub_config(cfg):
    """The config.json the hub serves for this backbone: its published dimensions, inside the multimodal config
    for the Gemma-3 checkpoints that carry a vision tower."""
    text = plan.architecture(cfg.backbone, cfg.paths.cache)
    if cfg.backbone.name in MULTIMODAL_ON_THE_HUB:
        return Gemma3Config(text_config=text.to_dict())
    return text


@pytest.mark.parametrize("head", ["classifier", "yes_no"])
@pytest.mark.parametrize("backbone", HUB_BACKBONES)
def test_the_plan_builds_the_model_training_builds(backbone, head, tmp_path, cache_dir, monkeypatch):
    """On the meta device, from the published dimensions (the plan) and from the hub's own config (training):
    the same parameter count, the same LoRA-wrapped modules, no vision module."""
    cfg = compose_train([f"backbone={backbone}", f"head={head}"], tmp_path, cache_dir)
    if head == "yes_no" and cfg.backbone.kind == "encoder":
        pytest.skip("the yes/no head needs a decoder (refused at start)")
    planned, _ = plan.build_on_meta(cfg)
    hub = _hub_config(cfg)
    monkeypatch.setattr(plan, "architecture", lambda backbone, cache: hub)
    trained, _ = plan.build_on_meta(cfg)

    def wrapped(model):
        return sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A"))

    assert sum(p.numel() for p in trained.parameters()) == sum(p.numel() for p in planned.parameters())
    assert wrapped(trained) == wrapped(planned) and wrapped(trained)
    assert not [name for name, _ in trained.named_modules() if "vision" in name]
