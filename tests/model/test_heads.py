"""The yes/no head: prompts per backbone family, p(yes) from one forward pass, training on the answer token."""

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from relevance import build, checks
from relevance.data.records import Record
from relevance.errors import ConfigError
from relevance.model.backbones import load_tokenizer
from relevance.model.datamodule import PairDataModule
from relevance.model.heads import YesNoHead, answer_token_ids, build_head, load_model, prompt_template
from relevance.model.module import RelevanceModule, apply_lora
from relevance.text.preprocess import Preprocessor
from relevance.weights import resolve_source
from tests.conftest import ROOT, compose_train, tiny_demo

BACKBONES = sorted(p.stem for p in (ROOT / "conf" / "backbone").glob("*.yaml"))
ANSWER_POSITION = {
    "alpaca": "### Response:\n",
    "gemma2": "<start_of_turn>model\n",
    "gemma3": "<start_of_turn>model\n",
    "qwen2": "<|im_start|>assistant\n",
}


def compose_yes_no(backbone: str, task: str = "qc"):
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose(
            "train", overrides=[f"backbone={backbone}", f"task={task}", "head=yes_no", "paths.root=.", "paths.cache=."]
        )


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_gets_its_prompt_or_a_clear_refusal(name):
    cfg = compose_yes_no(name)
    if cfg.backbone.kind == "encoder":
        with pytest.raises(ConfigError, match="head=yes_no .* encoder"):
            checks.check_config(cfg)
        return
    checks.check_config(cfg)
    template = prompt_template(cfg.task, cfg.head, cfg.backbone)
    style = "alpaca" if cfg.backbone.prompt_style == "alpaca" else cfg.backbone.family
    assert template.endswith(ANSWER_POSITION[style])  # the answer token comes right after the prompt
    assert "category path is relevant to the shopper's search query" in template
    (text,) = Preprocessor({"QC": template}, encoder=False, lowercase=False, augmentation=None).format(
        [Record(1, "QC", "ar", "%منتخب ايطالي", "apparel accessories,hats & caps", None)]
    )
    assert "%منتخب ايطالي" in text and "hats & caps" in text and "{" not in text


def test_instruct_backbones_use_their_chat_format_and_qi_names_the_title():
    gemma = prompt_template(*(lambda c: (c.task, c.head, c.backbone))(compose_yes_no("gemma3_12b", "qi")))
    assert gemma.startswith("<start_of_turn>user\n") and "product title is relevant" in gemma
    qwen = prompt_template(*(lambda c: (c.task, c.head, c.backbone))(compose_yes_no("qwen2_5_14b")))
    assert qwen.startswith("<|im_start|>user\n") and "<|im_end|>" in qwen


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory, cache_dir):
    cfg = compose_train(["backbone=tiny", "head=yes_no"], tmp_path_factory.mktemp("h"), cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    return cfg, location, tokenizer


def test_answer_logits_equal_a_full_forward_at_each_rows_last_token(tiny_lm):
    cfg, location, tokenizer = tiny_lm
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    head = build_head(cfg.head, tokenizer)
    texts = ["query: a\nanswer:", "query: a much longer query about phone cases\nanswer:"]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    assert batch["attention_mask"][0, -1] == 0  # the short row is right-padded
    with torch.no_grad():
        full = model(**batch).logits
        last = batch["attention_mask"].sum(1) - 1
        expected = full[torch.arange(2), last]
        got = head.answer_logits(model, batch)
        logit, loss = head(model, batch)
    assert torch.allclose(got, expected, atol=1e-5)
    p_yes = torch.softmax(expected[:, [head.yes_id, head.no_id]], dim=-1)[:, 0]
    assert torch.allclose(torch.sigmoid(logit), p_yes, atol=1e-6) and loss is None


def yes_no_with_lora(cfg, location, tokenizer):
    """The tiny LM with the yes/no head's LoRA (r4 on every linear layer, the LM head frozen)."""
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head)
    return apply_lora(model, "all-linear", "score", r=4, alpha=8, dropout=0.0, head=YesNoHead)


def test_training_on_the_answer_token_learns_and_keeps_the_lm_head_frozen(tiny_lm):
    cfg, location, tokenizer = tiny_lm
    L.seed_everything(0)
    model = yes_no_with_lora(cfg, location, tokenizer)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    module = RelevanceModule(model, build_head(cfg.head, tokenizer), 1e-2, 0.0, 0.1, "linear")
    texts = ["query: casquette\ncategory: hats\nanswer:", "query: flour\ncategory: phone cases\nanswer:"] * 16
    labels = [1, 0] * 16
    data = PairDataModule(tokenizer, texts, labels, texts, 8, 8, 32, seed=0)
    batch = next(iter(data.train_dataloader()))
    before = module.head(module.model, batch)[1].item()
    L.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, datamodule=data)
    logit, after = module.head(module.model, batch)
    assert after.item() < before / 2
    assert ((torch.sigmoid(logit) > 0.5).float() == batch["labels"]).all()


def test_answers_must_start_with_different_tokens(tiny_lm):
    _, _, tokenizer = tiny_lm
    with pytest.raises(ConfigError, match="two different tokens"):
        answer_token_ids(tokenizer, {"positive": "no", "negative": "nope"})
    yes, no = answer_token_ids(tokenizer, {"positive": "yes", "negative": "no"})
    assert yes != no and isinstance(YesNoHead(yes_id=yes, no_id=no), YesNoHead)


def test_yes_no_end_to_end_logs_a_model_that_scores(tmp_path, cache_dir):
    import json
    from pathlib import Path

    import mlflow

    cfg = compose_train(
        [
            *tiny_demo(96, dev=26, test=26, folds=2),
            "head=yes_no",
            "evaluate_dev=false",
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    meta = json.loads((bundle / "relevance.json").read_text())
    assert meta["head"]["name"] == "yes_no" and meta["preprocessor"]["templates"]["QC"].endswith("### Response:\n")
    scorer = mlflow.pyfunc.load_model(summary["model_uri"]).unwrap_python_model().scorer
    pairs = [("casquette", "apparel accessories,hats & caps"), ("mehl", "food,grocery")]
    scores = scorer.predict(pairs)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    _exported_yes_no_scores_as_served(bundle, tmp_path / "exported", cache_dir, scorer, pairs)


def _exported_yes_no_scores_as_served(bundle, output, cache_dir, scorer, pairs) -> None:
    """Issue 29, item 6: an exported yes/no fold is a plain causal LM; logit(yes) - logit(no) at the prompt's last
    token (the form vLLM's classifier_from_token serving reads) gives that fold's served score."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from relevance.data.records import Record
    from relevance.serving.export import export

    export(bundle, output, cache_dir)
    described = json.loads((output / "fold_0" / "relevance_export.json").read_text())
    yes, no = described["score"]["yes_token_id"], described["score"]["no_token_id"]
    model = AutoModelForCausalLM.from_pretrained(output / "fold_0").eval()
    tokenizer = AutoTokenizer.from_pretrained(output / "fold_0")
    scorer.folds = ["fold_0"]
    records = [Record(i, "QC", "en", q, t) for i, (q, t) in enumerate(pairs)]
    with torch.inference_mode():
        logits = [
            model(**tokenizer(text, return_tensors="pt")).logits[0, -1] for text in scorer.preprocessor.inputs(records)
        ]
    scores = [torch.sigmoid(row[yes] - row[no]).item() for row in logits]
    assert np.allclose(scores, scorer.predict_records(records), rtol=0, atol=1e-4)


def test_long_rows_keep_the_answer_slot_and_max_length_budgets_the_pair(tiny_lm):
    from relevance.model.batches import encode
    from relevance.text.formatting import fixed_prompt_tokens

    cfg, _, tokenizer = tiny_lm
    build_head(cfg.head, tokenizer)
    template = prompt_template(cfg.task, cfg.head, cfg.backbone)
    overhead = fixed_prompt_tokens(tokenizer, template, encoder=False)
    assert overhead > 20  # the Alpaca preamble is not charged to train.max_length
    long_row = template.format(query="casquette " * 200, target="apparel accessories", language="fr")
    ids = encode(tokenizer, [long_row], max_length=overhead + 16)[0].tolist()
    assert len(ids) == overhead + 16
    suffix = tokenizer("### Response:\n", add_special_tokens=False)["input_ids"]
    assert ids[-len(suffix) :] == suffix  # truncated on the left: the answer position survives


def test_pair_loss_scores_two_lm_head_rows_and_equals_bce_on_their_difference(tiny_lm):
    cfg, location, tokenizer = tiny_lm
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    ids = answer_token_ids(tokenizer, cfg.head.answers)
    pair, vocab = build_head(cfg.head, tokenizer), YesNoHead(yes_id=ids[0], no_id=ids[1], loss="vocab")
    assert pair.loss == "pair"
    texts = ["query: a\nanswer:", "query: a much longer query about phone cases\nanswer:"]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"), labels=torch.tensor([1, 0]))
    with torch.no_grad():
        full = pair.answer_logits(model, batch)
        two = pair.pair_logits(model, batch)
        logit, loss = pair(model, batch)
        vocab_logit, vocab_loss = vocab(model, batch)
    assert torch.allclose(two, full[:, [pair.yes_id, pair.no_id]], atol=1e-5)
    assert torch.allclose(logit, vocab_logit, atol=1e-5)  # the same score either way; only the loss differs
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([1.0, 0.0]))
    assert torch.isclose(loss, expected, atol=1e-6)
    # the vocabulary loss also pays for mass on the other 1,000+ tokens, so it is larger
    assert vocab_loss > loss
    with pytest.raises(ConfigError, match="head.loss='ce' is not one head=yes_no trains with"):
        YesNoHead(yes_id=1, no_id=2, loss="ce")


def test_both_losses_train_the_yes_no_margin(tiny_lm):
    """Both train the same LoRA on the same rows and both separate yes from no (which learns better on a real
    model is measured by bench/taxonomy_quality.py, not here on a random one)."""
    cfg, location, tokenizer = tiny_lm
    texts = ["query: casquette\ncategory: hats\nanswer:", "query: flour\ncategory: phone cases\nanswer:"] * 16
    labels = [1, 0] * 16
    margins = {}
    ids = answer_token_ids(tokenizer, cfg.head.answers)
    for loss in ("pair", "vocab"):
        L.seed_everything(0)
        model = yes_no_with_lora(cfg, location, tokenizer)
        head = YesNoHead(yes_id=ids[0], no_id=ids[1], loss=loss)
        module = RelevanceModule(model, head, 5e-3, 0.0, 0.0, "linear")
        data = PairDataModule(tokenizer, texts, labels, texts, 8, 8, 32, seed=0)
        L.Trainer(
            max_epochs=2,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        ).fit(module, datamodule=data)
        batch = next(iter(data.predict_dataloader()))
        with torch.no_grad():
            logit = head(module.model, batch)[0]
        signs = (
            torch.where(batch["labels"] > 0.5, 1.0, -1.0)
            if "labels" in batch
            else torch.tensor([1.0 if labels[i] else -1.0 for i in batch["index"]])
        )
        margins[loss] = float((logit * signs).mean())
    assert margins["pair"] > 0.1 and margins["vocab"] > 0.1


def test_a_lora_adapter_on_the_lm_head_moves_the_two_answer_rows_as_it_moves_the_full_head(tiny_lm):
    """DILAB's LoRA also targets lm_head: the pair loss reads two rows of it, so it must read them through the
    adapter, giving the same logits as the full head's forward, and train the adapter."""
    cfg, location, tokenizer = tiny_lm
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    torch.manual_seed(0)
    model = apply_lora(
        load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head),
        targets,
        "score",
        r=4,
        alpha=8,
        dropout=0.0,
        head=YesNoHead,
    )
    lm_head = model.get_base_model().get_output_embeddings()
    assert hasattr(lm_head, "lora_B")
    with torch.no_grad():
        lm_head.lora_B["default"].weight.normal_(std=0.5)  # a trained adapter: its delta is not zero
    head = build_head(cfg.head, tokenizer)
    texts = ["query: a\nanswer:", "query: a much longer query about phone cases\nanswer:"]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"), labels=torch.tensor([1, 0]))
    model.eval()
    with torch.no_grad():
        full = head.answer_logits(model, batch)[:, [head.yes_id, head.no_id]]
        two = head.pair_logits(model, batch)
        with model.disable_adapter():
            bypassed = head.pair_logits(model, batch)
    assert torch.allclose(two, full, atol=1e-5)
    assert not torch.allclose(two, bypassed, atol=1e-3)  # the adapter is read, not bypassed
    model.train()
    head(model, batch)[1].backward()
    assert lm_head.lora_A["default"].weight.grad.abs().sum() > 0
