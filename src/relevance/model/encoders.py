"""Encoder models for the one-logit heads: mean pooling over real tokens (how multilingual-E5 was pre-trained) read
either jointly (a cross-encoder over the (query, target) pair) or apart (a bi-encoder scored by cosine)."""

from __future__ import annotations

import torch
from transformers.modeling_outputs import SequenceClassifierOutput


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's hidden states over its real tokens (padding excluded)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPooledClassifier(torch.nn.Module):
    """An encoder read by mean pooling over its real tokens (how multilingual-E5 was pre-trained) and one linear
    logit: no pooler, so no randomly initialised layer sits between the pre-trained encoder and the head."""

    def __init__(self, encoder, head_module: str):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head_module = head_module
        setattr(self, head_module, torch.nn.Linear(encoder.config.hidden_size, 1, dtype=encoder.dtype))

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids, attention_mask, **_):
        pooled = mean_pool(
            self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask
        )
        return SequenceClassifierOutput(logits=getattr(self, self.head_module)(pooled))


class CosineScore(torch.nn.Module):
    """logit = scale * cosine + bias, both learned. E5-style encoders put most cosines between about 0.7 and 1.0,
    so the start (scale 20, bias -16) centres the first logits near 0 instead of far on the positive side.
    A catalogue margin (a cosine minus the best other category's) is scored as scale * margin: 0.5 is a tie."""

    LEARNING_RATE = 1e-2  # train.head_lr=auto for these two numbers: a step moves a logit by about 0.01-0.02

    def __init__(self, scale: float = 20.0, centre: float = 0.8):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.tensor(-float(scale) * centre))

    def forward(self, cosine: torch.Tensor) -> torch.Tensor:
        return (self.scale * cosine + self.bias).unsqueeze(-1)

    def margin(self, margin: torch.Tensor) -> torch.Tensor:
        return (self.scale * margin).unsqueeze(-1)


def split_pairs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sep_id: int,
    cls_id: int,
    query_prefix: list[int],
    target_prefix: list[int],
) -> tuple[list[list[int]], list[list[int]]]:
    """The query and the target of each tokenised pair (`<s> q </s></s> t </s>`, right-padded) as two separate
    rows each (`<s> prefix q </s>`): the batch's queries, and its targets."""
    sides = [
        split_pair(row[mask.bool()].tolist(), sep_id, cls_id, query_prefix, target_prefix)
        for row, mask in zip(input_ids, attention_mask)
    ]
    return [query for query, _ in sides], [target for _, target in sides]


def split_pair(
    ids: list[int], sep_id: int, cls_id: int, query_prefix: list[int], target_prefix: list[int]
) -> tuple[list[int], list[int]]:
    """One unpadded pair's query row and target row (see split_pairs)."""
    first = ids.index(sep_id, 1)  # end of the query
    start = first + 1
    while start < len(ids) and ids[start] == sep_id:  # the separator may be one token or two
        start += 1
    return [cls_id] + query_prefix + ids[1:first] + [sep_id], [cls_id] + target_prefix + ids[start : len(ids) - 1] + [
        sep_id
    ]


def _padded(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as one right-padded batch and its attention mask."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, device=device)
        mask[i, : len(row)] = 1
    return ids, mask


def _prefix_ids(tokenizer, text: str) -> list[int]:
    """A prefix's tokens. The words that follow carry their own leading-space marker, so the prefix's trailing space
    is dropped (kept, it would be one token too many)."""
    return tokenizer(text.rstrip(), add_special_tokens=False)["input_ids"] if text else []


class MeanPooledBiEncoder(torch.nn.Module):
    """The query and the target encoded apart (mean-pooled, as multilingual-E5 was pre-trained with its
    "query: " / "passage: " prefixes) and scored by their cosine: training moves the two texts in the encoder's
    shared multilingual space, so a query in a language never seen in training still lands near its category.
    It reads the same tokenised pairs as the cross-encoder and splits them itself, so data, caching and serving
    are shared by both.

    With a catalogue indexed (`index_catalogue`: every category the run knows), a pair is scored by its margin
    over the catalogue instead: cosine(query, target) minus the query's best cosine with any other category. How
    close a query's right category comes in raw cosine varies from query to query (more in languages unseen in
    training); whether the target beats every other category does not, so one threshold fits more queries. Training
    never sees the catalogue: it trains on the cosine, and scoring alone reads the margin."""

    SAME_TEXT = 1e-3  # catalogue entries within this of cosine 1 with the target are the target itself

    def __init__(self, encoder, head_module: str, tokenizer, query_prefix: str, target_prefix: str):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head_module = head_module
        setattr(self, head_module, CosineScore())
        self.sep_id, self.cls_id, self.pad_id = tokenizer.sep_token_id, tokenizer.cls_token_id, tokenizer.pad_token_id
        self.query_prefix = _prefix_ids(tokenizer, query_prefix)
        self.target_prefix = _prefix_ids(tokenizer, target_prefix)
        self.catalogue: torch.Tensor | None = None  # unit vectors of the indexed categories (not a weight)
        self._catalogue_rows: dict[tuple, int] = {}  # a category's token row -> its row in `catalogue`

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)

    def forward(self, input_ids, attention_mask, **_):
        """Queries and targets are encoded in two passes, each padded to its own longest row: padded together,
        every short query was computed at its batch's longest category path's length (+65% token positions on
        the taxonomy). Targets the scoring catalogue holds are read from it instead of encoded again."""
        query, target, _ = self.pair_vectors(input_ids, attention_mask)
        return SequenceClassifierOutput(logits=self.pair_logits(query, target))

    def pair_vectors(self, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """Each pair's query and target unit vectors, and the target's token row (what identifies its text)."""
        queries, targets = split_pairs(
            input_ids, attention_mask, self.sep_id, self.cls_id, self.query_prefix, self.target_prefix
        )
        query = self.embed(*_padded(queries, self.pad_id, input_ids.device))
        target = self._indexed(targets)
        if target is None:
            target = self.embed(*_padded(targets, self.pad_id, input_ids.device))
        return query, target, targets

    def pair_logits(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each (query, target) vector pair's logit: its cosine, or its margin over the indexed catalogue."""
        score = getattr(self, self.head_module)
        cosine = (query * target).sum(dim=-1)
        if self.catalogue is None:
            return score(cosine)
        catalogue = self.catalogue.to(query.device)
        others = query @ catalogue.T
        others = others.masked_fill(target @ catalogue.T > 1 - self.SAME_TEXT, float("-inf"))  # the target itself
        best_other = others.max(dim=-1).values.clamp(min=-1.0)  # a catalogue of the target alone: margin from -1
        return score.margin(cosine - best_other)

    @torch.inference_mode()
    def score_pairs(self, pairs: list, batch_size: int, progress=None) -> torch.Tensor:
        """Logits of many tokenised pairs (unpadded id rows, as `forward` reads them), as a served request is
        scored: each distinct query and each distinct target is encoded once (a query comes with several
        candidates, a category with many queries: 2,000 taxonomy pairs hold 1,161 queries and 1,650 paths), in
        batches of rows of like length, each side apart; targets the catalogue holds are read from it. The
        logits equal `forward`'s on the same pairs (padding is masked out of every step)."""
        sides = [
            split_pair(
                ids.tolist() if hasattr(ids, "tolist") else list(ids),
                self.sep_id,
                self.cls_id,
                self.query_prefix,
                self.target_prefix,
            )
            for ids in pairs
        ]
        query = self._embed_distinct([q for q, _ in sides], batch_size, progress, use_catalogue=False)
        target = self._embed_distinct([t for _, t in sides], batch_size, progress, use_catalogue=True)
        return torch.cat(
            [
                self.pair_logits(query[start : start + batch_size], target[start : start + batch_size])
                for start in range(0, len(sides), batch_size)
            ]
        ).squeeze(-1)

    def _embed_distinct(self, rows: list[list[int]], batch_size: int, progress, use_catalogue: bool) -> torch.Tensor:
        """One unit vector per row, each distinct row encoded once, longest rows first so each batch pads little."""
        distinct = {key: i for i, key in enumerate(dict.fromkeys(tuple(row) for row in rows))}
        vectors: list[torch.Tensor | None] = [None] * len(distinct)
        if use_catalogue and self.catalogue is not None:
            for key, i in distinct.items():
                held = self._catalogue_rows.get(key)
                if held is not None:
                    vectors[i] = self.catalogue[held]
        keys = list(distinct)  # in index order
        todo = sorted((i for i, v in enumerate(vectors) if v is None), key=lambda i: -len(keys[i]))
        device = next(self.encoder.parameters()).device
        for start in range(0, len(todo), batch_size):
            chosen = todo[start : start + batch_size]
            embedded = self.embed(*_padded([list(keys[i]) for i in chosen], self.pad_id, device))
            for i, vector in zip(chosen, embedded):
                vectors[i] = vector
            if progress is not None:
                progress.update(len(chosen))
        return torch.stack(vectors)[[distinct[tuple(row)] for row in rows]]

    @torch.no_grad()
    def index_catalogue(self, tokenizer, texts: list[str], max_length: int, batch_size: int) -> None:
        """Embed the categories that scoring compares each target with (texts as the model reads targets); an
        empty list scores by plain cosine again."""
        if not texts:
            self.catalogue = None
            return
        device = next(self.encoder.parameters()).device
        budget = max(max_length - 2 - len(self.target_prefix), 1)
        training, vectors, all_rows = self.training, [], []
        self.eval()  # no dropout: the same vectors as scoring computes
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(texts[start : start + batch_size], add_special_tokens=False)["input_ids"]
            rows = [[self.cls_id] + self.target_prefix + ids[:budget] + [self.sep_id] for ids in tokens]
            all_rows += rows
            vectors.append(self.embed(*_padded(rows, self.pad_id, device)))
        self.train(training)
        self.catalogue = torch.cat(vectors)
        self._catalogue_rows = {tuple(row): i for i, row in enumerate(all_rows)}

    def _indexed(self, targets: list[list[int]]) -> torch.Tensor | None:
        """The catalogue's vectors of these targets when it holds every one (scoring only: in training the
        weights move and there is no catalogue); None otherwise."""
        if self.catalogue is None or self.training or torch.is_grad_enabled():
            return None
        rows = [self._catalogue_rows.get(tuple(target)) for target in targets]
        return None if None in rows else self.catalogue[rows]
