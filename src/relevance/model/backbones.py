"""Loading a backbone from a location (a local folder or hub id; `relevance.weights` says which) as a LoRA-ready
encoder, sequence classifier or causal LM, text-only where the checkpoint has a vision tower."""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import logging

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, PretrainedConfig

from relevance.errors import ConfigError, RelevanceError

log = logging.getLogger(__name__)


def load_tokenizer(backbone, location: str):
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=backbone.trust_remote_code)
    except OSError as error:
        raise RelevanceError(
            f"could not load the tokenizer of backbone {backbone.name} from {location!r} "
            f"({str(error).splitlines()[0]}); check the hub id, your network or HF_TOKEN, "
            f"or use backbone=gemma3_270m offline."
        ) from None
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


def load_encoder(backbone, location: str, dtype: torch.dtype, device: str | None = None):
    """The encoder's bare transformer (no pooler: heads pool it themselves)."""
    from transformers import AutoModel

    return _from_pretrained(AutoModel, backbone, location, dtype, add_pooling_layer=False, **_onto(device))


def load_decoder(backbone, location: str, tokenizer, dtype: torch.dtype, causal_lm: bool, device: str | None = None):
    """A decoder as a causal LM (its own LM head scores an answer) or with a fresh one-logit sequence-classification
    head on the last non-pad token (which needs pad_token_id)."""
    if causal_lm:
        model = _from_pretrained(AutoModelForCausalLM, backbone, location, dtype, **_onto(device))
    else:
        model = _from_pretrained(
            AutoModelForSequenceClassification, backbone, location, dtype, num_labels=1, **_onto(device)
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _onto(device: str | None) -> dict:
    """Load the weights straight onto a GPU (serving: no host copy of a 12-14B base first); on a CPU as before."""
    return {"device_map": {"": str(device)}} if device is not None and str(device).startswith("cuda") else {}


# Checkpoints of models with a vision tower keep the language model under a prefix; the text-only classes read it
# at the top level: the hub's layout (`language_model.model.`) and transformers' own (`model.language_model.`).
TEXT_ONLY_KEYS = {
    r"^language_model\.model\.": "model.",
    r"^model\.language_model\.": "model.",
    r"^language_model\.lm_head\.": "lm_head.",
}


def text_only(config: PretrainedConfig) -> PretrainedConfig:
    """The language model's own config where `config` describes a model with a vision tower (Gemma-3 4B-27B): the
    auto classes would build the multimodal model, whose vision layers LoRA's all-linear wraps and no text row
    ever trains (DDP fails on their unused parameters). Any other config as it is."""
    text = config.get_text_config()
    if text is config or getattr(config, "vision_config", None) is None:
        return config
    return copy.deepcopy(text)


def _text_only_with(config: PretrainedConfig, extra: dict) -> PretrainedConfig:
    """`text_only(config)` carrying the head's `num_labels` (taken out of `extra`: with a config given,
    transformers applies no such keyword to it)."""
    config = text_only(config)
    if "num_labels" in extra:
        config.num_labels = extra.pop("num_labels")
    return config


def _from_pretrained(auto, backbone, location: str, dtype: torch.dtype, **extra):
    """`auto.from_pretrained` with the backbone's dtype, remote-code and attention settings, text-only for a model
    with a vision tower; a failed load is one sentence naming the backbone and the fix. Given a transformers config
    instead of a location, the architecture is built from it with no weights (relevance.plan does so on the meta
    device): training and the plan build the same model through `text_only`."""
    if isinstance(location, PretrainedConfig):
        return auto.from_config(_text_only_with(location, extra), dtype=dtype, **extra)
    config = _hub_config(backbone, location)
    if config is not None and text_only(config) is not config:
        extra |= {"config": _text_only_with(config, extra), "key_mapping": TEXT_ONLY_KEYS}
    if backbone.get("quantization") == "4bit":  # QLoRA: NF4 weights, bf16 compute (checks.py refuses it on CPU)
        from transformers import BitsAndBytesConfig

        from relevance.runtime import inference_device

        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        extra["device_map"] = {"": inference_device()}  # this rank's GPU: bitsandbytes quantizes where it loads
    try:
        with _without_load_report():
            model, info = auto.from_pretrained(
                location,
                dtype=dtype,
                trust_remote_code=backbone.trust_remote_code,
                attn_implementation=attention_implementation(backbone, dtype),
                output_loading_info=True,
                **extra,
            )
    except OSError as error:
        raise RelevanceError(
            f"could not load backbone {backbone.name} from {location!r} "
            f"({str(error).splitlines()[0]}); check the hub id, your network or HF_TOKEN, "
            f"or use backbone=gemma3_270m offline."
        ) from None
    _check_weights_found(backbone, location, info.get("missing_keys") or [])
    return model


FRESH = ("score", "classifier", "pooler")  # modules a classification model starts afresh


class _LoadReportFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def _without_load_report():
    """transformers reports a fresh head as "newly initialized ... train on your downstream task", which is false
    where the head is then restored from a trained adapter (serving) and noise where training starts it on
    purpose; `_check_weights_found` judges the same missing keys and refuses what matters."""
    logger, quiet = logging.getLogger("transformers.modeling_utils"), _LoadReportFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _check_weights_found(backbone, location: str, missing) -> None:
    """Refuse a model whose pretrained weights were not found in the checkpoint (left random): only a fresh head
    may be missing. A silently random backbone would train for hours and learn nothing."""
    lost = sorted(key for key in missing if key.split(".")[0] not in FRESH and key != "lm_head.weight")
    if lost:
        raise RelevanceError(
            f"backbone {backbone.name}: {len(lost)} weight(s) of the model were not in the checkpoint at "
            f"{location!r} (e.g. {lost[0]}); they would train from random values. Check backbone.hub_id and "
            f"backbone.family, or report the checkpoint's layout."
        )


def _hub_config(backbone, location: str) -> PretrainedConfig | None:
    """The checkpoint's config (a small file), or None where it cannot be read (from_pretrained then says why)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(location, trust_remote_code=backbone.trust_remote_code)
    except (OSError, ValueError):
        return None
