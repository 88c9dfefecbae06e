import numpy as np
import pytest

from relevance.data.records import Record
from relevance.errors import ConfigError
from relevance.model.backbones import load_tokenizer
from relevance.model.batches import LengthGroupedBatches, dataloader
from relevance.text.formatting import check_template
from relevance.text.preprocess import Preprocessor
from relevance.weights import resolve_source
from tests.conftest import compose_train


def test_length_grouped_batches_cover_every_row_once():
    lengths = np.random.default_rng(0).integers(3, 60, 203)
    sampler = LengthGroupedBatches(lengths, 8, shuffle=True, seed=1, megabatch_batches=4)
    first = list(sampler)
    second = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(203)) and len(first) == len(sampler)
    assert first != second  # new order each epoch
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < 0.5 * np.mean([np.ptp(lengths[np.random.default_rng(k).choice(203, 8)]) for k in range(30)])
    inference = list(LengthGroupedBatches(lengths, 8, shuffle=False))
    flat = [i for b in inference for i in b]
    assert sorted(flat) == list(range(203)) and list(lengths[flat]) == sorted(lengths, reverse=True)


def test_batches_are_padded_to_their_own_longest_row(tmp_path, cache_dir):
    cfg = compose_train(["backbone=tiny"], tmp_path, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, resolve_source(cfg.backbone, cache_dir))
    texts = ["a", "short query", "a much longer query about wireless earbuds and phone cases " * 3]
    loader = dataloader(tokenizer, texts, None, batch_size=1, max_length=64, shuffle=False)
    widths = sorted(batch["input_ids"].shape[1] for batch in loader)
    assert widths[0] < widths[-1] <= 64
    batch = next(iter(dataloader(tokenizer, texts, [1, 0, 1], 3, 64, shuffle=False)))
    assert batch["input_ids"].shape[1] == max(widths) and batch["labels"].tolist() == [1.0, 0.0, 1.0]
    assert tokenizer.padding_side == "right" and batch["attention_mask"][:, 0].all()


def test_templates_fill_fields_and_bad_templates_fail():
    record = Record(1, "QC", "fr", "casquette", "apparel accessories,hats & caps,baseball caps", 1)
    decoder = Preprocessor({"QC": "[{language}] {query} | {target}"}, encoder=False, lowercase=True, augmentation=None)
    assert decoder.format([record]) == ["[fr] casquette | apparel accessories,hats & caps,baseball caps"]
    encoder = Preprocessor({"QC": "unused"}, encoder=True, lowercase=True, augmentation=None)
    assert encoder.format([record]) == [(record.query, record.target)]
    with pytest.raises(ConfigError, match="task.template"):
        check_template("{query} {title}")


def test_each_text_is_tokenised_once_and_batches_match_the_tokenizers_own_padding(tmp_path, cache_dir):
    from relevance.model.batches import TokenCache, make_collate

    cfg = compose_train(["backbone=tiny"], tmp_path, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, resolve_source(cfg.backbone, cache_dir))
    texts = ["casquette | hats & caps", "wireless earbuds with a long charging case | electronics,audio", "mehl"]
    cache = TokenCache()
    first = cache.encode(tokenizer, texts, 12)
    assert (cache.hits, cache.misses) == (0, 3)
    again = cache.encode(tokenizer, texts[::-1] + ["new text"], 12)  # another fold: only the new text is tokenised
    assert (cache.hits, cache.misses) == (3, 4)
    assert [a.tolist() for a in again[:3]] == [f.tolist() for f in first[::-1]]
    assert [ids.tolist() for ids in first] == tokenizer(texts, truncation=True, max_length=12)["input_ids"]
    assert len(cache.encode(tokenizer, texts, 5)[1]) == 5  # another length limit is another table

    collate = make_collate(tokenizer)
    ours = collate([{"input_ids": ids, "index": i} for i, ids in enumerate(first)])
    reference = tokenizer(texts, truncation=True, max_length=12, padding=True, return_tensors="pt")
    assert ours["input_ids"].equal(reference["input_ids"]) and ours["attention_mask"].equal(reference["attention_mask"])
    tokenizer.padding_side = "left"
    left = make_collate(tokenizer)([{"input_ids": ids, "index": i} for i, ids in enumerate(first)])
    reference = tokenizer(texts, truncation=True, max_length=12, padding=True, return_tensors="pt")
    assert left["input_ids"].equal(reference["input_ids"]) and left["attention_mask"].equal(reference["attention_mask"])
