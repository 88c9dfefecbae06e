"""What trains in a backbone, and how a trained fold is saved and put back: `backbone.finetune`.

lora: LoRA adapters on the backbone's target layers, the fresh head trained in full (decoders, 270M-14B).
full: every weight but the input embeddings (small encoders are normally trained in full; the embedding table is
    most of their weights, and leaving it alone keeps the tokens of languages unseen in training where
    pre-training put them) and the lowest `backbone.frozen_layers` blocks. A fold saves only what trained."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from relevance.errors import ConfigError, TrainingError

METHODS = ("lora", "full")
FULL_FILE = "trainable.safetensors"


def method(backbone) -> str:
    name = backbone.get("finetune", "lora")
    if name not in METHODS:
        raise ConfigError(f"backbone.finetune={name!r} is not known; use lora or full.")
    return name


def prepare(model, backbone, lora, head, init: Path | None = None):
    """The model ready to train: LoRA-wrapped (with `head`'s task type, a heads.Head), or unfrozen but for its
    embeddings; started from `init` (the TAPT stage-1 weights) when given."""
    if method(backbone) == "full":
        for parameter in model.parameters():
            parameter.requires_grad = True
        for parameter in model.get_input_embeddings().parameters():
            parameter.requires_grad = False
        for block in blocks(model)[: int(backbone.get("frozen_layers") or 0)]:
            for parameter in block.parameters():
                parameter.requires_grad = False
        if init is not None:
            load_trainable(model, init)
        return upcast_trainable(model)
    if backbone.get("quantization") == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if init is not None:
        from peft import PeftModel

        return upcast_trainable(PeftModel.from_pretrained(model, init, is_trainable=True))
    from relevance.model.module import apply_lora

    return upcast_trainable(
        apply_lora(model, backbone.lora_targets, backbone.head_module, lora.r, lora.alpha, lora.dropout, head)
    )


def interpolation_start(model, backbone) -> dict[str, torch.Tensor]:
    """What WiSE-FT moves a trained model back toward (train.wise_ft), taken before training: the backbone's
    trainable tensors as they start (full fine-tuning), or its LoRA B matrices (zero at the start, so that scaling
    them scales the whole low-rank update). The fresh head has no pre-trained weights to return to: it is left as
    trained."""
    from relevance.model.module import is_head_parameter

    kept = "lora_B" if method(backbone) == "lora" else ""
    return {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if p.requires_grad and kept in name and not is_head_parameter(name, backbone.head_module)
    }


def interpolate(model, start: dict[str, torch.Tensor], keep: float) -> None:
    """Each tensor of `start` set to keep x trained + (1 - keep) x start: a weight-space ensemble of the fine-tuned
    and the pre-trained model (Wortsman et al. 2022, WiSE-FT), which keeps more of what pre-training knew of inputs
    unlike the training rows (here: languages unseen in training)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in start:
                parameter.lerp_(start[name].to(parameter.device, parameter.dtype), 1.0 - keep)


DROPOUT_LAYERS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)


def switch_off_dropout(model) -> None:
    """Every dropout probability of the model set to 0 (train.dropout=false): it then trains in train mode, which
    gradient checkpointing needs, yet computes what eval mode would. nn.Dropout layers (BERT-like encoders read
    their attention dropout from one too) and the `attention_dropout` rate of decoder attention (Gemma, Qwen)."""
    for module in model.modules():
        if isinstance(module, DROPOUT_LAYERS):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def upcast_trainable(model):
    """Every trainable tensor in float32, whatever dtype the base was loaded in: AdamW steps a bf16 tensor with no
    float32 master copy, so an update under bf16's resolution (1/128 of the weight) rounds away. PEFT keeps LoRA's
    own matrices in float32 but not its `modules_to_save` copy of a fresh head, nor a full fine-tune's weights.
    An upcast module casts what it is given to float32 (under bf16 autocast its matmul still runs in bf16), so
    it also works where no autocast is active (the head-lr probe, bf16-true). The frozen base keeps its dtype."""
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and p.dtype in HALF]
        for parameter in own:
            parameter.data = parameter.data.float()
        if own:
            module.register_forward_pre_hook(_inputs_to_float32, with_kwargs=True)
    return model


HALF = (torch.bfloat16, torch.float16)


def _inputs_to_float32(module, args, kwargs):
    def cast(value):
        return value.float() if isinstance(value, torch.Tensor) and value.dtype in HALF else value

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def blocks(model) -> torch.nn.ModuleList:
    """The backbone's transformer blocks, lowest first: the module list as long as its configured layer count."""
    count = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ConfigError(
        f"{type(model).__name__} has no list of {count} transformer blocks to freeze; set backbone.frozen_layers=0."
    )


def enable_gradient_checkpointing(model) -> None:
    """Keep only each block's input for the backward pass and recompute the rest (train.gradient_checkpointing):
    activation memory drops from every layer's to about one layer's, for a third more compute. Non-reentrant, so
    frozen embeddings under LoRA need no `enable_input_require_grads`."""
    for module in model.modules():
        supported = getattr(module, "supports_gradient_checkpointing", False)
        if supported and hasattr(module, "gradient_checkpointing_enable"):
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return
    raise ConfigError(
        f"train.gradient_checkpointing=true: {type(model).__name__} has no transformers model that supports it; "
        f"set it to false."
    )


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def gathered(model):
    """A context in which every trainable tensor is whole on every rank: under ZeRO-3 each rank holds a shard of
    each (its `.data` is empty outside this context), so saving there would write empty tensors. Every rank must
    enter it (the gather is a collective); elsewhere it does nothing."""
    partitioned = [p for p in model.parameters() if p.requires_grad and hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None)


def save(model, folder: Path, backbone) -> None:
    """The fold's trained weights only: a PEFT adapter folder, or the unfrozen tensors of a full fine-tune (called
    inside `gathered` under ZeRO-3). Refused if a saved tensor is empty."""
    folder = Path(folder)
    if method(backbone) == "lora":
        model.save_pretrained(folder)
        _portable_adapter(folder, backbone)
    else:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(trainable_state(model), str(folder / FULL_FILE))
    check_saved(folder)


WEIGHT_FILES = ("adapter_model.safetensors", FULL_FILE)


def check_saved(folder: Path) -> None:
    """Refuse trained weights that hold nothing: no weight file, no tensor, or an empty tensor (what a ZeRO-3 rank
    saves of weights it did not gather). Such a model fails only when it is served, after the GPU hours are spent."""
    from safetensors import safe_open

    folder = Path(folder)
    files = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not files:
        raise TrainingError(f"{folder} holds no trained weights ({' or '.join(WEIGHT_FILES)}); nothing to serve.")
    for path in files:
        with safe_open(str(path), framework="pt") as weights:
            names = list(weights.keys())
            empty = [name for name in names if weights.get_slice(name).get_shape().count(0)]
        if not names or empty:
            raise TrainingError(
                f"{path} holds {'no tensors' if not names else f'empty tensors (e.g. {empty[0]})'}: the trained "
                f"weights were saved without being gathered from their shards (ZeRO-3); this model is not logged. "
                f"Train with strategy=deepspeed_stage_2 or ddp, or report it with the command that gave it."
            )


def _portable_adapter(folder: Path, backbone) -> None:
    """PEFT records the base as the folder it was loaded from (a path under this machine's cache) and writes a
    README of placeholders; the adapter names its base by hub id instead, and the logged model's card replaces
    the README."""
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = backbone.get("hub_id") or backbone.name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    (folder / "README.md").unlink(missing_ok=True)


def read_trainable(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / FULL_FILE))


def load_trainable(model, folder_or_state) -> None:
    """Put a full fine-tune's saved tensors back into a freshly loaded base (the rest is the base's own)."""
    state = folder_or_state if isinstance(folder_or_state, dict) else read_trainable(folder_or_state)
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise ConfigError(
            f"the saved weights do not fit this backbone (e.g. {unexpected[0]}); the model was trained "
            f"on another backbone."
        )
