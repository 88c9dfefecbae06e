"""The LightningModule: a LoRA-adapted backbone whose head (heads.py) gives one relevance logit and a loss."""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import get_scheduler

from relevance.errors import TrainingDiverged


def apply_lora(model, target_modules, head_module: str, r: int, alpha: int, dropout: float,
               head: str = "classifier"):
    """Freeze the base and add LoRA. A new classification head is trained in full (`modules_to_save`); the
    yes/no head reuses the pretrained LM head, frozen ("all-linear" never targets it)."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    if head == "yes_no":
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha, lora_dropout=dropout,
                            target_modules=targets)
    else:
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                            target_modules=targets, modules_to_save=[head_module])
    return get_peft_model(model, config)


def init_head(model, head_module: str) -> None:
    """Start a fresh one-logit head at zero: every row scores 0.5 and the first steps fit the head to what the
    backbone already says, instead of a random projection of hidden states whose norm (about 90 for Gemma-3's
    last token) turns 0.02-scale random weights into logits of several units of one sign."""
    head = getattr(model, head_module, None)
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.zeros_(head.weight)
        if head.bias is not None:
            torch.nn.init.zeros_(head.bias)


HEAD_STEP = 0.5  # head_lr=auto: how far one full Adam step may move a logit


def auto_head_lr(model, head_module: str, tokenizer, inputs: list, max_length: int) -> float:
    """A fresh head's learning rate, from the size of what it reads. Adam moves every weight by about lr per step,
    so a logit moves by up to lr * ||h||_1: with one lr for all, Gemma-3-270M's last-token features
    (||h||_1 about 1,300) move 16x further per step than multilingual-e5-small's mean-pooled ones (about 80). This
    picks the lr at which one step moves a logit by at most HEAD_STEP, measured on the first 32 training rows (the
    same rows on every rank, so every rank gets the same lr)."""
    from relevance.batches import dataloader

    head = getattr(model.get_base_model() if hasattr(model, "get_base_model") else model, head_module)
    seen = []
    hook = head.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    try:
        batch = next(iter(dataloader(tokenizer, inputs[:32], None, 32, max_length, shuffle=False)))
        if torch.cuda.is_available():  # this rank's GPU (Lightning moves the model there next anyway)
            model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))))
        device = next(model.parameters()).device
        with torch.no_grad():
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    finally:
        hook.remove()
    features = seen[0].float()
    if features.dim() == 3:  # decoders run the head on every position and then pick the last real token
        last = batch["attention_mask"].sum(dim=1) - 1
        features = features[torch.arange(len(last)), last.to(features.device)]
    return HEAD_STEP / float(features.abs().sum(dim=-1).mean().clamp(min=1e-6))


def is_head_parameter(name: str, head_module: str | None) -> bool:
    return head_module is not None and head_module in name.split(".")


class RelevanceModule(L.LightningModule):
    def __init__(self, model, head, lr: float, weight_decay: float, warmup_ratio: float, scheduler: str,
                 head_lr: float | None = None, head_module: str | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.lr, self.weight_decay = lr, weight_decay
        self.head_lr, self.head_module = head_lr, head_module
        self.warmup_ratio, self.scheduler_name = warmup_ratio, scheduler
        self.losses: list[float] = []  # every step's training loss, for the learned-or-not check
        # Checkpoints hold only the trainable (adapter + head) tensors, so loading them is never strict.
        self.strict_loading = False

    def forward(self, batch: dict) -> torch.Tensor:
        """The relevance logit of each row (its sigmoid is the score)."""
        return self.head(self.model, {k: v for k, v in batch.items() if k != "labels"})[0]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        _, loss = self.head(self.model, batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss.item()} at step {self.global_step}; lower "
                                   f"train.lr (now {self.lr:g}) or raise train.warmup_ratio.")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        self.losses.append(float(loss.detach()))
        return loss

    def final_loss(self) -> float:
        """Mean training loss over the last tenth of the steps (at least 5): where training ended."""
        if not self.losses:
            return float("nan")
        return float(np.mean(self.losses[-max(5, len(self.losses) // 10):]))

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"index": batch["index"].cpu(), "score": torch.sigmoid(self(batch)).cpu()}

    def configure_optimizers(self):
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        head = [p for n, p in named if is_head_parameter(n, self.head_module)]
        groups = [{"params": [p for n, p in named if not is_head_parameter(n, self.head_module)]}]
        if head:  # a fresh head may learn at its own rate (train.head_lr)
            groups.append({"params": head, "lr": self.head_lr or self.lr})
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.lr, weight_decay=self.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = get_scheduler(self.scheduler_name, optimizer, num_warmup_steps=int(self.warmup_ratio * total),
                                  num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}


def all_ranks(outputs: list[dict]) -> list[dict]:
    """Every rank's prediction batches, on every rank (each scored its own share of the rows)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return outputs
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, outputs)
    return [batch for rank_outputs in gathered for batch in rank_outputs]


def gather_scores(outputs: list[dict], n_rows: int) -> np.ndarray:
    """Put batch outputs (length-sorted order) back into row order."""
    scores = np.full(n_rows, np.nan, dtype=np.float64)
    for output in outputs:
        scores[output["index"].numpy()] = output["score"].numpy()
    return scores
