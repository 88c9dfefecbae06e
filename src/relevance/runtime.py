"""Accelerator, precision, load dtype and Lightning strategy, decided once before any work starts."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from relevance.errors import ConfigError

STRATEGIES = ("auto", "ddp", "deepspeed_stage_2", "deepspeed_stage_3", "deepspeed_stage_3_offload")


def inference_device() -> str:
    """Where one process scores or embeds outside Lightning: its GPU if it has one (serving, hard-negative
    embedding, translation)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Runtime:
    accelerator: str
    devices: int | str
    precision: str
    load_dtype: torch.dtype
    strategy_name: str
    num_nodes: int = 1

    @property
    def world_size(self) -> int:
        return int(self.devices) * self.num_nodes

    def strategy(self):
        """A fresh strategy object per Trainer: Lightning binds one to its accelerator."""
        return build_strategy(self.strategy_name, self.accelerator)


def weights_dtype(name: str, gpu: bool) -> torch.dtype:
    """The dtype to load a backbone in: `backbone.dtype` on a GPU; fp32 on a CPU, where bf16 matrix multiplies are
    several times slower."""
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if name not in dtypes:
        raise ConfigError(f"backbone.dtype={name!r} is not known; use bfloat16, float16 or float32.")
    return dtypes[name] if gpu else torch.float32


def build_strategy(name: str, accelerator: str):
    if name not in STRATEGIES:
        raise ConfigError(f"strategy.name={name!r} is not known; choose one of {', '.join(STRATEGIES)}.")
    if name.startswith("deepspeed"):
        if accelerator != "gpu":
            raise ConfigError(f"strategy={name} needs a CUDA GPU and this machine has none; "
                              f"use strategy=auto (or ddp) on CPU.")
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"strategy={name} needs DeepSpeed; install it with `pip install -e .[deepspeed]`.")
        from lightning.pytorch.strategies import DeepSpeedStrategy

        stage = 2 if name == "deepspeed_stage_2" else 3
        offload = name.endswith("_offload")
        return DeepSpeedStrategy(stage=stage, offload_optimizer=offload, offload_parameters=offload)
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=False)
    return "auto"


def global_rank() -> int:
    """This process's rank, from the launcher's environment (torchrun, SLURM, Lightning's own subprocesses)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def launched_per_rank() -> bool:
    """Whether an outside launcher (SLURM tasks, torchrun) started every rank, as opposed to Lightning starting
    the other ranks itself by re-running the command."""
    import os

    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def resolve_runtime(strategy_name: str, precision: str, backbone_dtype: str, devices: int = 1,
                    num_nodes: int = 1) -> Runtime:
    """GPU if there is one. bf16 weights and bf16-mixed precision on GPU; fp32 on CPU, where bf16 is slow.

    Several devices or nodes need a distributed strategy (ddp or deepspeed_*); on a CPU only ddp (gloo), which
    is how the multi-process path is tested without a GPU."""
    for key, value in (("strategy.devices", devices), ("strategy.num_nodes", num_nodes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key}={value!r} must be an integer >= 1.")
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    build_strategy(strategy_name, accelerator)  # refuse impossible strategies now, before any work
    if devices * num_nodes > 1 and strategy_name == "auto":
        raise ConfigError(f"strategy.devices={devices} x strategy.num_nodes={num_nodes} needs a distributed strategy; "
                          f"use strategy=ddp or strategy=deepspeed_stage_2.")
    if accelerator == "gpu" and devices > torch.cuda.device_count() and num_nodes == 1:
        raise ConfigError(f"strategy.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s).")
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" and torch.cuda.is_bf16_supported() else "32-true"
    load_dtype = weights_dtype(backbone_dtype, accelerator == "gpu")
    return Runtime(accelerator, devices, precision, load_dtype, strategy_name, num_nodes)
