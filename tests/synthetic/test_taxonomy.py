"""data=taxonomy on a handmade four-locale taxonomy (the real files are not part of the repository)."""

import json
from collections import Counter

import numpy as np
import pytest

from relevance import build
from relevance.data.reader import read_records
from relevance.errors import ConfigError, DataError
from relevance.synthetic.taxonomy import TaxonomySpec, generate_taxonomy, read_taxonomy
from tests.conftest import CATEGORIES, SPEC, compose_train


def test_rows_pair_localized_leaves_with_english_paths_and_hold_out_categories(taxonomy_dir, tmp_path):
    folder = generate_taxonomy(taxonomy_dir, tmp_path / "t", TaxonomySpec(**SPEC))
    train = read_records(folder / "train_QC.txt", "QC", require_label=True)
    dev = read_records(folder / "dev_QC.txt", "QC", require_label=True)
    english = {names[0].split(" > ")[-1]: names[0].replace(" > ", ",") for names in CATEGORIES.values()}
    local = {
        names[c].split(" > ")[-1]: english[names[0].split(" > ")[-1]]
        for names in CATEGORIES.values()
        for c in (0, 1, 2, 3)
    }
    per_language = Counter(r.language for r in train)  # 20 queries of 3 rows, languages in turn
    assert len(train) == 60 and per_language == {"en": 21, "es": 21, "fr": 18}
    assert {r.language for r in dev} == {"en", "es", "fr", "de"}
    for rows in (train, dev):
        assert np.mean([r.label for r in rows]) == pytest.approx(1 / 3)
        for r in rows:
            assert (r.target == local[r.query]) == bool(r.label)  # the true path is the only positive
    # dev asks about categories that never appear as a training query's true path
    train_paths = {r.target for r in train if r.label}
    assert not train_paths & {r.target for r in dev if r.label}
    translations = [json.loads(line) for line in (folder / "translations.jsonl").read_text().splitlines()]
    assert {
        "text": "Käse",
        "source_language": "de",
        "target_language": "en",
        "translation": "Cheese",
    } in translations or all(r.query != "Käse" for r in dev)
    english_names = [t for t in translations if t["target_language"] == "en"]
    assert all(t["translation"] == local[t["text"]].split(",")[-1] for t in english_names)
    qi = read_records(folder / "train_QI.txt", "QI", require_label=True)
    assert all("," not in r.target for r in qi) and len(qi) == 30
    # for translation synthesis: every training query's name in the unseen language, never a held-out category's
    category = {names[c].split(" > ")[-1]: key for key, names in CATEGORIES.items() for c in (0, 1, 2, 3)}
    german = [t for t in translations if t["target_language"] == "de"]
    assert {(t["text"], t["source_language"]) for t in german} == {(r.query, r.language) for r in train + qi}
    assert all(t["translation"] == CATEGORIES[category[t["text"]]][1].split(" > ")[-1] for t in german)
    assert not {t["translation"] for t in german} & {r.query for r in dev if r.language == "de"}


def test_qi_dev_rows_pair_held_out_leaves_with_english_leaf_names_and_leave_the_qc_files_alone(taxonomy_dir, tmp_path):
    folder = generate_taxonomy(taxonomy_dir, tmp_path / "t", TaxonomySpec(**SPEC))
    english = {names[0].split(" > ")[-1] for names in CATEGORIES.values()}
    leaf = {n.split(" > ")[-1]: names[0].split(" > ")[-1] for names in CATEGORIES.values() for n in names}
    train = read_records(folder / "train_QI.txt", "QI", require_label=True)
    dev = read_records(folder / "dev_QI.txt", "QI", require_label=True)
    user = read_records(folder / "dev_user_QI.txt", "QI", require_label=True)
    test = read_records(folder / "test_QI.txt", "QI", require_label=False)
    assert {r.language for r in dev} == {"en", "es", "fr", "de"} and np.mean([r.label for r in dev]) == pytest.approx(
        1 / 3
    )
    assert all(r.target in english and (r.target == leaf[r.query]) == bool(r.label) for r in dev)
    assert not {r.target for r in train if r.label} & {r.target for r in dev if r.label}  # held-out categories
    assert [(r.id, r.target, r.label) for r in user] == [(r.id, r.target, r.label) for r in dev]
    assert [(r.id, r.query, r.label) for r in test] == [(r.id, r.query, None) for r in dev]
    # QI's dev rows are drawn last: the QC files and the QC queries' translations are what they were without them
    dev_qc = read_records(folder / "dev_QC.txt", "QC", require_label=True)
    translations = [json.loads(line) for line in (folder / "translations.jsonl").read_text().splitlines()]
    assert {(t["text"], t["source_language"]) for t in translations} >= {
        (r.query, r.language) for r in dev + dev_qc if r.language != "en"
    }


def test_taxonomy_mistakes_name_the_file_or_key(taxonomy_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("# header\n1 - Apparel\nApparel > Hats\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3"):
        read_taxonomy(bad)
    with pytest.raises(ConfigError, match="taxonomy-with-ids.it-IT.txt"):
        generate_taxonomy(taxonomy_dir, tmp_path / "x", TaxonomySpec(**{**SPEC, "eval_languages": ["it"]}))
    with pytest.raises(ConfigError, match="no taxonomy file"):
        TaxonomySpec(eval_languages=["xx"])
    cfg = compose_train(["backbone=tiny", "data=taxonomy", "data.dir=null"], tmp_path, tmp_path / "cache")
    with pytest.raises(ConfigError, match="data=taxonomy needs data.dir"):
        build.train(cfg)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "translate",
    [
        ["augmentation.translate.mode=concat"],
        ["augmentation.translate.mode=synthesize", "augmentation.translate.rows_per_language=12"],
    ],
    ids=["concat", "synthesize"],
)
def test_training_on_taxonomy_reports_seen_and_unseen_dev_f1(taxonomy_dir, tmp_path, cache_dir, translate):
    overrides = [f"data.taxonomy.{k}={json.dumps(v).replace(' ', '')}" for k, v in SPEC.items()]
    cfg = compose_train(
        [
            "backbone=tiny",
            "data=taxonomy",
            f"data.dir={taxonomy_dir}",
            "augmentation=[translate]",
            *translate,
            "augmentation.translate.languages=[de]",
            "tracking.log_model=false",
            *overrides,
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    if "augmentation.translate.mode=synthesize" in translate:  # into the unseen language, from the taxonomy's names
        assert summary["rows_synthesized"] == 12
    assert summary["dev_seen_all_positive_f1"] == pytest.approx(0.5)
    assert summary["dev_unseen_all_positive_f1"] == pytest.approx(0.5)
    for group in ("seen", "unseen"):
        assert 0 <= summary[f"dev_{group}_f1_at_oof_threshold"] <= 1
    assert summary["translations_computed"] == 0 and summary["translations_reused"] > 0  # the taxonomy's own file


def test_the_user_view_rewrites_each_dev_query_as_a_shopper_would_and_keeps_its_pairs(taxonomy_dir, tmp_path):
    folder = generate_taxonomy(taxonomy_dir, tmp_path / "t", TaxonomySpec(**SPEC))
    dev = read_records(folder / "dev_QC.txt", "QC", require_label=True)
    user = read_records(folder / "dev_user_QC.txt", "QC", require_label=True)
    assert [(r.id, r.language, r.target, r.label) for r in user] == [(r.id, r.language, r.target, r.label) for r in dev]
    rewritten = {(p.language, p.query): u.query for p, u in zip(dev, user)}
    assert all(rewritten[(p.language, p.query)] == u.query for p, u in zip(dev, user))  # one rewrite per query
    assert sum(u.query != p.query for p, u in zip(dev, user)) > len(dev) / 2
    assert (
        generate_taxonomy(taxonomy_dir, tmp_path / "again", TaxonomySpec(**SPEC))
        .joinpath("dev_user_QC.txt")
        .read_bytes()
        == (folder / "dev_user_QC.txt").read_bytes()
    )  # deterministic


def test_user_queries_add_brands_attributes_sizes_parents_code_switching_and_typos():
    from relevance.data.user_queries import ATTRIBUTES, BRANDS, SIZES, user_query

    names = [f"Wanderschuhe {i}" for i in range(300)]
    written = [user_query(name, "de", "Schuhe") for name in names]
    assert written == [user_query(name, "de", "Schuhe") for name in names]  # the query alone decides
    words = [set(w.split()) for w in written]
    assert sum(bool(w & set(BRANDS)) for w in words) > 100
    assert sum(any(a in q for a in ATTRIBUTES["de"]) for q in written) > 150
    assert sum(any(f" {s}" in q for s in SIZES) for q in written) > 30
    assert sum("Schuhe" in w for w in words) > 50  # the parent's name
    assert sum(bool(w & set(ATTRIBUTES["en"])) for w in words) > 30  # an English word in a German query
    typos = sum("Wanderschuhe" not in q for q in written)
    assert 50 < typos < 150  # about a third, one letter each
    assert user_query("収納", "ja", None) == user_query("収納", "ja", None) and "収納" in user_query("収納", "ja", None)
