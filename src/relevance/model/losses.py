"""Training losses over one batch's logits: pointwise BCE, or losses over each query's candidates together. A loss
names the batch shape it needs (`batching`): "rows" (any rows, length-grouped) or "queries" (a query's rows kept in
one batch, batches.QueryGroupedBatches); the fold asks its head's loss and batches accordingly, so a new loss is one
class here and a name in a head's YAML.

group: each positive against its own query's negatives, a softmax cross-entropy (FlagEmbedding's group loss over
one positive and `train_group_size - 1` negatives, and the listwise CE of Qwen3-Reranker recipes).
listwise: ListNet, the cross-entropy between each query's label distribution and the softmax of its logits.
in_batch: bi-encoders only; each positive query against every target in the batch, its own negatives included
(sentence-transformers' MultipleNegativesRankingLoss with hard negatives), at a fixed scale (1/temperature).

Distillation (the batch carries each row's teacher logit, `teacher`; training/distill.py scores it):
soft_labels: BCE against the teacher's probability, row by row (any data shape, QI's one candidate per query too).
margin_mse: every pair of one query's rows, the student's logit margin against the teacher's (sentence-transformers'
MarginMSELoss, generalised from (positive, negative) to every pair).
kl: per query, the KL divergence from the softmax of the teacher's logits to the student's, both at
`teacher_temperature` (FlagEmbedding's knowledge distillation over a query's candidates).

Thresholds are still tuned on pointwise scores (the sigmoid of each row's logit), so the ranking losses add
`pointwise_weight` x BCE: it keeps one logit scale across queries, which a per-query softmax leaves free."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES: dict[str, type[Loss]] = {}


def register(cls):
    LOSSES[cls.name] = cls
    return cls


def _setting(head_cfg, key: str, default: float) -> float:
    value = head_cfg.get(key) if head_cfg is not None else None
    return float(default if value is None else value)


class Loss:
    name = ""
    batching = "rows"
    needs_similarity = False  # reads every query against every target of the batch (bi-encoders give it)
    needs_teacher = False  # reads each row's teacher logit (batch["teacher"]): distill.teachers must be set

    def __init__(self, head_cfg=None):
        self.pointwise_weight = _setting(head_cfg, "pointwise_weight", 1.0)
        self.temperature = _setting(head_cfg, "teacher_temperature", 1.0)

    def __call__(self, logit: torch.Tensor, batch: dict, similarity: dict | None = None) -> torch.Tensor:
        raise NotImplementedError


def pointwise(logit: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit, labels.float())


@register
class Pointwise(Loss):
    """BCE on each row's logit alone: the loss of every head before the ranking losses."""

    name = "pointwise"

    def __call__(self, logit, batch, similarity=None):
        return pointwise(logit, batch["labels"])


class Ranking(Loss):
    """A loss over each query's rows, plus `pointwise_weight` x BCE."""

    batching = "queries"

    def __call__(self, logit, batch, similarity=None):
        ranking = self.ranking(logit, batch, similarity)
        if self.pointwise_weight:
            return ranking + self.pointwise_weight * pointwise(logit, batch["labels"])
        return ranking

    def ranking(self, logit, batch: dict, similarity) -> torch.Tensor:
        raise NotImplementedError


def _softmax_ce(scores: torch.Tensor, allowed: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log softmax(scores[i, allowed[i]])[positive[i]]; rows with no rival give nothing."""
    useful = allowed.sum(dim=1) > 1
    if not useful.any():
        return scores.sum() * 0.0  # a graph-connected zero: every rank still runs its backward
    masked = scores.masked_fill(~allowed, float("-inf"))[useful]
    return F.cross_entropy(masked, positive[useful])


@register
class Group(Ranking):
    """Each positive row against its query's negatives: softmax cross-entropy over {itself} + those negatives."""

    name = "group"

    def ranking(self, logit, batch, similarity):
        labels, groups = batch["labels"].float(), batch["group"]
        positives = torch.nonzero(labels > 0.5).flatten()
        same_query = groups[positives, None] == groups[None, :]
        allowed = same_query & (labels[None, :] < 0.5)
        allowed[torch.arange(len(positives), device=labels.device), positives] = True
        scores = logit[None, :].expand(len(positives), -1)
        return _softmax_ce(scores, allowed, positives)


@register
class Listwise(Ranking):
    """ListNet: per query, the cross-entropy between its labels as a distribution and the softmax of its logits
    (queries whose rows share one label say nothing about order and are skipped)."""

    name = "listwise"

    def ranking(self, logit, batch, similarity):
        labels, groups = batch["labels"].float(), batch["group"]
        losses = []
        for group in torch.unique(groups):
            rows = groups == group
            target = labels[rows]
            if 0 < target.sum() < len(target):
                losses.append(-(target / target.sum() * F.log_softmax(logit[rows], dim=0)).sum())
        return torch.stack(losses).mean() if losses else logit.sum() * 0.0


@register
class InBatch(Ranking):
    """Each positive row's query against every target in the batch: its own is the answer; its query's other
    positives and any target of the same text are left out (they are not negatives). The batch's other targets
    are the negatives: its query's own negatives (hard ones: siblings in the taxonomy) and other queries' targets."""

    name = "in_batch"
    needs_similarity = True

    def __init__(self, head_cfg=None):
        super().__init__(head_cfg)
        self.scale = _setting(head_cfg, "in_batch_scale", 20.0)

    def ranking(self, logit, batch, similarity):
        labels, groups = batch["labels"].float(), batch["group"]
        positives = torch.nonzero(labels > 0.5).flatten()
        rows = torch.arange(len(positives), device=labels.device)
        other_positive = (groups[positives, None] == groups[None, :]) & (labels[None, :] > 0.5)
        allowed = ~(similarity["same_target"][positives] | other_positive)
        allowed[rows, positives] = True
        return _softmax_ce(self.scale * similarity["cosine"][positives], allowed, positives)


@register
class SoftLabels(Loss):
    """BCE against the teacher's probability at `teacher_temperature`, each row alone, plus `pointwise_weight` x
    BCE against the labels: the teacher's confidence where labels only say yes or no."""

    name = "soft_labels"
    needs_teacher = True

    def __call__(self, logit, batch, similarity=None):
        target = torch.sigmoid(batch["teacher"].float() / self.temperature)
        loss = F.binary_cross_entropy_with_logits(logit, target)
        return loss + self.pointwise_weight * pointwise(logit, batch["labels"]) if self.pointwise_weight else loss


@register
class MarginMSE(Ranking):
    """Every pair (i, j) of one query's rows: ((s_i - s_j) - (t_i - t_j))^2, averaged over the batch's pairs: the
    student learns the teacher's margins between candidates, whatever the teacher's own scale offset."""

    name = "margin_mse"
    needs_teacher = True

    def ranking(self, logit, batch, similarity):
        groups, teacher = batch["group"], batch["teacher"].float()
        pairs = (groups[:, None] == groups[None, :]).triu(diagonal=1)
        if not pairs.any():
            return logit.sum() * 0.0
        student_margin = logit[:, None] - logit[None, :]
        teacher_margin = teacher[:, None] - teacher[None, :]
        return ((student_margin - teacher_margin)[pairs] ** 2).mean()


@register
class KL(Ranking):
    """Per query with two rows or more: KL(softmax(t / T) || softmax(s / T)) over its rows, times T^2 (Hinton et
    al.'s scaling, so that the gradient's size does not shrink with T), averaged over the batch's queries."""

    name = "kl"
    needs_teacher = True

    def ranking(self, logit, batch, similarity):
        groups, teacher, scale = batch["group"], batch["teacher"].float(), self.temperature
        losses = []
        for group in torch.unique(groups):
            rows = groups == group
            if rows.sum() > 1:
                target = F.log_softmax(teacher[rows] / scale, dim=0)
                student = F.log_softmax(logit[rows] / scale, dim=0)
                losses.append((target.exp() * (target - student)).sum() * scale**2)
        return torch.stack(losses).mean() if losses else logit.sum() * 0.0


def build_loss(name: str, head_cfg=None) -> Loss:
    """The loss registered as `name` (the head has checked that it trains with it), with the head's settings."""
    return LOSSES[name](head_cfg)
