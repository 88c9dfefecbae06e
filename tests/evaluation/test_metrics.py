import numpy as np
import pytest

from relevance.evaluation.metrics import all_positive_f1, best_f1_threshold, per_language, scores_at, threshold_curve


def brute_force_best(labels, scores):
    return max(scores_at(labels, scores, t).f1 for t in np.unique(scores))


@pytest.mark.parametrize("seed", range(5))
def test_exact_sweep_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(np.clip(labels * 0.3 + rng.normal(0.4, 0.25, 300), 0, 1), 2)  # many ties
    best = best_f1_threshold(labels, scores)
    assert best.f1 == pytest.approx(brute_force_best(labels, scores))
    assert scores_at(labels, scores, best.threshold).f1 == pytest.approx(best.f1)
    thresholds, f1 = threshold_curve(labels, scores)
    assert len(thresholds) == len(np.unique(scores))
    assert f1 == pytest.approx([scores_at(labels, scores, t).f1 for t in thresholds])


def test_scores_at_and_floor():
    labels = np.array([1, 1, 0, 0, 1])
    scores = np.array([0.9, 0.4, 0.6, 0.1, 0.7])
    result = scores_at(labels, scores, 0.5)
    assert (result.precision, result.recall) == pytest.approx((2 / 3, 2 / 3))
    assert all_positive_f1(labels) == pytest.approx(2 * 0.6 / 1.6)
    assert all_positive_f1(np.array([1] * 69 + [0] * 31)) == pytest.approx(0.8166, abs=1e-3)  # QC's published floor
    assert scores_at(labels, np.zeros(5), 0.5).f1 == 0.0


def test_per_language_marks_unseen_and_reports_no_f1_for_a_language_with_one_label():
    rows = per_language(
        ["en", "de", "en", "de", "de", "it", "it"],
        np.array([1, 1, 0, 1, 0, 1, 1]),
        np.array([0.9, 0.2, 0.1, 0.8, 0.3, 0.9, 0.1]),
        0.5,
        seen={"en"},
    )
    by = {r["language"]: r for r in rows}
    assert by["en"]["seen"] and not by["de"]["seen"]
    assert by["en"]["f1"] == 1.0 and by["de"]["f1"] == pytest.approx(2 / 3)
    assert by["de"]["rows"] == 3 and by["de"]["floor"] == pytest.approx(0.8)
    assert by["it"]["one_label"] and np.isnan(by["it"]["f1"]) and not by["de"]["one_label"]  # floor 1: no result
