"""Decision thresholds: exact vs Optuna on out-of-fold scores, per language, and the logged model using them."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from relevance import build
from relevance.data.records import Record
from relevance.evaluation import metrics, thresholds
from relevance.serving.predict import load_scorer
from tests.conftest import compose_train, tiny_demo

OPTIONS = OmegaConf.create(
    {"method": "optuna", "value": None, "per_language": True, "min_language_rows": 50, "optuna_trials": 60}
)


def scores_for(rng, n: int, shift: float):
    labels = rng.random(n) < 0.6
    scores = np.clip(rng.normal(0.45 + shift + 0.25 * labels, 0.15), 0, 1)
    return labels.astype(int), scores


def test_exact_is_the_optimum_and_optuna_comes_close():
    labels, scores = scores_for(np.random.default_rng(0), 3000, 0.0)
    chosen, found = thresholds.tune(labels, scores, OPTIONS, seed=0)
    exact, searched = found["exact"], found["optuna"]
    curve = metrics.threshold_curve(labels, scores)[1]
    assert exact.f1 == pytest.approx(curve.max())
    assert searched.f1 <= exact.f1 + 1e-12 and searched.f1 > exact.f1 - 0.02
    assert chosen == searched.threshold  # method=optuna decides with Optuna's threshold...
    logged = thresholds.as_metrics(found, "qc_")
    assert {"qc_threshold_exact_f1", "qc_threshold_optuna_f1", "qc_threshold_optuna_seconds"} <= set(logged)


def test_fixed_threshold_is_used_but_exact_still_logged():
    labels, scores = scores_for(np.random.default_rng(1), 500, 0.0)
    chosen, found = thresholds.tune(labels, scores, OmegaConf.merge(OPTIONS, {"method": "fixed", "value": 0.4}), 0)
    assert chosen == 0.4 and set(found) == {"exact"}


def test_each_language_with_enough_rows_gets_its_own_threshold():
    rng = np.random.default_rng(2)
    parts = [scores_for(rng, 400, 0.0), scores_for(rng, 400, 0.3), scores_for(rng, 20, 0.0)]
    labels = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    languages = ["en"] * 400 + ["fr"] * 400 + ["ja"] * 20
    exact = OmegaConf.merge(OPTIONS, {"method": "exact"})
    found = thresholds.by_language(labels, scores, languages, exact, seed=0)
    assert set(found) == {"en", "fr"}  # ja has too few rows: it keeps the task's threshold
    assert found["fr"] > found["en"] + 0.15  # fr's scores sit 0.3 higher, so must its threshold
    rows = thresholds.row_thresholds(languages + ["ko"], 0.5, found)
    assert rows[0] == found["en"] and rows[400] == found["fr"] and rows[-2] == 0.5 and rows[-1] == 0.5


def test_a_run_logs_both_methods_and_its_model_decides_per_language(tmp_path, cache_dir):
    cfg = compose_train(
        [
            *tiny_demo(240, dev=78, test=52, folds=2),
            "threshold.method=optuna",
            "threshold.per_language=true",
            "threshold.min_language_rows=40",
            "threshold.optuna_trials=30",
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    assert summary["threshold_optuna_f1"] <= summary["threshold_exact_f1"] + 1e-12
    assert summary["decision_threshold"] == summary["threshold_optuna"]
    per_language = {
        key.rsplit("_", 1)[1]: value for key, value in summary.items() if key.startswith("decision_threshold_")
    }
    assert per_language  # the demo's seen languages have >= 40 out-of-fold rows
    scorer = load_scorer(summary["run_id"], "folds", None)
    assert scorer.language_thresholds == {"QC": pytest.approx(per_language)}
    language = next(iter(per_language))
    rows = [
        Record(id=0, task="QC", language=language, query="q", target="t"),
        Record(id=1, task="QC", language="xx", query="q", target="t"),
    ]
    assert list(scorer.row_thresholds(rows)) == pytest.approx([per_language[language], summary["decision_threshold"]])
    scores = np.array([per_language[language], summary["decision_threshold"]])
    assert list(scorer.decide(rows, scores)) == [1, 1] and list(scorer.decide(rows, scores - 1e-6)) == [0, 0]


def test_matched_rate_gives_unseen_languages_their_own_quantile():
    from relevance.evaluation.thresholds import matched_rate

    rng = np.random.default_rng(0)
    languages = ["en"] * 200 + ["de"] * 200 + ["pl"] * 50
    scores = np.concatenate([rng.uniform(0.0, 1.0, 200), rng.uniform(0.0, 0.5, 200), rng.uniform(0, 1, 50)])
    found = matched_rate(languages, scores, seen={"en"}, rate=0.6, min_rows=100)
    assert set(found) == {"de"}  # en was seen in training; pl has too few rows to judge
    de = scores[200:400]
    assert abs(np.mean(de >= found["de"]) - 0.6) <= 0.01  # predicted relevant as often as the training rows
    assert found["de"] < 0.5  # its scores sit lower as a whole, so its threshold moved down with them


def test_a_matched_rate_model_thresholds_an_unseen_language_from_its_own_scores(tmp_path, cache_dir):
    cfg = compose_train(
        [
            *tiny_demo(240, dev=78, test=52, folds=2),
            "threshold.unseen=matched_rate",
            "threshold.min_language_rows=5",
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    assert 0 <= summary["dev_unseen_f1_at_matched_rate"] <= 1  # the demo's dev holds ar, de, it, pl
    scorer = load_scorer(summary["run_id"], "folds", None)
    rate = summary["oof_positive_rate_at_decision"]
    rows = [Record(id=i, task="QC", language="xx", query="q", target="t") for i in range(20)]
    scores = np.linspace(0.0, 0.19, 20)  # far under the task's threshold as a whole
    own = scorer.row_thresholds(rows, scores)
    assert len(set(own)) == 1 and own[0] < 0.2
    assert abs(scorer.decide(rows, scores).mean() - rate) <= 0.05 + 1e-9  # relevant as often as training rows were
    assert list(scorer.row_thresholds(rows[:4], scores[:4])) == [summary["decision_threshold"]] * 4  # too few rows


def test_dev_f1_named_at_the_oof_threshold_is_at_it_when_unseen_languages_get_their_own(tmp_path, cache_dir):
    from relevance.evaluation.reporting import _task_report

    cfg = compose_train(["threshold.unseen=matched_rate", "threshold.min_language_rows=50"], tmp_path, cache_dir)
    rng = np.random.default_rng(0)
    labels, oof = scores_for(rng, 400, 0.0)
    en_labels, en_scores = scores_for(rng, 200, 0.0)
    de_labels, de_scores = scores_for(rng, 200, -0.3)  # an unseen language whose scores sit lower as a whole
    dev_labels, dev_scores = np.concatenate([en_labels, de_labels]), np.concatenate([en_scores, de_scores])
    dev = [
        Record(id=i, task="QC", language="en" if i < 200 else "de", query="q", target="t", label=int(label))
        for i, label in enumerate(dev_labels)
    ]
    summary, threshold, _, _ = _task_report(
        build.report_settings(cfg), "QC", labels, oof, ["en"] * 400, np.arange(400) % 2, dev, dev_scores, tmp_path, ""
    )
    at_oof = metrics.scores_at(de_labels, de_scores, threshold).f1
    assert summary["dev_unseen_f1_at_oof_threshold"] == pytest.approx(at_oof)
    assert summary["dev_unseen_f1_at_matched_rate"] > at_oof + 0.1  # its own quantile, not the task's threshold
    everything = metrics.scores_at(dev_labels, dev_scores, threshold).f1
    assert summary["dev_f1_at_oof_threshold"] == pytest.approx(everything)
    assert summary["dev_f1_at_decision"] > everything  # the run decides de at its own quantile
