"""Tokenised pairs in dynamically padded, length-grouped batches: little padding, so fewer wasted FLOPs; each text
tokenised once per process (folds, trials and scoring calls reuse it). Free of Lightning, so serving stays light."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of similar length: shuffle, cut into mega-batches, sort each by length, then shuffle the
    batch order. With `shuffle=False` (inference) every batch is a contiguous run of the length-sorted rows.

    Under several ranks each takes every `world_size`-th batch (the same seed on every rank, so together they
    cover every batch once), and every rank gets the same number of batches: training repeats its first batches
    (DDP's gradient all-reduce needs equal steps), scoring repeats its last, shortest ones (under ZeRO-3 every
    forward gathers the weights from all ranks, so a rank with one batch fewer leaves the others waiting forever);
    a repeated row's second score is dropped when the ranks' scores are put together (module.gather_scores).

    A training run interrupted mid-epoch resumes where it stopped (`resume_at`)."""

    def __init__(
        self,
        lengths,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        megabatch_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.megabatch = batch_size * megabatch_batches
        self.epoch = 0
        self.rank, self.world_size = rank, world_size
        self.skip = 0  # batches of the next epoch drawn that were trained on before an interruption

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _n_batches(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __len__(self) -> int:
        return -(-self._n_batches() // self.world_size)

    def __iter__(self):
        batches = self._batches()
        if self.world_size > 1 and batches:
            extra = len(self) * self.world_size - len(batches)
            if self.shuffle:  # repeat the first batches
                batches = batches + [batches[i % len(batches)] for i in range(extra)]
            else:  # repeat the last (shortest) ones
                batches = batches + [batches[-1 - i % len(batches)] for i in range(extra)]
            batches = batches[self.rank :: self.world_size]
        skip, self.skip = self.skip, 0
        yield from batches[skip:]

    def resume_at(self, epoch: int, batches_trained: int) -> None:
        """The next epoch drawn is `epoch`, without its first `batches_trained` batches."""
        finished = batches_trained >= len(self)
        self.epoch = epoch + 1 if finished else epoch
        self.skip = 0 if finished else batches_trained

    def _batches(self) -> list[list[int]]:
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.megabatch):
            chunk = order[start : start + self.megabatch]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        return [batches[b] for b in rng.permutation(len(batches))]


class QueryGroupedBatches(LengthGroupedBatches):
    """Training batches for losses over a query's candidates: each query's rows one after another, so they share a
    batch. Queries are shuffled, taken in mega-batches sorted by their longest row (little padding), and the rows
    then cut every `batch_size` (as many batches as LengthGroupedBatches, so the step count does not depend on the
    draw); a cut may split one query between two batches. Ranks, epochs and resuming work as in the parent."""

    def __init__(self, lengths, groups, batch_size: int, seed: int = 0, **kwargs):
        super().__init__(lengths, batch_size, shuffle=True, seed=seed, **kwargs)
        _, ids = np.unique(np.asarray(groups), return_inverse=True)
        self.members = np.split(np.argsort(ids, kind="stable"), np.cumsum(np.bincount(ids))[:-1]) if len(ids) else []

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.members))
        longest = np.array([self.lengths[rows].max() for rows in self.members])
        per_megabatch = max(1, round(len(order) * self.megabatch / max(len(self.lengths), 1)))
        rows = []
        for start in range(0, len(order), per_megabatch):
            chunk = order[start : start + per_megabatch]
            for group in chunk[np.argsort(-longest[chunk], kind="stable")]:
                rows += self.members[group].tolist()
        batches = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        return [batches[b] for b in rng.permutation(len(batches))]


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, input_ids: list[np.ndarray], labels, groups=None, teacher=None):
        self.input_ids = input_ids
        self.labels = labels
        self.groups = groups
        self.teacher = teacher

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "index": i}
        if self.labels is not None:
            item["labels"] = float(self.labels[i])
        if self.groups is not None:
            item["group"] = int(self.groups[i])
        if self.teacher is not None:
            item["teacher"] = float(self.teacher[i])
        return item


class TokenCache:
    """text (or encoder pair) -> token ids, per tokenizer and length limit. K-fold training tokenises every row
    K times over and a sweep repeats that per trial; with the cache each distinct text is tokenised once. Ids are
    int32 arrays (a Python list of ints costs about 9x the memory); the last `keep` settings are kept."""

    def __init__(self, keep: int = 2):
        self.tables: OrderedDict[tuple, dict] = OrderedDict()
        self.keep = keep
        self.hits = self.misses = 0

    @staticmethod
    def setting(tokenizer, max_length: int) -> tuple:
        return (
            tokenizer.name_or_path,
            len(tokenizer),
            tokenizer.truncation_side,
            max_length,
            tokenizer.__class__.__name__,
        )

    def encode(self, tokenizer, inputs: list, max_length: int) -> list[np.ndarray]:
        key = self.setting(tokenizer, max_length)
        table = self.tables.setdefault(key, {})
        self.tables.move_to_end(key)
        while len(self.tables) > self.keep:
            self.tables.popitem(last=False)
        missing = list(dict.fromkeys(text for text in inputs if text not in table))
        self.hits += len(inputs) - len(missing)
        self.misses += len(missing)
        if missing:
            if isinstance(missing[0], tuple):
                first, second = zip(*missing)
                encoded = tokenizer(list(first), list(second), truncation=True, max_length=max_length)
            else:
                encoded = tokenizer(missing, truncation=True, max_length=max_length)
            table.update(zip(missing, (np.asarray(ids, dtype=np.int32) for ids in encoded["input_ids"])))
        return [table[text] for text in inputs]

    def clear(self) -> None:
        self.tables.clear()


TOKENS = TokenCache()


def encode(tokenizer, inputs: list, max_length: int) -> list[np.ndarray]:
    """Token ids of prompts (str) or encoder pairs (tuple), truncated, unpadded (padding happens per batch)."""
    return TOKENS.encode(tokenizer, inputs, max_length)


def make_collate(tokenizer):
    """Pad a batch to its longest row on the tokenizer's padding side, with the matching attention mask."""
    pad_id, left = tokenizer.pad_token_id, tokenizer.padding_side == "left"

    def collate(items: list[dict]) -> dict:
        width = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            ids = torch.from_numpy(item["input_ids"]).long()
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            input_ids[row, span] = ids
            attention_mask[row, span] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "index": torch.tensor([item["index"] for item in items]),
        }
        if "labels" in items[0]:
            batch["labels"] = torch.tensor([item["labels"] for item in items])
        if "group" in items[0]:
            batch["group"] = torch.tensor([item["group"] for item in items])
        if "teacher" in items[0]:
            batch["teacher"] = torch.tensor([item["teacher"] for item in items])
        return batch

    return collate


class ResumableLoader(DataLoader):
    """A DataLoader whose position Lightning saves in its checkpoints and restores (its `_Stateful` protocol):
    which epoch is being drawn and how many of its batches were trained on. Counted here, after any worker
    prefetching, rather than in the sampler; Lightning fetches no batch ahead from a loader with a length, so
    every batch yielded when a checkpoint is taken has been trained on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._drawing, self._yielded = 0, 0

    def __iter__(self):
        sampler = self.batch_sampler
        self._drawing, self._yielded = sampler.epoch, sampler.skip
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._drawing, "batches_trained": self._yielded}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.resume_at(state["epoch"], state["batches_trained"])


def dataloader(
    tokenizer,
    inputs: list,
    labels,
    batch_size: int,
    max_length: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    groups=None,
    teacher=None,
) -> DataLoader:
    """Batches of the rows; with `groups` (each row's query, for a loss over a query's candidates) each query's
    rows share a batch and every batch says which row belongs to which query; with `teacher` (each row's teacher
    logit, for distillation) every batch carries its rows' ones."""
    dataset = _Encoded(encode(tokenizer, inputs, max_length), labels, groups, teacher)
    lengths = [len(ids) for ids in dataset.input_ids]
    if groups is not None:
        sampler = QueryGroupedBatches(lengths, groups, batch_size, seed, rank=rank, world_size=world_size)
    else:
        sampler = LengthGroupedBatches(lengths, batch_size, shuffle, seed, rank=rank, world_size=world_size)
    return ResumableLoader(dataset, batch_sampler=sampler, collate_fn=make_collate(tokenizer), num_workers=num_workers)
