"""How a model turns a batch into one relevance logit (sigmoid gives the score) and its training loss.

classifier: the sequence-classification head's single logit, BCE loss.
bi_encoder: the same call; the encoder model itself (backbones.MeanPooledBiEncoder) encodes query and target apart
and gives scale * cosine + bias as that logit.
yes_no: the language-model head at the answer position; the logit is logit(yes) - logit(no), so its sigmoid is
softmax([yes, no])[yes]. `loss: pair` (default) trains that logit with BCE, computing only the two answer rows of
the LM head, as LLM rerankers do (Qwen3-Reranker, FlagEmbedding): every step goes into telling yes from no.
`loss: vocab` is the SFT loss of the 3rd and 5th place teams: cross-entropy on the answer token over the whole
vocabulary (262,144 logits per row for Gemma-3), whose first steps go into moving mass onto the two words."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relevance.errors import ConfigError


class ClassifierHead:
    name = "classifier"

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        logit = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1).float()
        loss = F.binary_cross_entropy_with_logits(logit, batch["labels"].float()) if "labels" in batch else None
        return logit, loss


class BiEncoderHead(ClassifierHead):
    name = "bi_encoder"


class YesNoHead:
    name = "yes_no"
    LOSSES = ("pair", "vocab")

    def __init__(self, yes_id: int, no_id: int, loss: str = "pair"):
        if loss not in self.LOSSES:
            raise ConfigError(f"head.loss={loss!r} is not known; use pair (BCE on logit(yes) - logit(no)) or vocab "
                              f"(cross-entropy over the whole vocabulary).")
        self.yes_id, self.no_id, self.loss = yes_id, no_id, loss

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
        """The logits of the two answer tokens only: two rows of the LM head instead of the whole vocabulary."""
        base, hidden = self._answer_hidden(model, batch)
        head = base.get_output_embeddings()
        rows = torch.tensor([self.yes_id, self.no_id], device=hidden.device)
        bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
        return self._softcap(base, F.linear(hidden, head.weight[rows], bias).float())

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.loss == "vocab" and "labels" in batch:
            logits = self.answer_logits(model, batch)
            targets = torch.where(batch["labels"] > 0.5, self.yes_id, self.no_id)
            return logits[:, self.yes_id] - logits[:, self.no_id], F.cross_entropy(logits, targets)
        pair = self.pair_logits(model, batch)
        logit = pair[:, 0] - pair[:, 1]
        loss = F.binary_cross_entropy_with_logits(logit, batch["labels"].float()) if "labels" in batch else None
        return logit, loss


def answer_token_ids(tokenizer, answers) -> tuple[int, int]:
    """First token of each answer; they must differ, or p(yes) would mean nothing."""
    ids = [tokenizer.encode(answers[k], add_special_tokens=False)[:1] for k in ("positive", "negative")]
    if not all(ids) or ids[0] == ids[1]:
        raise ConfigError(f"head.answers {dict(answers)} do not start with two different tokens for this tokenizer; "
                          f"choose other answer words.")
    return ids[0][0], ids[1][0]


def build_head(head_cfg, tokenizer):
    if head_cfg.name == "classifier":
        return ClassifierHead()
    if head_cfg.name == "bi_encoder":
        return BiEncoderHead()
    if head_cfg.name == "yes_no":
        tokenizer.truncation_side = "left"  # an over-long row loses the start of its prompt, never the answer slot
        return YesNoHead(*answer_token_ids(tokenizer, head_cfg.answers), head_cfg.get("loss", "pair"))
    raise ConfigError(f"head.name={head_cfg.name!r} is not known; use classifier, bi_encoder or yes_no.")
