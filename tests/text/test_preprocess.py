"""One preprocessing path: a row reaches the tokenizer as the same text in training and in the served model, and
the model bundle is typed and versioned."""

from pathlib import Path

import mlflow
import pytest

from relevance import build
from relevance.data.reader import read_records
from relevance.data.records import Record
from relevance.data.sources import data_file
from relevance.model import batches
from relevance.serving.scorer import RelevanceScorer
from relevance.text.preprocess import Preprocessor
from tests.conftest import compose_train, tiny_demo


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, cache_dir):
    """A tiny run whose rows are cleaned (case, spaces) and rewritten (tags) before they are formatted."""
    tmp_path = tmp_path_factory.mktemp("pre")
    cfg = compose_train(
        [
            *tiny_demo(96, dev=26, test=26, folds=2),
            "augmentation=[tags]",
            "train.epochs=1",
        ],
        tmp_path,
        cache_dir,
    )
    return cfg


def test_a_row_is_tokenised_as_the_same_text_in_training_and_in_the_served_model(tagged, cache_dir, monkeypatch):
    tokenised = []
    encode = batches.TokenCache.encode

    def spy(self, tokenizer, inputs, max_length):
        tokenised.append(list(inputs))
        return encode(self, tokenizer, inputs, max_length)

    monkeypatch.setattr(batches.TokenCache, "encode", spy)
    summary = build.train(tagged)
    trained = {text for call in tokenised for text in call}
    rows = read_records(data_file(tagged.data, tagged.paths.cache, "QC", "train"), "QC", require_label=True)[:8]
    # as a user would send them: stray spaces and capitals, which cleaning must take out again
    raw = [
        r.with_text(f"  {r.query.replace(' ', '   ')} ", r.target.upper() if r.target.isascii() else r.target)
        for r in rows
    ]
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    tokenised.clear()
    RelevanceScorer(bundle, cache=cache_dir).predict_records(raw)
    served = tokenised[0]  # each fold's scoring asks for the same texts (the token cache tokenises them once)
    assert all(call == served for call in tokenised) and len(served) == len(raw)
    assert all(text in trained for text in served)  # exactly a text the training run tokenised
    assert all("[" in text for text in served)  # the tags rewrite was replayed


def test_leaf_first_writes_a_category_path_leaf_first_for_qc_rows_only():
    rows = [
        Record(1, "QC", "de", "oboe", "arts,instruments,woodwind, reeds,oboe"),
        Record(2, "QI", "de", "oboe", "yamaha oboe, grenadilla"),
    ]
    leaf_first = Preprocessor(
        {"QC": "{query} | {target}", "QI": "{query} | {target}"}, False, True, None, None, None, "leaf_first"
    )
    assert leaf_first.format(rows) == [
        "oboe | oboe < woodwind, reeds < instruments < arts",
        "oboe | yamaha oboe, grenadilla",
    ]
    encoder = Preprocessor({"QC": ""}, True, True, None, category_order="leaf_first")
    assert encoder.format(rows[:1]) == [("oboe", "oboe < woodwind, reeds < instruments < arts")]
    as_data = Preprocessor({"QC": ""}, True, True, None)
    assert as_data.format(rows[:1]) == [("oboe", "arts,instruments,woodwind, reeds,oboe")]
