"""Losses over a query's candidates (issue 31, item 1): each equals its definition on hand-made logits, leaves out
what is not a negative, and a head that trains with one gets its batches grouped by query, end to end."""

import math

import numpy as np
import pytest
import torch

from relevance import checks
from relevance.data.training_data import TrainingData, query_groups
from relevance.errors import ConfigError
from relevance.model.batches import LengthGroupedBatches, QueryGroupedBatches, dataloader
from relevance.model.heads import build_head
from relevance.model.losses import build_loss, pointwise
from tests.conftest import compose_train, tiny_demo

LABELS = torch.tensor([1, 0, 0, 1, 0, 0, 0])
GROUPS = torch.tensor([0, 0, 0, 1, 1, 2, 2])  # query 2 has no positive: it ranks nothing
LOGIT = torch.tensor([2.0, 0.0, -1.0, 0.5, 0.4, 1.0, 1.0])
BATCH = {"labels": LABELS, "group": GROUPS}


def _ce(own: float, rivals: list[float]) -> float:
    return -own + math.log(math.exp(own) + sum(math.exp(r) for r in rivals))


def test_the_group_loss_is_each_positive_against_its_own_querys_negatives_only():
    loss = build_loss("group", {"pointwise_weight": 0.0})(LOGIT, BATCH)
    assert loss.item() == pytest.approx((_ce(2.0, [0.0, -1.0]) + _ce(0.5, [0.4])) / 2, rel=1e-6)


def test_listwise_is_the_cross_entropy_of_each_querys_label_distribution():
    two_positives = {"labels": torch.tensor([1, 1, 0, 1, 0]), "group": torch.tensor([0, 0, 0, 1, 1])}
    logit = torch.tensor([1.0, 0.0, -1.0, 0.3, 0.1])
    log_softmax = torch.log_softmax(logit[:3], dim=0)
    first = -(0.5 * log_softmax[0] + 0.5 * log_softmax[1]).item()
    expected = (first + _ce(0.3, [0.1])) / 2
    assert build_loss("listwise", {"pointwise_weight": 0.0})(logit, two_positives).item() == pytest.approx(expected)


def test_a_ranking_loss_adds_its_pointwise_share():
    plain = build_loss("group", {"pointwise_weight": 0.0})(LOGIT, BATCH)
    mixed = build_loss("group", {"pointwise_weight": 0.5})(LOGIT, BATCH)
    assert mixed.item() == pytest.approx(plain.item() + 0.5 * pointwise(LOGIT, LABELS).item())


def test_a_batch_with_nothing_to_rank_gives_a_zero_that_still_backpropagates():
    logit = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = build_loss("group", {"pointwise_weight": 0.0})(logit, {"labels": torch.tensor([0, 0]), "group": GROUPS[:2]})
    loss.backward()
    assert loss.item() == 0.0 and logit.grad is not None


def test_in_batch_negatives_leave_out_the_querys_other_positives_and_any_copy_of_its_target():
    labels, groups = torch.tensor([1, 1, 0, 1, 0]), torch.tensor([0, 0, 0, 1, 1])
    cosine = torch.tensor(
        [
            [0.9, 0.8, 0.1, 0.2, 0.3],
            [0.7, 0.6, 0.2, 0.1, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.5, 0.4, 0.3, 0.95, 0.6],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    same_target = torch.eye(5, dtype=torch.bool)
    same_target[0, 3] = same_target[3, 0] = True  # rows 0 and 3 name the same category (two languages' queries)
    loss = build_loss("in_batch", {"pointwise_weight": 0.0, "in_batch_scale": 10.0})(
        torch.zeros(5), {"labels": labels, "group": groups}, {"cosine": cosine, "same_target": same_target}
    )
    row0 = _ce(9.0, [1.0, 3.0])  # not row 1 (its query's other positive), not row 3 (the same category)
    row1 = _ce(6.0, [2.0, 1.0, 0.0])  # not row 0
    row3 = _ce(9.5, [4.0, 3.0, 6.0])  # not row 0
    assert loss.item() == pytest.approx((row0 + row1 + row3) / 3, rel=1e-5)


def test_query_grouped_batches_keep_each_querys_rows_together_and_step_as_often():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), rng.integers(1, 6, size=40))
    lengths = rng.integers(5, 60, size=len(groups))
    sampler = QueryGroupedBatches(lengths, groups, 16, seed=1)
    for _ in range(2):  # two epochs, two draws
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(groups)))  # every row once
        assert len(batches) == len(LengthGroupedBatches(lengths, 16, True)) == len(sampler)
        # a query is split only where the cut between two batches of the draw falls: at most one per cut
        split = [g for g in range(40) if sum(bool(set(np.flatnonzero(groups == g)) & set(b)) for b in batches) > 1]
        assert len(split) <= len(batches) - 1
        assert len(split) < 40 // 4
    ranks = [list(QueryGroupedBatches(lengths, groups, 16, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert {i for batches in ranks for b in batches for i in b} == set(range(len(groups)))
    assert len(ranks[0]) == len(ranks[1])


def test_grouped_batches_say_which_row_is_which_querys(tmp_path, cache_dir):
    from relevance.model.backbones import load_tokenizer
    from relevance.weights import resolve_source

    cfg = compose_train(["backbone=tiny"], tmp_path, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, resolve_source(cfg.backbone, cache_dir))
    texts = [f"query {i // 3} candidate {i}" for i in range(12)]
    loader = dataloader(tokenizer, texts, [1, 0, 0] * 4, 6, 32, shuffle=True, groups=[i // 3 for i in range(12)])
    for batch in loader:
        rows = batch["index"].tolist()
        assert batch["group"].tolist() == [i // 3 for i in rows]


def test_training_groups_and_teacher_logits_follow_the_training_rows_and_their_extras():
    from relevance.data.records import Record

    records = [Record(i, "QC", "en", q, f"t{i}", label) for i, (q, label) in enumerate([("a", 1), ("a", 0), ("b", 1)])]
    extras = [Record(9, "QC", "en", "a", "hard negative", 0), Record(10, "QC", "es", "b-es", "t2", 1)]
    groups = query_groups(records + extras)
    assert groups.tolist() == [0, 0, 1, 0, 2]
    data = TrainingData(
        records,
        ["a0", "a1", "b2"],
        np.array([1, 0, 1]),
        np.array([0, 0, 1]),
        ["a-hard", "b-es"],
        np.array([0, 1]),
        np.array([0, 2]),
        np.array([False, True]),
        groups=groups[:3],
        extra_groups=groups[3:],
        teacher=np.array([0.1, 0.2, 0.3, 0.4, 0.5]),  # distillation: the three rows, then the two extras
    )
    rows = data.training_rows(1)  # fold 1 holds out "b": its translation trains only in fold 0
    assert rows.inputs == ["a0", "a1", "a-hard"] and rows.groups.tolist() == [0, 0, 0]
    assert rows.teacher.tolist() == [0.1, 0.2, 0.4]
    assert data.training_rows(0).teacher.tolist() == [0.3, 0.5]
    everything = data.training_rows(None)
    assert everything.groups.tolist() == [0, 0, 1, 0, 2]
    assert everything.teacher.tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_a_loss_the_head_cannot_train_with_is_refused_at_start(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="head.loss='in_batch' is not one head=classifier trains with"):
        checks.check_config(compose_train(["head.loss=in_batch"], tmp_path, cache_dir))
    with pytest.raises(ConfigError, match="head.pointwise_weight=-1"):
        checks.check_config(compose_train(["head.loss=group", "head.pointwise_weight=-1"], tmp_path, cache_dir))


def test_the_head_asks_for_the_batches_its_loss_needs(tmp_path, cache_dir):
    for loss, batching in [("pointwise", "rows"), ("group", "queries"), ("listwise", "queries")]:
        head = build_head(compose_train([f"head.loss={loss}"], tmp_path, cache_dir).head, None)
        assert head.batching == batching


def test_a_run_with_a_group_loss_trains_its_folds_on_batches_of_whole_queries(tmp_path, cache_dir, monkeypatch):
    from relevance import build

    drawn = []
    original = QueryGroupedBatches._batches

    def recorded(self):
        batches = original(self)
        drawn.append((self.members, batches))
        return batches

    monkeypatch.setattr(QueryGroupedBatches, "_batches", recorded)
    cfg = compose_train(
        [
            *tiny_demo(60, folds=2),
            "head.loss=group",
            "train.epochs=1",
            "train.refit=false",
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    assert len(drawn) == 2 and np.isfinite(summary["oof_best_f1"])  # one draw per fold
    for members, batches in drawn:
        assert max(len(rows) for rows in members) > 1  # the demo's queries come with several candidates
        where = {i: b for b, batch in enumerate(batches) for i in batch}
        together = sum(len({where[i] for i in rows}) == 1 for rows in members)
        assert together >= len(members) - (len(batches) - 1)  # only a cut between batches splits a query


@pytest.mark.skipif(not __import__("relevance.model.packaged_e5", fromlist=["x"]).installed(), reason="make setup")
def test_the_bi_encoders_in_batch_loss_reads_every_query_against_every_target_of_the_batch(tmp_path, cache_dir):
    from relevance.model.backbones import load_tokenizer
    from relevance.model.heads import load_model
    from relevance.weights import resolve_source

    cfg = compose_train(
        ["backbone=multilingual_e5_small", "head=bi_encoder", "head.loss=in_batch"], tmp_path, cache_dir
    )
    location = resolve_source(cfg.backbone, cache_dir)
    tokenizer = load_tokenizer(cfg.backbone, location)
    model = load_model(cfg.backbone, location, tokenizer, torch.float32, cfg.head).eval()
    head = build_head(cfg.head, tokenizer)
    queries = ["casquette", "casquette", "mehl", "mehl"]
    targets = ["hats & caps", "flour", "flour", "hats & caps"]
    batch = dict(tokenizer(queries, targets, padding=True, return_tensors="pt"))
    batch.update(labels=torch.tensor([1, 0, 1, 0]), group=torch.tensor([0, 0, 1, 1]))
    with torch.no_grad():
        logit, loss = head(model, batch)
        query = model.embed(**tokenizer([f"query: {q}" for q in queries], padding=True, return_tensors="pt"))
        target = model.embed(**tokenizer([f"passage: {t}" for t in targets], padding=True, return_tensors="pt"))
    assert torch.allclose(logit, model(**batch).logits.squeeze(-1), atol=1e-5)  # the scores scoring gives
    cosine = query @ target.T
    # each positive against every target of the batch but the copy of its own category ("hats & caps" twice):
    # row 0 against its "flour" and the other query's, row 2 against both "hats & caps" (a negative's copy counts)
    ce = torch.nn.functional.cross_entropy
    expected = ce(20 * cosine[0, [0, 1, 2]][None], torch.tensor([0])) + ce(
        20 * cosine[2, [2, 0, 3]][None], torch.tensor([0])
    )
    expected = expected / 2 + pointwise(logit, batch["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
