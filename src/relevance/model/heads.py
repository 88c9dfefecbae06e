"""How a model turns a row into one relevance logit (sigmoid gives the score) and its training loss: one class per
head, registered by the name `conf/head/<name>.yaml` (and every logged bundle) carries. A head owns everything that
depends on it: which model class is loaded, the LoRA task type and what trains in full, the prompt, the checks
against the run's config, how a fresh head starts and at what learning rate, and the logit and loss themselves.

classifier: a fresh one-logit head (decoders: the last non-pad token; encoders: the mean-pooled pair), BCE loss.
bi_encoder: encoders only; query and target encoded apart, logit = scale * cosine + bias (encoders.py), BCE loss;
with `catalogue_margin`, scored by the cosine's margin over every other category the run knows.
yes_no: the language-model head at the answer position; the logit is logit(yes) - logit(no), so its sigmoid is
softmax([yes, no])[yes]. `loss: pair` (default) trains that logit with BCE, computing only the two answer rows of
the LM head, as LLM rerankers do (Qwen3-Reranker, FlagEmbedding): every step goes into telling yes from no.
`loss: vocab` is the SFT loss of the 3rd and 5th place teams: cross-entropy on the answer token over the whole
vocabulary (262,144 logits per row for Gemma-3), whose first steps go into moving mass onto the two words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import TaskType

from relevance.errors import ConfigError, DataError
from relevance.model.backbones import load_decoder, load_encoder
from relevance.model.encoders import CosineScore, MeanPooledBiEncoder, MeanPooledClassifier
from relevance.model.losses import build_loss
from relevance.runtime import inference_device, zero_stage
from relevance.tasks import task_kind

HEADS: dict[str, type[Head]] = {}


def register(cls):
    """Make a head choosable by its `name` (the name stored in bundles: renaming the class breaks nothing)."""
    HEADS[cls.name] = cls
    return cls


def head_class(name: str) -> type[Head]:
    if name not in HEADS:
        raise ConfigError(f"head.name={name!r} is not known; use {', '.join(HEADS)}.")
    return HEADS[name]


class Head:
    """A fresh one-logit head on the backbone, trained in full beside LoRA (or the full fine-tune)."""

    name = ""
    lora_task_type = TaskType.SEQ_CLS
    fresh = True  # the head module is new: saved with the adapters, trained at its own learning rate
    # head.loss choices (losses.py), the first the default; the last three learn from distill.teachers' scores
    LOSSES = ("pointwise", "group", "listwise", "soft_labels", "margin_mse", "kl")

    def __init__(self, options=None, tokenizer=None):
        self.options = options  # the `head` config group: name, loss, prompt styles, answers
        self.loss = self.loss_name(options)  # its name; the loss itself is `objective`
        self.objective = build_loss(self.loss, options)

    @classmethod
    def loss_name(cls, head_cfg) -> str:
        """head.loss, or this head's default; refused when this head does not train with it."""
        name = (head_cfg.get("loss") if head_cfg is not None else None) or cls.LOSSES[0]
        if name not in cls.LOSSES:
            choices = ", ".join(cls.LOSSES)
            raise ConfigError(f"head.loss={name!r} is not one head={cls.name} trains with; use {choices}.")
        return name

    @property
    def batching(self) -> str:
        """The batch shape training needs: "rows", or "queries" (each query's rows in one batch)."""
        return self.objective.batching

    @classmethod
    def check(cls, cfg) -> None:
        """Refuse a run config (backbone, task, strategy, the head's own keys) this head cannot work with, with the
        key to change."""
        cls.loss_name(cfg.head)
        for key in ("pointwise_weight", "in_batch_scale", "teacher_temperature"):
            value = cfg.head.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"head.{key}={value!r} must be a number >= 0.")
        if not cfg.head.get("teacher_temperature", 1.0):
            raise ConfigError("head.teacher_temperature=0 divides the teacher's logits by zero; give a number > 0.")

    @classmethod
    def prompt(cls, task, head_cfg, backbone) -> str:
        """The per-row template, still holding {query}, {target} and {language}: the task's own."""
        return task.template

    @classmethod
    def load(cls, backbone, location: str, tokenizer, dtype: torch.dtype, head_cfg=None, device: str | None = None):
        """The backbone ready for this head; with a GPU `device`, its weights are loaded straight onto it."""
        if backbone.kind == "encoder":
            return MeanPooledClassifier(load_encoder(backbone, location, dtype, device), backbone.head_module)
        return load_decoder(backbone, location, tokenizer, dtype, causal_lm=False, device=device)

    def start(self, model, head_module: str) -> None:
        """Start a fresh one-logit head at zero: every row scores 0.5 and the first steps fit the head to what the
        backbone already says, instead of a random projection of hidden states whose norm (about 90 for Gemma-3's
        last token) turns 0.02-scale random weights into logits of several units of one sign."""
        head = getattr(model, head_module, None)
        if isinstance(head, torch.nn.Linear):
            torch.nn.init.zeros_(head.weight)
            if head.bias is not None:
                torch.nn.init.zeros_(head.bias)

    def auto_lr(self, model, head_module: str, tokenizer, inputs: list, max_length: int) -> float | None:
        """train.head_lr=auto: see auto_head_lr."""
        return auto_head_lr(model, head_module, tokenizer, inputs, max_length)

    def catalogue(self, inputs: list) -> list[str]:
        """The texts scoring compares targets with (none: this head scores each pair alone)."""
        return []

    def prepare_scoring(
        self, model, tokenizer, catalogue: list[str], max_length: int, batch_size: int, key: str | None = None
    ) -> None:
        """What a trained model needs before it scores (called after training, and by the served model each time
        it switches to fold `key`: what was prepared for a key is kept)."""

    def score(self, model, tokenizer, inputs: list, batch_size: int, max_length: int, device, desc: str = ""):
        """Every row's probability, as a served request is scored: batches of rows of like length (the progress
        bar, named `desc`, shows only when a description is given)."""
        from tqdm.auto import tqdm

        from relevance.model.batches import dataloader

        scores = np.zeros(len(inputs))
        loader = dataloader(tokenizer, inputs, None, batch_size, max_length, shuffle=False)
        for batch in tqdm(loader, desc=desc, disable=not desc, leave=False):
            logit, _ = self(model, {k: batch[k].to(device) for k in ("input_ids", "attention_mask")})
            scores[batch["index"].numpy()] = torch.sigmoid(logit).cpu().numpy()
        return scores

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each row's logit, and the training loss when the batch has labels."""
        logit = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1).float()
        return logit, self.training_loss(logit, batch)

    def training_loss(self, logit: torch.Tensor, batch: dict, similarity: dict | None = None) -> torch.Tensor | None:
        return self.objective(logit, batch, similarity) if "labels" in batch else None


@register
class ClassifierHead(Head):
    name = "classifier"


@register
class BiEncoderHead(Head):
    name = "bi_encoder"
    LOSSES = (*Head.LOSSES, "in_batch")

    def __init__(self, options=None, tokenizer=None):
        super().__init__(options)
        self.indexed: dict[str, object] = {}  # the served model's catalogue index per fold

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        backbone, head = cfg.backbone, cfg.head
        if backbone.kind != "encoder":
            raise ConfigError(
                f"head=bi_encoder encodes the query and the target apart with an encoder; "
                f"backbone={backbone.name} is a {backbone.kind}. Use an encoder backbone such as "
                f"multilingual_e5_small, or head=classifier."
            )
        if not isinstance(head.get("catalogue_margin", False), bool):
            raise ConfigError(f"head.catalogue_margin={head.catalogue_margin!r} must be true or false.")
        if head.get("catalogue_file"):
            if not head.get("catalogue_margin"):
                raise ConfigError(
                    "head.catalogue_file gives the catalogue margin more categories to compare with; it needs "
                    "head.catalogue_margin=true (or drop head.catalogue_file)."
                )
            if not all(part.target_is_path for part in task_kind(cfg.task.code).parts):
                raise ConfigError(
                    f"head.catalogue_file holds category paths, the targets of task=qc; task={cfg.task.name} "
                    f"scores {cfg.task.target_name}s, so drop head.catalogue_file."
                )
            if not Path(head.catalogue_file).is_file():
                raise DataError(
                    head.catalogue_file, None, "file not found; set head.catalogue_file to a file of category paths."
                )
        if head.get("catalogue_margin") and zero_stage(cfg.strategy) == 3:
            raise ConfigError(
                f"head.catalogue_margin embeds the categories outside the training engine, where strategy="
                f"{cfg.strategy.name} (ZeRO-3) leaves each device a shard of the weights; a bi-encoder fits on one "
                f"device, so use strategy=ddp or strategy=deepspeed_stage_2."
            )

    @classmethod
    def load(cls, backbone, location: str, tokenizer, dtype: torch.dtype, head_cfg=None, device: str | None = None):
        return MeanPooledBiEncoder(
            load_encoder(backbone, location, dtype, device),
            backbone.head_module,
            tokenizer,
            head_cfg.query_prefix,
            head_cfg.target_prefix,
        )

    def start(self, model, head_module: str) -> None:
        pass  # CosineScore starts centred on the encoder's usual cosines

    def auto_lr(self, model, head_module: str, tokenizer, inputs: list, max_length: int) -> float:
        return CosineScore.LEARNING_RATE

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """With a loss that reads the whole batch (in_batch), every query against every target of the batch too."""
        if not (self.objective.needs_similarity and "labels" in batch):
            return super().__call__(model, batch)
        bi_encoder = model.get_base_model() if hasattr(model, "get_base_model") else model
        query, target, target_rows = bi_encoder.pair_vectors(batch["input_ids"], batch["attention_mask"])
        logit = bi_encoder.pair_logits(query, target).squeeze(-1).float()
        keys = [tuple(row) for row in target_rows]
        same = torch.tensor([[a == b for b in keys] for a in keys], device=logit.device)
        return logit, self.training_loss(logit, batch, {"cosine": query @ target.T, "same_target": same})

    def catalogue(self, inputs: list) -> list[str]:
        """With head.catalogue_margin: every distinct target of these (query, target) pairs, as the model reads
        targets (the run's training and dev rows: the categories it knows)."""
        if not (self.options is not None and self.options.get("catalogue_margin")):
            return []
        return sorted({target for _, target in inputs})

    def prepare_scoring(
        self, model, tokenizer, catalogue: list[str], max_length: int, batch_size: int, key: str | None = None
    ) -> None:
        """Index the catalogue with the trained weights, so scoring reads each pair's margin over it (each fold's
        index is kept by its key: a fold ensemble indexes once per fold, not once per call)."""
        if not (self.options is not None and self.options.get("catalogue_margin")):
            return
        bi_encoder = model.get_base_model() if hasattr(model, "get_base_model") else model
        if key is not None and key in self.indexed:
            bi_encoder.catalogue = self.indexed[key]
            return
        bi_encoder.index_catalogue(tokenizer, catalogue, max_length, batch_size)
        if key is not None:
            self.indexed[key] = bi_encoder.catalogue

    def score(self, model, tokenizer, inputs: list, batch_size: int, max_length: int, device, desc: str = ""):
        """Each distinct query and target encoded once (MeanPooledBiEncoder.score_pairs): the same scores as
        batch by batch, with fewer texts encoded."""
        from tqdm.auto import tqdm

        from relevance.model.batches import encode

        bi_encoder = model.get_base_model() if hasattr(model, "get_base_model") else model
        with tqdm(desc=desc, disable=not desc, leave=False, unit="text") as bar:
            logits = bi_encoder.score_pairs(encode(tokenizer, inputs, max_length), batch_size, bar)
        return torch.sigmoid(logits.float()).cpu().numpy()


@register
class YesNoHead(Head):
    name = "yes_no"
    lora_task_type = TaskType.CAUSAL_LM
    fresh = False  # the pretrained LM head scores; frozen unless lora_targets names lm_head (an adapter on it)
    # pair: BCE on logit(yes) - logit(no); vocab: cross-entropy over the whole vocabulary; the others (group,
    # listwise, distillation) read the pair logit
    LOSSES = ("pair", "vocab", *Head.LOSSES[1:])

    def __init__(
        self, options=None, tokenizer=None, yes_id: int | None = None, no_id: int | None = None, loss: str | None = None
    ):
        self.options = options
        self.loss = self.loss_name({"loss": loss} if loss else options)
        self.objective = build_loss("pointwise" if self.loss in ("pair", "vocab") else self.loss, options)
        if yes_id is None:
            tokenizer.truncation_side = "left"  # an over-long row loses the start of its prompt, never the answer
            yes_id, no_id = answer_token_ids(tokenizer, options.answers)
        self.yes_id, self.no_id = yes_id, no_id

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        backbone = cfg.backbone
        if backbone.kind == "encoder":
            raise ConfigError(
                f"head=yes_no scores the answer with a language-model head, which the encoder "
                f"backbone={backbone.name} does not have; use head=classifier or a decoder backbone."
            )
        if zero_stage(cfg.strategy) == 3:  # not provable without a GPU: refused rather than shipped untested
            raise ConfigError(
                f"head=yes_no reads two rows of the LM head's weight directly, which strategy={cfg.strategy.name} "
                f"(ZeRO-3) leaves as a shard on each device; use strategy=deepspeed_stage_2 (or ddp) with "
                f"train.gradient_checkpointing=true, or head=classifier."
            )

    @classmethod
    def prompt(cls, task, head_cfg, backbone) -> str:
        """The task template wrapped in an instruction: Alpaca-style for base models, the family's chat format for
        instruct models, ending where the answer token goes."""
        if backbone.prompt_style == "alpaca":
            style = head_cfg.styles.alpaca
        elif backbone.prompt_style == "chat":
            if backbone.family not in head_cfg.styles.chat:
                raise ConfigError(
                    f"head.styles.chat has no template for family {backbone.family!r} "
                    f"(backbone={backbone.name}); add one or set backbone.prompt_style=alpaca."
                )
            style = head_cfg.styles.chat[backbone.family]
        else:
            raise ConfigError(
                f"head=yes_no needs backbone.prompt_style alpaca or chat; backbone={backbone.name} "
                f"has {backbone.prompt_style!r}."
            )
        instruction = head_cfg.instruction.replace("{target_name}", task.target_name)
        return style.replace("{instruction}", instruction).replace("{input}", task.template)

    @classmethod
    def load(cls, backbone, location: str, tokenizer, dtype: torch.dtype, head_cfg=None, device: str | None = None):
        return load_decoder(backbone, location, tokenizer, dtype, causal_lm=True, device=device)

    def start(self, model, head_module: str) -> None:
        pass

    def auto_lr(self, model, head_module: str, tokenizer, inputs: list, max_length: int) -> None:
        return None  # no fresh head: everything trains at train.lr

    @staticmethod
    def _answer_hidden(model, batch: dict):
        """The base model and the final hidden state at each row's last real token (right padding)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = base.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        last = batch["attention_mask"].sum(dim=1) - 1
        return base, hidden[torch.arange(len(last), device=hidden.device), last]

    @staticmethod
    def _softcap(base, logits: torch.Tensor) -> torch.Tensor:
        cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def answer_logits(self, model, batch: dict) -> torch.Tensor:
        """Full-vocabulary logits at each row's last real token, computed for that token only."""
        base, hidden = self._answer_hidden(model, batch)
        return self._softcap(base, base.get_output_embeddings()(hidden).float())

    def pair_logits(self, model, batch: dict) -> torch.Tensor:
        """The logits of the two answer tokens only: two rows of the LM head instead of the whole vocabulary,
        with the same two rows of a LoRA adapter on the LM head when one is there (DILAB targets lm_head)."""
        base, hidden = self._answer_hidden(model, batch)
        head = base.get_output_embeddings()
        rows = torch.tensor([self.yes_id, self.no_id], device=hidden.device)
        bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
        logits = F.linear(hidden, head.weight[rows], bias)
        for name in _active_lora(head):
            adapted = head.lora_A[name](head.lora_dropout[name](hidden.to(head.lora_A[name].weight.dtype)))
            logits = logits + F.linear(adapted, head.lora_B[name].weight[rows]).to(logits.dtype) * head.scaling[name]
        return self._softcap(base, logits.float())

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.loss == "vocab" and "labels" in batch:
            logits = self.answer_logits(model, batch)
            targets = torch.where(batch["labels"] > 0.5, self.yes_id, self.no_id)
            return logits[:, self.yes_id] - logits[:, self.no_id], F.cross_entropy(logits, targets)
        pair = self.pair_logits(model, batch)
        logit = pair[:, 0] - pair[:, 1]
        return logit, self.training_loss(logit, batch)


def _active_lora(module) -> list[str]:
    """The LoRA adapters active on `module` (a PEFT LoRA layer), none for a plain layer or merged adapters."""
    if not hasattr(module, "lora_A") or getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
        return []
    return [name for name in module.active_adapters if name in module.lora_A]


def answer_token_ids(tokenizer, answers) -> tuple[int, int]:
    """First token of each answer; they must differ, or p(yes) would mean nothing."""
    ids = [tokenizer.encode(answers[k], add_special_tokens=False)[:1] for k in ("positive", "negative")]
    if not all(ids) or ids[0] == ids[1]:
        raise ConfigError(
            f"head.answers {dict(answers)} do not start with two different tokens for this tokenizer; "
            f"choose other answer words."
        )
    return ids[0][0], ids[1][0]


def build_head(head_cfg, tokenizer) -> Head:
    return head_class(head_cfg.name)(head_cfg, tokenizer)


def load_model(backbone, location: str, tokenizer, dtype: torch.dtype, head_cfg=None):
    """The backbone ready for its head (the head's config; None is the classifier)."""
    return head_class(head_cfg.name if head_cfg is not None else "classifier").load(
        backbone, location, tokenizer, dtype, head_cfg
    )


def prompt_template(task, head_cfg, backbone) -> str:
    """The per-row template for this task, head and backbone, still holding {query}, {target} and {language}."""
    return head_class(head_cfg.name).prompt(task, head_cfg, backbone)


HEAD_STEP = 0.5  # head_lr=auto: how far one full Adam step may move a logit


def auto_head_lr(model, head_module: str, tokenizer, inputs: list, max_length: int) -> float:
    """A fresh head's learning rate, from the size of what it reads. Adam moves every weight by about lr per step,
    so a logit moves by up to lr * ||h||_1: with one lr for all, Gemma-3-270M's last-token features
    (||h||_1 about 1,300) move 16x further per step than multilingual-e5-small's mean-pooled ones (about 80). This
    picks the lr at which one step moves a logit by at most HEAD_STEP, measured on the first 32 training rows (the
    same rows on every rank, so every rank gets the same lr)."""
    from relevance.model.batches import dataloader

    head = getattr(model.get_base_model() if hasattr(model, "get_base_model") else model, head_module)
    seen = []
    hook = head.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    try:
        batch = next(iter(dataloader(tokenizer, inputs[:32], None, 32, max_length, shuffle=False)))
        if torch.cuda.is_available():  # this rank's GPU (Lightning moves the model there next anyway)
            model.to(inference_device())
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
