"""Training losses over one batch's logits: pointwise BCE, or losses over each query's candidates together. A loss
names the batch shape it needs (`batching`): "rows" (any rows, length-grouped) or "queries" (a query's rows kept in
one batch, batches.QueryGroupedBatches); the fold asks its head's loss and batches accordingly, so a new loss is one
class here and a name in a head's YAML.

group: each positive against its own query's negatives, a softmax cross-entropy (FlagEmbedding's group loss over
one positive and `train_group_size - 1` negatives, and the listwise CE of Qwen3-Reranker recipes).
listwise: ListNet, the cross-entropy between each query's label distribution and the softmax of its logits.
in_batch: bi-encoders only; each positive query against every target in the batch, its own negatives included
(sentence-transformers' MultipleNegativesRankingLoss with hard negatives), at a fixed scale (1/temperature).

Thresholds are still tuned on pointwise scores (the sigmoid of each row's logit), so the ranking losses add
`pointwise_weight` x BCE: it keeps one logit scale across queries, which a per-query softmax leaves free."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES: dict[str, type[Loss]] = {}


def register(cls):
    LOSSES[cls.name] = cls
    return cls


class Loss:
    name = ""
    batching = "rows"
    needs_similarity = False  # reads every query against every target of the batch (bi-encoders give it)

    def __init__(self, head_cfg=None):
        get = head_cfg.get if head_cfg is not None else (lambda key, default=None: default)
        self.pointwise_weight = float(get("pointwise_weight", 1.0))

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
        ranking = self.ranking(logit, batch["labels"].float(), batch["group"], similarity)
        if self.pointwise_weight:
            return ranking + self.pointwise_weight * pointwise(logit, batch["labels"])
        return ranking

    def ranking(self, logit, labels, groups, similarity) -> torch.Tensor:
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

    def ranking(self, logit, labels, groups, similarity):
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

    def ranking(self, logit, labels, groups, similarity):
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
        get = head_cfg.get if head_cfg is not None else (lambda key, default=None: default)
        self.scale = float(get("in_batch_scale", 20.0))

    def ranking(self, logit, labels, groups, similarity):
        positives = torch.nonzero(labels > 0.5).flatten()
        rows = torch.arange(len(positives), device=labels.device)
        other_positive = (groups[positives, None] == groups[None, :]) & (labels[None, :] > 0.5)
        allowed = ~(similarity["same_target"][positives] | other_positive)
        allowed[rows, positives] = True
        return _softmax_ce(self.scale * similarity["cosine"][positives], allowed, positives)


def build_loss(name: str, head_cfg=None) -> Loss:
    """The loss registered as `name` (the head has checked that it trains with it), with the head's settings."""
    return LOSSES[name](head_cfg)
