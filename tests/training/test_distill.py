"""Distillation (issue 31, item 2): each loss equals its definition and is zero where the student already says what
the teacher says; a run with distill.teachers trains on the logged teacher's scores of exactly its training rows
(rows and extras, fold by fold), reuses them from the cache, and refuses what cannot work at start."""

import math

import mlflow
import numpy as np
import pytest
import torch

from relevance import build, checks, pipeline
from relevance.data.records import Record
from relevance.errors import ConfigError
from relevance.model.losses import build_loss, pointwise
from relevance.training import distill
from tests.conftest import compose_train, tiny_demo

LABELS = torch.tensor([1, 0, 0, 1, 0])
GROUPS = torch.tensor([0, 0, 0, 1, 1])
TEACHER = torch.tensor([3.0, -1.0, 0.5, 1.0, -2.0])
LOGIT = torch.tensor([1.0, 0.0, -1.0, 0.2, 0.4])
BATCH = {"labels": LABELS, "group": GROUPS, "teacher": TEACHER}
NO_LABELS = {"pointwise_weight": 0.0}


def test_soft_labels_is_bce_against_the_teachers_probability_at_its_temperature_plus_the_labels_share():
    sigmoid = [1 / (1 + math.exp(-t / 2.0)) for t in TEACHER.tolist()]
    expected = np.mean(
        [
            -(p * math.log(1 / (1 + math.exp(-s))) + (1 - p) * math.log(1 - 1 / (1 + math.exp(-s))))
            for p, s in zip(sigmoid, LOGIT.tolist())
        ]
    )
    loss = build_loss("soft_labels", {"pointwise_weight": 0.0, "teacher_temperature": 2.0})(LOGIT, BATCH)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    mixed = build_loss("soft_labels", {"pointwise_weight": 0.5, "teacher_temperature": 2.0})(LOGIT, BATCH)
    assert mixed.item() == pytest.approx(expected + 0.5 * pointwise(LOGIT, LABELS).item(), rel=1e-6)


def test_margin_mse_compares_every_pair_of_one_querys_rows_and_ignores_a_shift():
    s, t = LOGIT.tolist(), TEACHER.tolist()
    pairs = [(0, 1), (0, 2), (1, 2), (3, 4)]  # never across queries
    expected = np.mean([((s[i] - s[j]) - (t[i] - t[j])) ** 2 for i, j in pairs])
    loss = build_loss("margin_mse", NO_LABELS)
    assert loss(LOGIT, BATCH).item() == pytest.approx(expected, rel=1e-6)
    assert loss(TEACHER - 4.0, BATCH).item() == pytest.approx(0.0, abs=1e-10)  # the teacher's margins, any offset


def test_kl_is_per_query_and_zero_when_the_student_ranks_as_the_teacher_does():
    temperature = 2.0
    loss = build_loss("kl", {"pointwise_weight": 0.0, "teacher_temperature": temperature})
    expected = []
    for rows in ([0, 1, 2], [3, 4]):
        p = torch.softmax(TEACHER[rows] / temperature, 0)
        q = torch.softmax(LOGIT[rows] / temperature, 0)
        expected.append((p * (p / q).log()).sum().item() * temperature**2)
    assert loss(LOGIT, BATCH).item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert loss(TEACHER + 1.0, BATCH).item() == pytest.approx(0.0, abs=1e-6)
    lone = {"labels": torch.tensor([1]), "group": torch.tensor([0]), "teacher": torch.tensor([1.0])}
    logit = torch.tensor([0.3], requires_grad=True)
    zero = loss(logit, lone)  # a query with one row has nothing to rank: a zero that still backpropagates
    zero.backward()
    assert zero.item() == 0.0 and logit.grad is not None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["head.loss=kl"], "head.loss=kl learns from a teacher's scores; give distill.teachers="),
        (["distill.teachers=[abc]"], "distill.teachers is given but head.loss=pointwise does not read a teacher"),
        (
            ["backbone=tiny", "head=yes_no", "distill.teachers=[abc]"],
            "distill.teachers is given but head.loss=pair does not read a teacher",
        ),
        (["head.loss=soft_labels", "distill.teachers=[abc]", "distill.ensemble=best"], "distill.ensemble='best'"),
        (
            ["head.loss=margin_mse", "distill.teachers=[abc]", "tapt=from_other_task"],
            "tapt=from_other_task trains stage 1 on the other task's rows",
        ),
        (["head.loss=kl", "distill.teachers=[abc]", "head.teacher_temperature=0"], "head.teacher_temperature=0"),
    ],
)
def test_what_distillation_cannot_work_with_is_refused_at_start(overrides, message, tmp_path, cache_dir):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        checks.check_config(compose_train(overrides, tmp_path, cache_dir))


SMALL = [*tiny_demo(60, folds=2), "train.epochs=1", "train.refit=false"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, cache_dir):
    """A logged tiny QC model in its own store: (the store's folder, its run id)."""
    root = tmp_path_factory.mktemp("teacher")
    summary = build.train(compose_train([*SMALL, "tracking.log_model=true"], root, cache_dir))
    return root, summary["run_id"]


def test_a_student_trains_on_its_logged_teachers_scores_of_its_own_training_rows(teacher, cache_dir, monkeypatch):
    from relevance.model import losses
    from relevance.serving.predict import load_scorer
    from relevance.serving.scorer import RelevanceScorer

    root, run_id = teacher
    scored, trained, batches = [], [], []
    teacher_logits, cross_validate, ranking = distill.teacher_logits, pipeline.cross_validate, losses.KL.ranking

    def scoring(settings, records, *args):
        scored.append((records, teacher_logits(settings, records, *args)))
        return scored[-1][1]

    def training(plan, trainer, data, *args, **kwargs):
        trained.append(data)
        return cross_validate(plan, trainer, data, *args, **kwargs)

    def ranked(self, logit, batch, similarity):
        batches.append((batch["index"].numpy().copy(), batch["teacher"].numpy().copy()))
        return ranking(self, logit, batch, similarity)

    monkeypatch.setattr(distill, "teacher_logits", scoring)
    monkeypatch.setattr(pipeline, "cross_validate", training)
    monkeypatch.setattr(losses.KL, "ranking", ranked)
    student = [*SMALL, "head.loss=kl", f"distill.teachers=[{run_id}]", "distill.scores=model"]
    summary = build.train(compose_train([*student, "seed=7"], root, cache_dir))  # in the teacher's store
    assert np.isfinite(summary["oof_best_f1"])

    ((records, logits),), (data,) = scored, trained
    assert records == data.originals and len(records) == len(data.records)  # every training row, as cleaned
    probability = load_scorer(run_id, cache=str(cache_dir)).predict_records(records)
    assert np.allclose(logits, np.log(probability) - np.log1p(-probability), atol=1e-5)  # the served scores
    assert np.ptp(logits) > 0
    # fold 0's batches carry the logits of fold 0's training rows, row for row
    fold_0 = logits[data.folds != 0]
    first_fold = batches[: -(-len(fold_0) // 16)]  # train.batch_size=16, one epoch
    assert sorted(i for index, _ in first_fold for i in index) == list(range(len(fold_0)))
    for index, carried in first_fold:
        assert np.allclose(carried, fold_0[index], atol=1e-6)
    run = mlflow.get_run(summary["run_id"])
    assert 0 < run.data.metrics["teacher_train_best_f1"] <= 1

    # a second student (another temperature, as a sweep tries) reuses those scores: no teacher is loaded again
    from relevance.serving import scorer

    loaded = []

    def loading(bundle, *args, **kwargs):
        loaded.append(str(bundle))
        return RelevanceScorer(bundle, *args, **kwargs)

    monkeypatch.setattr(scorer, "RelevanceScorer", loading)
    again = build.train(compose_train([*student, "seed=7", "head.teacher_temperature=2"], root, cache_dir))
    assert np.isfinite(again["oof_best_f1"])
    assert not [b for b in loaded if "relevance-teacher-" in str(b)]  # (the logged model's own check loads it)

    # out of fold (the default): each row gets the score the teacher's run logged for it when it held it out
    from relevance.serving import predict

    scored.clear()
    downloads, download_bundle = [], predict.download_bundle
    monkeypatch.setattr(predict, "download_bundle", lambda *a, **k: downloads.append(a) or download_bundle(*a, **k))
    build.train(compose_train([*student[:-1], "head.loss=soft_labels", "seed=9"], root, cache_dir))
    assert downloads == []  # its bundle file told the run; no weights were copied
    ((records, logits),) = scored
    table = mlflow.artifacts.load_dict(f"runs:/{run_id}/oof_scores.json")
    column = {name: i for i, name in enumerate(table["columns"])}
    logged = {row[column["id"]]: row[column["score"]] for row in table["data"]}
    held_out = np.array([logged[r.id] for r in records])
    assert np.allclose(logits, np.log(held_out) - np.log1p(-held_out), atol=1e-5)
    assert not np.allclose(held_out, probability, atol=1e-3)  # not what its models say of rows they trained on
    assert not [b for b in loaded if "relevance-teacher-" in str(b)]  # every row was held out once: none to score


def test_a_teacher_of_another_task_or_one_that_gives_every_row_one_score_is_refused(
    teacher, cache_dir, tmp_path, monkeypatch
):
    root, run_id = teacher
    cfg = compose_train([*SMALL, "task=qi", "head.loss=soft_labels", f"distill.teachers=[{run_id}]"], root, cache_dir)
    with pytest.raises(ConfigError, match="scores QC rows and this run trains QI rows"):
        build.train(cfg)
    with pytest.raises(ConfigError, match="distill.teachers: model=models:/nope/1: Registered Model with name=nope"):
        build.train(compose_train([*SMALL, "head.loss=kl", "distill.teachers=[models:/nope/1]"], root, cache_dir))
    monkeypatch.setattr(distill, "_scores", lambda *args: np.full(60, 0.5))  # a fake: a teacher that learned nothing
    with pytest.raises(ConfigError, match="every training row gets the same score"):
        build.train(compose_train([*SMALL, "head.loss=kl", f"distill.teachers=[{run_id}]"], root, cache_dir))


def test_out_of_fold_scores_of_rows_labelled_otherwise_here_are_refused(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("teacher")
    with mlflow.start_run() as run:
        mlflow.log_table({"id": [1, 2], "task": ["QC", "QC"], "label": [1, 0], "score": [0.9, 0.2]}, "oof_scores.json")
    rows = [Record(1, "QC", "en", "a", "t", 1), Record(2, "QC", "en", "b", "t", 1), Record(3, "QC", "en", "c", "t", 0)]
    with pytest.raises(ConfigError, match="row 2 \\(QC\\) is labelled 1 here and 0 in teacher's run"):
        distill._out_of_fold("teacher", run.info.run_id, rows)
    rows[1] = Record(2, "QC", "en", "b", "t", 0)
    assert np.allclose(distill._out_of_fold("teacher", run.info.run_id, rows), [0.9, 0.2, np.nan], equal_nan=True)
    with pytest.raises(ConfigError, match="has no out-of-fold scores logged with its run"):
        distill._out_of_fold("teacher", "0" * 32, rows)
