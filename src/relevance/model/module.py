"""The LightningModule: a LoRA-adapted backbone whose head (heads.py) gives one relevance logit and a loss."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import get_scheduler

from relevance.errors import TrainingDiverged
from relevance.model.losses import pointwise


def apply_lora(model, target_modules, head_module: str, r: int, alpha: int, dropout: float, head=None):
    """Freeze the base and add LoRA with the head's task type (`head`: a heads.Head class or instance; None is the
    classifier). A fresh head is trained in full (`modules_to_save`); the yes/no head reuses the pretrained LM
    head, frozen ("all-linear" never targets it)."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    task_type = head.lora_task_type if head is not None else TaskType.SEQ_CLS
    fresh = head.fresh if head is not None else True
    config = LoraConfig(
        task_type=task_type,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=[head_module] if fresh else None,
    )
    return get_peft_model(model, config)


def is_head_parameter(name: str, head_module: str | None) -> bool:
    return head_module is not None and head_module in name.split(".")


class RelevanceModule(L.LightningModule):
    def __init__(
        self,
        model,
        head,
        lr: float,
        weight_decay: float,
        warmup_ratio: float,
        scheduler: str,
        head_lr: float | None = None,
        head_module: str | None = None,
    ):
        super().__init__()
        self.model = model
        self.head = head
        self.lr, self.weight_decay = lr, weight_decay
        self.head_lr, self.head_module = head_lr, head_module
        self.warmup_ratio, self.scheduler_name = warmup_ratio, scheduler
        # every step's BCE of its logits (the training loss itself when pointwise): the learned-or-not check
        # compares it with a constant guess's BCE, which a ranking loss's value could not be compared with
        self.losses: list[float] = []
        # Checkpoints hold only the trainable (adapter + head) tensors, so loading them is never strict.
        self.strict_loading = False
        self._data_position: dict | None = None  # where a resumed fold's epoch continues (on_load_checkpoint)

    def forward(self, batch: dict) -> torch.Tensor:
        """The relevance logit of each row (its sigmoid is the score)."""
        return self.head(self.model, {k: v for k, v in batch.items() if k != "labels"})[0]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logit, loss = self.head(self.model, batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss.item()} at step {self.global_step}; lower "
                f"train.lr (now {self.lr:g}) or raise train.warmup_ratio."
            )
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        self.losses.append(float(pointwise(logit.detach().float(), batch["labels"])))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """The gradient's global L2 norm before clipping, for the fold run's curves."""
        norms = [p.grad.detach().norm(2) for p in self.parameters() if p.grad is not None]
        if norms:
            self.log("grad_norm", torch.linalg.vector_norm(torch.stack(norms)), on_step=True, on_epoch=False)

    def final_loss(self) -> float:
        """Mean BCE of the training logits over the last tenth of the steps (at least 5): where training ended."""
        if not self.losses:
            return float("nan")
        return float(np.mean(self.losses[-max(5, len(self.losses) // 10) :]))

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"index": batch["index"].cpu(), "score": torch.sigmoid(self(batch)).cpu()}

    def configure_optimizers(self):
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        head = [p for n, p in named if is_head_parameter(n, self.head_module)]
        groups = [{"params": [p for n, p in named if not is_head_parameter(n, self.head_module)], "name": "backbone"}]
        if head:  # a fresh head may learn at its own rate (train.head_lr)
            groups.append({"params": head, "lr": self.head_lr or self.lr, "name": "head"})
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.lr, weight_decay=self.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = get_scheduler(
            self.scheduler_name, optimizer, num_warmup_steps=int(self.warmup_ratio * total), num_training_steps=total
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Only what trains (never the base weights), and what a resumed fold needs to go on exactly as an
        uninterrupted one would: the losses so far and the random number generators' states."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        loader = self.trainer.train_dataloader
        checkpoint["relevance"] = {
            "losses": list(self.losses),
            "rng": _rng_states(),
            "data": loader.state_dict() if hasattr(loader, "state_dict") else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("relevance") or {}
        self.losses = list(saved.get("losses", []))
        self._data_position = saved.get("data")
        if "rng" in saved:
            _set_rng_states(saved["rng"])

    def on_fit_start(self) -> None:
        """Train mode: transformers returns `from_pretrained` models in eval mode and Lightning keeps each module's
        mode; in eval mode gradient checkpointing does nothing (each block ran forward once per step with it on:
        no memory saved). Dropout is train.dropout's to decide (fold.fresh_model), not the mode's."""
        self.train()

    def on_train_start(self) -> None:
        # Lightning restores a loader's position only when it builds the loader after the restore; here
        # `estimated_stepping_batches` built it before, so the position is put back by hand (idempotent).
        if self._data_position:
            self.trainer.train_dataloader.load_state_dict(self._data_position)
            self._data_position = None


def _rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def all_ranks(outputs: list[dict]) -> list[dict]:
    """Every rank's prediction batches, on every rank (each scored its own share of the rows)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return outputs
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, outputs)
    return [batch for rank_outputs in gathered for batch in rank_outputs]


def gather_scores(outputs: list[dict], n_rows: int) -> np.ndarray:
    """Put batch outputs (length-sorted order) back into row order; a row scored twice (the batches repeated so
    that every rank scores as many batches) keeps its first score."""
    scores = np.full(n_rows, np.nan, dtype=np.float64)
    for output in outputs:
        index, score = output["index"].numpy(), output["score"].numpy()
        first = np.isnan(scores[index])
        scores[index[first]] = score[first]
    return scores
