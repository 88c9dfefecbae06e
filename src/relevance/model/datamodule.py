"""The LightningDataModule of one fold: its training rows and the rows it scores, batched by relevance.model.batches."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from relevance.model.batches import dataloader


class PairDataModule(L.LightningDataModule):
    """Training rows for one fold and the rows it scores (its held-out fold, or any file to predict)."""

    def __init__(
        self,
        tokenizer,
        train_inputs,
        train_labels,
        predict_inputs,
        batch_size: int,
        eval_batch_size: int,
        max_length: int,
        seed: int,
        num_workers: int = 0,
        train_groups=None,
        train_teacher=None,
    ):
        """`train_groups`: each training row's query, for a loss that needs a query's rows in one batch;
        `train_teacher`: each training row's teacher logit, for a distillation loss."""
        super().__init__()
        self.tokenizer = tokenizer
        self.train_inputs, self.train_labels, self.train_groups = train_inputs, train_labels, train_groups
        self.train_teacher = train_teacher
        self.predict_inputs = predict_inputs
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_length, self.seed, self.num_workers = max_length, seed, num_workers

    def _ranks(self) -> dict:
        """This process's share of the batches when the trainer runs several ranks."""
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def train_dataloader(self) -> DataLoader:
        return dataloader(
            self.tokenizer,
            self.train_inputs,
            self.train_labels,
            self.batch_size,
            self.max_length,
            shuffle=True,
            seed=self.seed,
            num_workers=self.num_workers,
            groups=self.train_groups,
            teacher=self.train_teacher,
            **self._ranks(),
        )

    def predict_dataloader(self) -> DataLoader:
        return dataloader(
            self.tokenizer,
            self.predict_inputs,
            None,
            self.eval_batch_size,
            self.max_length,
            shuffle=False,
            num_workers=self.num_workers,
            **self._ranks(),
        )
