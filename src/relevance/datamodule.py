"""Tokenised pairs in dynamically padded, length-grouped batches: little padding, so fewer wasted FLOPs."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of similar length: shuffle, cut into mega-batches, sort each by length, then shuffle the
    batch order. With `shuffle=False` (inference) every batch is a contiguous run of the length-sorted rows.

    Under several ranks each takes every `world_size`-th batch (the same seed on every rank, so together they
    cover every batch once); in training the last batches are repeated so that every rank steps equally often,
    which DDP's gradient all-reduce needs."""

    def __init__(self, lengths, batch_size: int, shuffle: bool, seed: int = 0, megabatch_batches: int = 50,
                 rank: int = 0, world_size: int = 1):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.megabatch = batch_size * megabatch_batches
        self.epoch = 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _n_batches(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __len__(self) -> int:
        if self.world_size == 1:
            return self._n_batches()
        if self.shuffle:
            return -(-self._n_batches() // self.world_size)
        return len(range(self.rank, self._n_batches(), self.world_size))

    def __iter__(self):
        batches = self._batches()
        if self.world_size > 1:
            if self.shuffle:
                per_rank = len(self)
                batches = [batches[i % len(batches)] for i in range(per_rank * self.world_size)]  # repeat the first
            batches = batches[self.rank::self.world_size]
        yield from batches

    def _batches(self) -> list[list[int]]:
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.megabatch):
            chunk = order[start:start + self.megabatch]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        return [batches[b] for b in rng.permutation(len(batches))]


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, encodings: dict, labels):
        self.input_ids = encodings["input_ids"]
        self.attention_mask = encodings["attention_mask"]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i], "index": i}
        if self.labels is not None:
            item["labels"] = float(self.labels[i])
        return item


def encode(tokenizer, inputs: list, max_length: int) -> dict:
    """Tokenise prompts (str) or encoder pairs (tuple) without padding; padding happens per batch."""
    if inputs and isinstance(inputs[0], tuple):
        first, second = zip(*inputs)
        return tokenizer(list(first), list(second), truncation=True, max_length=max_length)
    return tokenizer(list(inputs), truncation=True, max_length=max_length)


def make_collate(tokenizer):
    def collate(items: list[dict]) -> dict:
        batch = tokenizer.pad({"input_ids": [i["input_ids"] for i in items],
                               "attention_mask": [i["attention_mask"] for i in items]}, return_tensors="pt")
        batch["index"] = torch.tensor([i["index"] for i in items])
        if "labels" in items[0]:
            batch["labels"] = torch.tensor([i["labels"] for i in items])
        return dict(batch)
    return collate


def dataloader(tokenizer, inputs: list, labels, batch_size: int, max_length: int, shuffle: bool, seed: int = 0,
               num_workers: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
    dataset = _Encoded(encode(tokenizer, inputs, max_length), labels)
    lengths = [len(ids) for ids in dataset.input_ids]
    sampler = LengthGroupedBatches(lengths, batch_size, shuffle, seed, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=make_collate(tokenizer), num_workers=num_workers)


class PairDataModule(L.LightningDataModule):
    """Training rows for one fold and the rows it scores (its held-out fold, or any file to predict)."""

    def __init__(self, tokenizer, train_inputs, train_labels, predict_inputs, batch_size: int,
                 eval_batch_size: int, max_length: int, seed: int, num_workers: int = 0):
        super().__init__()
        self.tokenizer = tokenizer
        self.train_inputs, self.train_labels = train_inputs, train_labels
        self.predict_inputs = predict_inputs
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_length, self.seed, self.num_workers = max_length, seed, num_workers

    def _ranks(self) -> dict:
        """This process's share of the batches when the trainer runs several ranks."""
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def train_dataloader(self) -> DataLoader:
        return dataloader(self.tokenizer, self.train_inputs, self.train_labels, self.batch_size, self.max_length,
                          shuffle=True, seed=self.seed, num_workers=self.num_workers, **self._ranks())

    def predict_dataloader(self) -> DataLoader:
        return dataloader(self.tokenizer, self.predict_inputs, None, self.eval_batch_size, self.max_length,
                          shuffle=False, num_workers=self.num_workers, **self._ranks())
