"""`relevance plan <overrides>`: the run a config describes, checked before a GPU hour is spent. The backbone's real
architecture is built on PyTorch's meta device from its published dimensions (`architecture:` in its file; no
download, no memory), the configured head and LoRA are applied exactly as training applies them, and the plan
says what matched, how much memory each GPU needs under the chosen strategy, the FLOPs of a step and the time of
an epoch at a stated model-FLOPs utilisation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from relevance.errors import ConfigError
from relevance.runtime import zero_stage

# Model FLOPs utilisation assumed for time estimates: measured for LoRA training on an H100 at Qwen3-1.7B dimensions,
# 6.8% at 512-token rows and 14.3% at 2,048 (BENCHMARKS.md "GPU"); the competition's rows are shorter still.
DEFAULT_MFU = 0.07
GPUS = {"A100-80G": (80, 312e12), "H100-80G": (80, 989e12), "H200-141G": (141, 989e12)}  # memory GB, bf16 dense peak
BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass
class Plan:
    total: int  # parameters
    trainable: int
    targets: dict[str, int]  # LoRA target name -> modules it wrapped
    layers: int
    hidden: int
    intermediate: int
    q_dim: int  # attention heads x head size (not always the hidden size: Gemma-3)
    kv_dim: int
    weight_bytes: float  # the frozen weights in their dtype (what trains is counted at 16 bytes apart)
    batch: int  # rows per GPU step
    max_length: int  # tokens a row at the longest batch, which sets peak memory
    mean_tokens_per_step: (
        int  # at the rows' mean length: what sets the time (batches are length-grouped, padded per batch)
    )
    rows_per_epoch: int
    steps_per_epoch: int
    devices: int
    stage: int  # ZeRO stage: 0 (none/DDP), 2 or 3
    checkpointing: bool
    activation_bytes: int = 2  # bf16 under mixed precision on a GPU; 4 for a float32 run (CPU)
    dropout_inputs: int = 0  # per layer: input features of the LoRA-wrapped modules when LoRA dropout copies them
    eager_heads: int = 0  # attention heads whose probabilities are kept (eager attention), else 0 (SDPA, flash)

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.max_length

    def layer_activation_bytes(self) -> float:
        """What one decoder layer keeps for the backward pass, per GPU step. The per-token count, in activation
        values, is 8.5 h + 3 q + 2 kv + 4 i: the layer's input, norms and residuals (about 8.5 h, with RMSNorm's
        float32 upcasts under bf16), queries, attention output and rotary copies (3 q), keys and values (2 kv), and
        the gated MLP's four intermediate tensors (4 i). Fitted on an H100's measured peaks at Qwen3-1.7B
        dimensions (bench/results/gpu_throughput_h100_*.json) and checked on CPU against the tensors autograd
        saves (tests/test_plan.py). LoRA dropout keeps a copy and a one-byte mask of each adapted input; eager
        attention keeps every head's T x T probabilities (float32 softmax beside the bf16 copy)."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        values = 8.5 * h + 3 * q + 2 * kv + 4 * i
        per_token = values * self.activation_bytes + self.dropout_inputs * (self.activation_bytes + 1)
        probability_bytes = self.activation_bytes + (4 if self.activation_bytes < 4 else 0)
        attention = self.batch * self.eager_heads * self.max_length**2 * probability_bytes
        return self.tokens_per_step * per_token + attention

    def memory_gb(self, checkpointing: bool | None = None) -> dict[str, float]:
        """Per GPU: weights in their dtype, what trains (fp32 weights, grads, AdamW's two moments: 16 bytes each),
        activations kept for the backward pass (every layer's, or with gradient checkpointing each layer's input
        plus one layer's recomputed), sharded as the ZeRO stage says."""
        checkpointing = self.checkpointing if checkpointing is None else checkpointing
        weights = self.weight_bytes / (self.devices if self.stage == 3 else 1)
        trainable = 4 * self.trainable + 12 * self.trainable / (self.devices if self.stage >= 2 else 1)
        layer = self.layer_activation_bytes()
        layer_inputs = self.tokens_per_step * self.hidden * self.activation_bytes * self.layers
        kept = layer_inputs + layer if checkpointing else layer * self.layers
        parts = {"weights": weights, "trainable + AdamW": trainable, "activations": kept}
        return {name: value / 1e9 for name, value in parts.items()}

    def flops_per_step(self, full: bool) -> float:
        """2 N per token forward; backward 2 N for the activations' gradients, plus 2 N for the weights' when every
        weight trains (LoRA's own are negligible); recomputation adds a forward with gradient checkpointing."""
        passes = (6 if full else 4) + (2 if self.checkpointing else 0)
        return passes * self.total * self.mean_tokens_per_step


def architecture(backbone, cache):
    """The backbone's transformers config, from the dimensions in its file (or, for the tiny test backbone, from
    the folder it builds in `cache`)."""
    from transformers import AutoConfig

    dims = backbone.get("architecture")
    if dims is None:
        if backbone.get("source") != "tiny":
            raise ConfigError(
                f"backbone {backbone.name} has no `architecture:` dimensions in its file; add them from its hub "
                f"config.json (model_type, hidden_size, num_hidden_layers, ...) to plan it."
            )
        from relevance.weights import resolve_source

        return AutoConfig.from_pretrained(resolve_source(backbone, cache))
    values = OmegaConf.to_container(dims, resolve=True)
    return AutoConfig.for_model(values.pop("model_type"), **values)


class _NoTokenizer:
    """What heads read of a tokenizer when they are built (special token ids, prefix tokens); shapes do not
    depend on it, so a plan needs no download of the real one."""

    pad_token_id, cls_token_id, sep_token_id = 0, 1, 2

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": []}


def build_on_meta(cfg):
    """The model training would build (head and LoRA included), on the meta device: shapes without memory."""
    from relevance.model import finetune
    from relevance.model.heads import head_class

    config = architecture(cfg.backbone, cfg.paths.cache)
    config.pad_token_id = 0
    dtype = getattr(torch, cfg.backbone.dtype)
    head = head_class(cfg.head.name)
    with torch.device("meta"):
        base = head.load(cfg.backbone, config, _NoTokenizer(), dtype, cfg.head)
    module = cfg.backbone.head_module
    if head.fresh and not any(name.split(".")[-1] == module for name, _ in base.named_modules()):
        raise ConfigError(
            f"backbone.head_module={module} is not a module of {type(base).__name__}; name its classification head "
            f"(e.g. score for decoders, classifier for encoders)."
        )
    try:
        with torch.device("meta"):
            model = finetune.prepare(base, cfg.backbone, cfg.lora, head)
    except ValueError as error:  # PEFT: a target that matches no module
        targets = cfg.backbone.lora_targets
        targets = OmegaConf.to_container(targets) if OmegaConf.is_config(targets) else targets
        raise ConfigError(
            f"backbone.lora_targets={targets} does not fit {type(base).__name__}: {str(error).splitlines()[0]}"
        ) from None
    return model, config


def _dropout_inputs(model, lora, layers: int) -> int:
    """Input features, per layer, of the modules whose LoRA input is copied by dropout (0 without dropout)."""
    if not lora or not float(lora.get("dropout") or 0):
        return 0
    wrapped = (m for m in model.modules() if hasattr(m, "lora_A") and len(getattr(m, "lora_A", {})))
    return sum(getattr(m, "in_features", 0) for m in wrapped) // max(layers, 1)


def _eager_heads(backbone, config) -> int:
    """Attention heads whose T x T probabilities training keeps: all with eager attention (chosen, or the
    soft-capped families' default without flash-attn), none with SDPA or FlashAttention."""
    from relevance.model.backbones import attention_implementation

    return config.num_attention_heads if attention_implementation(backbone) == "eager" else 0


def matched_targets(model) -> dict[str, int]:
    """LoRA-wrapped modules counted by their last name (q_proj: 40, ...)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})):
            last = name.split(".")[-1]
            counts[last] = counts.get(last, 0) + 1
    return counts


NF4_BYTES = 0.55  # a 4-bit weight with double quantisation's constants


def _frozen_bytes(model, backbone, cpu: bool) -> float:
    """Bytes of the frozen weights: in their dtype (float32 on a CPU, which loads every backbone so). Under QLoRA
    (4-bit) bitsandbytes quantizes the blocks' linear layers to NF4, and PEFT's prepare_model_for_kbit_training
    casts everything it left (embeddings, norms, an untied output layer) to float32: for Qwen3-14B the
    embeddings alone are 3.1 GB then, not 0.4."""
    frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
    if cpu or backbone.get("quantization") != "4bit":
        return sum(p.numel() for p in frozen.values()) * (4 if cpu else BYTES[backbone.dtype])
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    quantized = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not output and not hasattr(module, "lora_A"):
            quantized |= {id(p) for p in module.parameters(recurse=False) if p.dim() == 2}
    return sum(p.numel() * (NF4_BYTES if key in quantized else 4) for key, p in frozen.items())


BYTES_PER_TOKEN = 3.5  # UTF-8 bytes per token where the tokenizer is not on this machine (see data_lengths)


@dataclass
class Lengths:
    """Token lengths of the training rows as the model reads them (prompt included, cut where training cuts)."""

    longest: int  # the longest batch's rows: what sets peak memory (batches are length-grouped)
    mean: float  # what sets the time
    rows: int
    how: str  # "tokenized with <tokenizer>" or "estimated at N bytes a token"


def _local_tokenizer(cfg):
    """The backbone's tokenizer if this machine has it (tiny, packaged, or a hub snapshot on disk), else None:
    a plan never downloads."""
    from transformers import AutoTokenizer

    from relevance.model.backbones import load_tokenizer
    from relevance.weights import resolve_source

    backbone = cfg.backbone
    try:
        location = resolve_source(backbone, cfg.paths.cache)  # the hub id only where training would download
        if location != backbone.get("hub_id"):
            return load_tokenizer(backbone, location)
        return AutoTokenizer.from_pretrained(location, local_files_only=True)
    except Exception:  # noqa: BLE001 - not on this machine, in whatever way the hub or the package says so
        return None


def data_lengths(cfg) -> Lengths:
    """Read the configured training file(s), write each row as training does (task prompt, category order) and
    measure it in the backbone's tokens, cut at train.max_length plus the prompt's own tokens. Without the
    tokenizer on this machine the length is estimated from UTF-8 bytes: Gemma-3's tokenizer reads 3.9-4.8 bytes a
    token on the demo's and the taxonomy's queries and paths (ar, de, en, es, fr, it, ja, ko, pl, pt); 3.5 errs
    towards more tokens, so towards more memory."""
    import numpy as np

    from relevance import build
    from relevance.data.reader import read_records
    from relevance.data.sources import data_file

    preprocessor = build.make_preprocessor(cfg)
    texts, prompts = [], []
    for task in preprocessor.templates:
        records = read_records(data_file(cfg.data, cfg.paths.cache, task, "train"), task)
        texts += [" ".join(t) if isinstance(t, tuple) else t for t in preprocessor.format(records)]
        prompts.append(preprocessor.templates[task].format(query="", target="", language=""))
    tokenizer = _local_tokenizer(cfg)
    if tokenizer is not None:
        count = lambda text: len(tokenizer(text)["input_ids"])  # noqa: E731
        how = f"tokenized with {getattr(tokenizer, 'name_or_path', 'its tokenizer')}"
    else:
        count = lambda text: round(len(text.encode()) / BYTES_PER_TOKEN)  # noqa: E731
        how = f"estimated at {BYTES_PER_TOKEN:g} UTF-8 bytes a token (the tokenizer is not on this machine)"
    cap = int(cfg.train.max_length) + max(count(prompt) for prompt in prompts)
    lengths = np.minimum([count(text) for text in texts], cap)
    return Lengths(longest=int(lengths.max()), mean=float(lengths.mean()), rows=len(lengths), how=how)


def make_plan(cfg, rows: int, row_tokens: float = 64, cpu: bool = False, lengths: Lengths | None = None) -> Plan:
    """The plan of `cfg` on GPUs (bf16 weights and activations), or with `cpu` as this machine runs it (float32),
    which is how the memory model is checked against measured peaks (bench/plan_memory.py). With the data's
    `lengths`, memory is planned at its longest rows and time at its mean row, over its rows; without, at
    train.max_length and `row_tokens` over `rows`."""
    if lengths is not None:
        rows, row_tokens = lengths.rows, lengths.mean
    model, config = build_on_meta(cfg)
    parameters = list(model.parameters())
    total = sum(p.numel() for p in parameters)
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_dim = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    layers = config.num_hidden_layers
    devices = int(cfg.strategy.get("devices") or 1) * int(cfg.strategy.get("num_nodes") or 1)
    stage = zero_stage(cfg.strategy)
    per_device_batch = int(cfg.train.batch_size)
    steps = math.ceil(rows / (per_device_batch * devices * int(cfg.train.accumulate_grad_batches)))
    return Plan(
        total=total,
        trainable=trainable,
        targets=matched_targets(model),
        layers=layers,
        hidden=hidden,
        intermediate=getattr(config, "intermediate_size", 4 * hidden),
        q_dim=heads * head_dim,
        kv_dim=kv_dim,
        weight_bytes=_frozen_bytes(model, cfg.backbone, cpu),
        batch=per_device_batch,
        max_length=lengths.longest if lengths else int(cfg.train.max_length),
        mean_tokens_per_step=round(
            per_device_batch * (row_tokens if lengths else min(row_tokens, cfg.train.max_length))
        ),
        rows_per_epoch=rows,
        steps_per_epoch=steps * int(cfg.train.accumulate_grad_batches),
        devices=devices,
        stage=stage,
        checkpointing=bool(cfg.train.get("gradient_checkpointing", False)),
        activation_bytes=4 if cpu else 2,
        dropout_inputs=_dropout_inputs(model, cfg.get("lora"), layers),
        eager_heads=_eager_heads(cfg.backbone, config),
    )


def report(cfg, plan: Plan, mfu: float, lengths: Lengths | None = None) -> str:
    """The plan as a person reads it: what was built, what matched, memory per GPU, FLOPs and time, and whether
    it fits each GPU."""
    full = cfg.backbone.get("finetune", "lora") == "full"
    row_tokens = plan.mean_tokens_per_step / int(cfg.train.batch_size)
    where = (
        f"the data's {lengths.rows:,} training rows ({lengths.how}): memory at its longest rows "
        f"({plan.max_length} tokens, prompt included), time at its mean row ({row_tokens:.0f} tokens)"
        if lengths
        else f"memory at the longest batch ({plan.max_length} tokens a row), time at {row_tokens:.0f} tokens a row "
        f"(--row-tokens, or --data to measure the training file; a prompt's own tokens come on top of both)"
    )
    lines = [
        f"backbone {cfg.backbone.name} ({cfg.backbone.get('hub_id')}), head={cfg.head.name}, "
        f"{'full fine-tuning' if full else f'LoRA r={cfg.lora.r}'}, strategy={cfg.strategy.name} on "
        f"{plan.devices} GPU(s)",
        f"parameters: {plan.total / 1e9:.2f} B, trainable {plan.trainable / 1e6:.1f} M "
        f"({100 * plan.trainable / plan.total:.2f}%)",
        "LoRA targets matched: " + (", ".join(f"{k} x{v}" for k, v in sorted(plan.targets.items())) or "none (full)"),
        f"per GPU step: batch {cfg.train.batch_size}, accumulation {cfg.train.accumulate_grad_batches}; {where}",
    ]
    for checkpointing in (False, True):
        memory = plan.memory_gb(checkpointing)
        total = sum(memory.values())
        parts = ", ".join(f"{k} {v:.1f}" for k, v in memory.items())
        fits = ", ".join(f"{gpu} {'fits' if total <= size * 0.9 else 'NO'}" for gpu, (size, _) in GPUS.items())
        label = "with gradient checkpointing" if checkpointing else "without gradient checkpointing"
        lines.append(f"memory per GPU {label}: {total:.1f} GB ({parts}); {fits}")
    flops = plan.flops_per_step(full) * int(cfg.train.accumulate_grad_batches)
    lines.append(
        f"FLOPs per optimizer step (all GPUs): {flops * plan.devices:.3g}; {plan.rows_per_epoch:,} rows per epoch"
    )
    for gpu, (_, peak) in GPUS.items():
        seconds = plan.flops_per_step(full) * plan.steps_per_epoch / (peak * mfu)
        lines.append(f"  {gpu}: {seconds / 3600:.2f} h per epoch per fold at {mfu:.0%} MFU")
    return "\n".join(lines)


def check_fits(cfg) -> None:
    """At the start of a GPU run (train.py): a hub backbone whose planned memory per GPU exceeds what the visible
    GPU holds is refused before any weight is loaded, with only the changes the plan shows would fit. Planned at the
    training file's longest rows when it can be read (the competition's rows are far shorter than train.max_length),
    else at train.max_length. Nothing to check on CPU, or for a backbone without published dimensions."""
    if not torch.cuda.is_available() or cfg.backbone.get("architecture") is None:
        return
    lengths = readable_lengths(cfg)
    planned = make_plan(cfg, rows=1, lengths=lengths)
    have = torch.cuda.get_device_properties(0).total_memory / 1e9
    need = sum(planned.memory_gb().values())
    if need <= FITS * have:
        return
    ways = ways_to_fit(cfg, planned, have)
    fix = (
        "; or ".join(ways)
        if ways
        else "no setting the planner knows makes it fit: lower train.max_length (the longest batch sets the peak) or "
        "use a GPU with more memory"
    )
    at = f"its longest rows ({planned.max_length} tokens)" if lengths else f"{cfg.train.max_length} tokens"
    raise ConfigError(
        f"backbone={cfg.backbone.name} at batch {cfg.train.batch_size} x {at} needs about {need:.0f} GB per GPU and "
        f"{torch.cuda.get_device_name(0)} has {have:.0f} GB; {fix}. `relevance plan --data` shows the options."
    )


FITS = 0.95  # of a GPU's memory a run may plan to use at start (the report's "fits" keeps 10%)


def readable_lengths(cfg) -> Lengths | None:
    """The training rows' real lengths when the files can be read here, else None (planned at train.max_length)."""
    from relevance.errors import RelevanceError

    try:
        return data_lengths(cfg)
    except (RelevanceError, OSError):
        return None


def ways_to_fit(cfg, planned: Plan, have: float) -> list[str]:
    """The changes that make `planned` fit `have` GB, each checked against the memory model (never advice the plan
    itself shows does not fit): gradient checkpointing alone, else a smaller batch with more accumulation, 4-bit
    weights, or ZeRO-3 over more GPUs (activations are not sharded, so ZeRO-3 helps only where weights are the
    load), each without gradient checkpointing where that fits, else with it."""
    from dataclasses import replace

    def gb(plan: Plan) -> float:
        return sum(plan.memory_gb().values())

    checkpointed = replace(planned, checkpointing=True)
    if not planned.checkpointing and gb(checkpointed) <= FITS * have:
        return [f"set train.gradient_checkpointing=true (about {gb(checkpointed):.0f} GB)"]
    bases = [(planned, "")] + ([] if planned.checkpointing else [(checkpointed, "train.gradient_checkpointing=true ")])

    def first_fit(changes) -> str | None:
        """The first (plan, overrides) of `changes(base)` that fits, over the bases; as advice."""
        for base, switch in bases:
            for changed, overrides in changes(base):
                if gb(changed) <= FITS * have:
                    return f"set {switch}{overrides} (about {gb(changed):.0f} GB per GPU)"
        return None

    accumulation = int(cfg.train.accumulate_grad_batches)
    smaller = lambda base: (  # noqa: E731
        (
            replace(base, batch=b),
            f"train.batch_size={b} train.accumulate_grad_batches={accumulation * planned.batch // b} (the same rows "
            f"per step)",
        )
        for b in (planned.batch // 2**k for k in range(1, planned.batch.bit_length()))
    )
    ways = [first_fit(smaller)]
    if cfg.backbone.get("finetune", "lora") == "lora" and cfg.backbone.get("quantization") != "4bit":
        nf4 = make_plan(_with(cfg, "backbone.quantization", "4bit"), rows=1).weight_bytes
        ways.append(first_fit(lambda base: [(replace(base, weight_bytes=nf4), "backbone.quantization=4bit (QLoRA)")]))
    if cfg.head.name == "classifier" and planned.stage != 3:  # the heads ZeRO-3 is not refused for
        ways.append(
            first_fit(
                lambda base: (
                    (replace(base, stage=3, devices=n), f"strategy=deepspeed_stage_3 strategy.devices={n}")
                    for n in (2, 4, 8)
                )
            )
        )
    return [way for way in ways if way]


def _with(cfg, key: str, value):
    """A copy of `cfg` with one key changed."""
    changed = cfg.copy()
    OmegaConf.update(changed, key, value)
    return changed


def kept_for_backward(model, forward) -> int:
    """Bytes of the tensors autograd keeps while `forward()` runs, the model's weights (and views of them)
    excluded and shared storage counted once: the activations the plan's memory model estimates, measured
    without the allocator's noise."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        forward()
    return sum(storages.values())
