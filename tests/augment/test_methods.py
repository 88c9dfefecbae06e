"""The winning teams' methods, piece by piece: translations and their cache, concat and synthesis, hard negatives,
self-validation flags, and which rows train which fold."""

import functools
import hashlib
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from relevance.augment.hard_negatives import hard_negatives, ranked_neighbours
from relevance.augment.self_validation import flag_contradictions, lexical_similarity, removal_counts
from relevance.augment.translate import concat_pivot, synthesize
from relevance.data.records import Record
from relevance.data.training_data import TrainingData
from relevance.data.translations_file import read_translations, write_translations
from relevance.errors import ConfigError, DataError
from relevance.tasks import TASKS
from relevance.text.translation import MODEL_TRANSLATORS, Translations, TranslatorSettings
from relevance.weights import translator_location


def _records():
    rows = [
        ("fr", "casquette", "apparel,hats", 1),
        ("es", "gorra", "apparel,hats", 1),
        ("en", "yoga mat", "sports,yoga mats", 1),
        ("ja", "ヨガマット", "apparel,hats", 0),
    ]
    return [
        Record(id=i + 1, task="QC", language=lang, query=q, target=t, label=y) for i, (lang, q, t, y) in enumerate(rows)
    ]


def _translations(cfg, cache):
    """The run's translator: a model's weights where relevance.weights says (a tiny random model here)."""
    settings = TranslatorSettings.from_dict(OmegaConf.to_container(cfg, resolve=True))
    return Translations(settings, cache, functools.partial(translator_location, cache=cache))


def _file_translations(tmp_path, table):
    path = tmp_path / "translations.jsonl"
    write_translations(path, table)
    return _translations(OmegaConf.create({"name": "file", "kind": "file", "path": str(path)}), tmp_path)


def test_translations_file_is_validated_with_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps({"text": "a", "source_language": "fr", "target_language": "en", "translation": "b"})
        + "\n"
        + json.dumps({"text": "a", "source_language": "fr"})
        + "\n"
    )
    with pytest.raises(DataError, match=r"t.jsonl, line 2: .*translation"):
        read_translations(path, lowercase=True)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1: not valid JSON"):
        read_translations(path, lowercase=True)


def test_concat_appends_the_english_translation_and_leaves_english_rows(tmp_path):
    translations = _file_translations(
        tmp_path,
        {("Casquette", "fr", "en"): "Cap", ("gorra", "es", "en"): "cap", ("ヨガマット", "ja", "en"): "yoga mat"},
    )
    options = OmegaConf.create({"pivot": "en", "separator": " - "})
    out = concat_pivot(_records(), options, translations)
    assert [r.query for r in out] == ["casquette - cap", "gorra - cap", "yoga mat", "ヨガマット - yoga mat"]
    assert [r.target for r in out] == [r.target for r in _records()]
    assert translations.reused == 3 and translations.computed == 0


def test_a_missing_translation_names_the_file_and_the_text(tmp_path):
    translations = _file_translations(tmp_path, {("casquette", "fr", "en"): "cap"})
    with pytest.raises(DataError, match=r"translations.jsonl: 2 of 3 texts have no translation .*gorra"):
        concat_pivot(_records(), OmegaConf.create({"pivot": "en", "separator": " - "}), translations)


def test_synthesis_copies_rows_into_the_missing_languages_keeping_target_and_label(tmp_path):
    records = _records()
    table = {(r.query, r.language, lang): f"{r.query}@{lang}" for r in records for lang in TASKS["QC"].unseen_languages}
    options = OmegaConf.create({"languages": None, "rows_per_language": 2})
    extras, source = synthesize(records, options, _file_translations(tmp_path, table), seed=0)
    assert len(extras) == 2 * len(TASKS["QC"].unseen_languages)
    for extra, i in zip(extras, source):
        assert extra.language in TASKS["QC"].unseen_languages
        assert extra.query == f"{records[i].query}@{extra.language}"
        assert (extra.target, extra.label) == (records[i].target, records[i].label) and extra.id < 0


def test_model_translations_are_cached_so_a_second_pass_translates_nothing(tmp_path):
    cfg = OmegaConf.load("conf/translator/tiny.yaml")
    requests = [("casquette", "fr", "en"), ("gorra", "es", "en"), ("casquette", "fr", "en"), ("gorra", "es", "de")]
    first = _translations(cfg, tmp_path)
    out = first(requests)
    assert first.computed == 3 and first.reused == 0 and set(out) == set(requests)
    again = _translations(cfg, tmp_path)  # a new process of the same sweep: same sqlite cache
    assert again(requests) == out and again.computed == 0 and again.reused == 3
    changed = _translations(OmegaConf.merge(cfg, {"max_new_tokens": 3}), tmp_path)
    changed(requests[:1])
    assert changed.computed == 1  # another model setting is another cache key


def test_a_seq2seq_translator_runs_batched_per_language_pair(tmp_path):
    cfg = OmegaConf.merge(
        OmegaConf.load("conf/translator/tiny.yaml"),
        {"kind": "seq2seq", "prompt": "<2{target_code}> {text}", "codes": {"vn": "vi"}, "batch_size": 2},
    )
    translations = _translations(cfg, tmp_path)
    requests = [(f"query {k}", "fr", "vn" if k % 2 else "de") for k in range(5)]
    out = translations(requests)
    assert set(out) == set(requests) and all(isinstance(v, str) for v in out.values())
    assert translations.computed == 5


def test_extras_train_only_the_folds_where_their_source_row_trains():
    inputs = [f"row{i}" for i in range(6)]
    data = TrainingData(
        records=_records() + _records()[:2],
        inputs=inputs,
        labels=np.array([1, 1, 1, 0, 1, 1]),
        folds=np.array([0, 0, 1, 1, 2, 2]),
        extra_inputs=["x0", "x2", "x4"],
        extra_labels=np.array([1, 1, 0]),
        extra_source=np.array([0, 2, 4]),
        extra_follows_source=np.array([True, True, False]),
    )
    rows = data.training_rows(0)
    assert rows.inputs == ["row2", "row3", "row4", "row5", "x2", "x4"] and rows.labels.tolist() == [1, 0, 1, 1, 1, 0]
    data.keep[2] = False  # self-validation dropped row 2: its synthesized copy goes too
    assert data.training_rows(0).inputs == ["row3", "row4", "row5", "x4"]
    data.keep[:] = True
    data.train_labels[0] = 0  # relabelled: its copy follows, the hard negative made from row 4 does not
    rows = data.training_rows(1)
    assert rows.inputs == ["row0", "row1", "row4", "row5", "x0", "x4"] and rows.labels.tolist() == [0, 1, 1, 1, 0, 0]
    assert data.labels[0] == 1  # judged by the original label


def test_ranked_neighbours_match_brute_force_and_the_index_agrees(monkeypatch):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = ranked_neighbours(vectors, 10)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    assert (exact == np.argsort(-similarity, axis=1)[:, :10]).all()
    monkeypatch.setattr("relevance.augment.hard_negatives.EXACT_LIMIT", 100)
    approximate = ranked_neighbours(vectors, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approximate)])
    assert overlap > 0.9


def test_hard_negatives_come_from_the_neighbour_window_and_are_never_known_positives(tmp_path):
    paths = [f"home,kitchen,item {k}" for k in range(30)] + [f"sports,outdoor,gear {k}" for k in range(30)]
    records = [
        Record(id=i + 1, task="QC", language="fr", query=f"q{i % 7}", target=p, label=1) for i, p in enumerate(paths)
    ]
    options = OmegaConf.create({"embedder": "tfidf", "window": [3, 10], "rows": 20, "translate_to": None})
    extras, source = hard_negatives(records, options, None, tmp_path, seed=0)
    assert len(extras) == 20
    positives = {(r.query, r.target) for r in records}
    from relevance.augment.hard_negatives import embed

    targets = sorted({r.target for r in records})
    ranked = ranked_neighbours(embed(targets, options, tmp_path), 10)
    for extra, i in zip(extras, source):
        assert extra.label == 0 and extra.query == records[i].query and (extra.query, extra.target) not in positives
        assert targets.index(extra.target) in ranked[targets.index(records[i].target)][3:10]


def test_self_validation_flags_confident_contradictions_and_the_gate_can_veto():
    labels = np.array([1, 1, 0, 0, 1])
    scores = np.array([0.02, 0.6, 0.97, 0.3, 0.5])
    options = OmegaConf.create({"confidence": 0.9, "lexical_gate": {"enabled": False}})
    assert flag_contradictions(labels, scores, options).tolist() == [True, False, True, False, False]
    gated = OmegaConf.create(
        {"confidence": 0.9, "lexical_gate": {"enabled": True, "positive_below": 0.15, "negative_above": 0.5}}
    )
    queries = ["red cap", "x", "baseball cap", "y", "z"]
    targets = ["red cap hats", "x", "kitchen knives", "y", "z"]  # row 0 overlaps: the gate keeps it
    assert lexical_similarity(queries[:1], targets[:1])[0] > 0.5
    assert flag_contradictions(labels, scores, gated, queries, targets).tolist() == [False] * 5
    counts = removal_counts(["fr", "fr", "ja", "ja", "ja"], labels, np.array([True, False, True, False, False]))
    assert counts["self_validation_flagged"] == 2 and counts["self_validation_flagged_fr_label1"] == 1
    assert counts["self_validation_flagged_ja_label0"] == 1 and counts["self_validation_flagged_ja_label1"] == 0


def test_translator_choice_that_cannot_work_fails_at_start(tmp_path, cache_dir, monkeypatch):
    from relevance.checks import check_config
    from tests.conftest import compose_train

    folder = tmp_path / "data"
    folder.mkdir()
    cfg = compose_train(
        ["backbone=tiny", "augmentation=[translate]", "data=competition", f"data.dir={folder}"], tmp_path, cache_dir
    )
    with pytest.raises(ConfigError, match="translator=file needs translator.path"):
        check_config(cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cfg = compose_train(["backbone=tiny", "augmentation=[translate]", "translator=madlad"], tmp_path, cache_dir)
    with pytest.raises(ConfigError, match=r"translator=madlad .* not on this machine"):
        check_config(cfg)
    cfg = compose_train(
        [
            "backbone=tiny",
            "augmentation=[hard_negatives]",
            "augmentation.hard_negatives.embedder=intfloat/multilingual-e5-large",
        ],
        tmp_path,
        cache_dir,
    )
    with pytest.raises(ConfigError, match=r"embedder=intfloat/multilingual-e5-large is not on this machine.*tfidf"):
        check_config(cfg)


@pytest.mark.parametrize("name", ["madlad", "nllb", "qwen3", "seed_x", "tiny"])
def test_typed_translator_settings_keep_the_cache_keys_of_every_translator_file(name):
    """The sqlite cache is keyed by the translator's settings: reading them into TranslatorSettings must give the key
    the config's own values give, or every cached translation of a user's sweep would be computed again."""
    cfg = OmegaConf.to_container(OmegaConf.load(f"conf/translator/{name}.yaml"))
    spec = {k: cfg.get(k) for k in ("kind", "hub_id", "source", "prompt", "max_new_tokens")}
    spec["codes"] = dict(cfg.get("codes") or {})
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    settings = TranslatorSettings.from_dict(cfg)
    assert MODEL_TRANSLATORS[settings.kind](settings, None).key == f"{name}:{digest}"
    assert settings.batch_size == cfg["batch_size"] and settings.codes == cfg["codes"]


def test_a_translator_setting_that_does_not_exist_is_refused_by_its_key():
    with pytest.raises(ConfigError, match=r"translator\.beam_size is not a translator setting"):
        TranslatorSettings.from_dict({"name": "madlad", "kind": "seq2seq", "beam_size": 4})
