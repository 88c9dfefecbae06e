"""augmentation=[tags]: language, hierarchy and attribute tags, the same in training and in the served model."""

import json
from pathlib import Path

import mlflow
import numpy as np
from hydra import compose, initialize_config_dir

from relevance import build
from relevance.augment import rewrite_text
from relevance.augment.tags import attribute_tags, hierarchy_tags
from relevance.data.records import Record
from tests.conftest import ROOT, compose_train, tiny_demo


def tags_options():
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose("train", overrides=["augmentation=[tags]", "paths.root=.", "paths.cache=."]).augmentation


def test_hierarchy_tags_use_the_real_level_split():
    assert hierarchy_tags("food,grocery,flour, baking and cooking,decorations") == (
        "[D1] food [/D1] [D2] grocery [/D2] [D3] flour, baking and cooking [/D3] [D4] decorations [/D4]"
    )


def test_attribute_tags_find_brand_colour_and_size():
    brands, colors = {"anker", "apexel"}, {"black", "white"}
    assert attribute_tags("Anker 65W USB-C Fast Charger Black", brands, colors) == (
        "[ATTR] brand: anker, color: black, size: 65w"
    )
    assert attribute_tags("67mm Phone Filter Holder", brands, colors) == "[ATTR] size: 67mm"
    assert attribute_tags("Satin Pajamas Set", brands, colors) == ""


def test_rewrite_text_tags_each_task_and_is_a_no_op_without_augmentation():
    rows = [
        Record(1, "QC", "fr", "casquette", "apparel accessories,hats & caps", 1),
        Record(2, "QI", "vn", "sạc anker", "anker 65w charger white", 0),
    ]
    qc, qi = rewrite_text(rows, tags_options())
    assert qc.query == "[LANG=fr] casquette" and qc.target == "[D1] apparel accessories [/D1] [D2] hats & caps [/D2]"
    assert qi.query == "[LANG=vn] sạc anker" and qi.target.endswith("[ATTR] brand: anker, color: white, size: 65w")
    assert qi.label == 0 and qi.id == 2
    assert rewrite_text(rows, None) == rows
    options = tags_options()
    options.tags.language = False
    assert rewrite_text(rows[:1], options)[0].query == "casquette"


def test_tagged_training_and_serving_see_the_same_text(tmp_path, cache_dir, monkeypatch):
    import pandas as pd

    import relevance.model.batches as batches

    cfg = compose_train(
        [
            *tiny_demo(96, dev=26, test=26, folds=2),
            "augmentation=[tags]",
            "evaluate_dev=false",
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    assert (
        json.loads((bundle / "relevance.json").read_text())["preprocessor"]["augmentation"]["tags"]["hierarchy"] is True
    )

    scorer = mlflow.pyfunc.load_model(summary["model_uri"]).unwrap_python_model().scorer
    seen = []
    real_encode = batches.encode
    monkeypatch.setattr(batches, "encode", lambda tok, inputs, n: seen.extend(inputs) or real_encode(tok, inputs, n))
    frame = pd.DataFrame(
        {"language": ["fr"], "origin_query": ["Casquette"], "category_path": ["apparel accessories,hats & caps"]}
    )
    scores = scorer.predict_records(scorer.records_from_frame(frame))
    assert "[LANG=fr] casquette" in seen[0] and "[D2] hats & caps [/D2]" in seen[0]  # cleaned, then tagged
    assert np.all((scores > 0) & (scores < 1))
