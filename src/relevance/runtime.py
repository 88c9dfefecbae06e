"""Accelerator, precision, load dtype and Lightning strategy, decided once before any work starts."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from relevance.errors import ConfigError

STRATEGIES = ("auto", "ddp", "deepspeed_stage_2", "deepspeed_stage_3", "deepspeed_stage_3_offload")


@dataclass(frozen=True)
class Runtime:
    accelerator: str
    devices: int | str
    precision: str
    load_dtype: torch.dtype
    strategy_name: str

    def strategy(self):
        """A fresh strategy object per Trainer: Lightning binds one to its accelerator."""
        return build_strategy(self.strategy_name, self.accelerator)


def _dtype(name: str) -> torch.dtype:
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if name not in dtypes:
        raise ConfigError(f"backbone.dtype={name!r} is not known; use bfloat16, float16 or float32.")
    return dtypes[name]


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


def resolve_runtime(strategy_name: str, precision: str, backbone_dtype: str) -> Runtime:
    """GPU if there is one. bf16 weights and bf16-mixed precision on GPU; fp32 on CPU, where bf16 is slow.

    One device per run for now: every rank would re-run the pipeline and its MLflow logging, and the
    out-of-fold scores are not yet gathered across ranks. DeepSpeed on one GPU still brings ZeRO offload."""
    devices = 1
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    build_strategy(strategy_name, accelerator)  # refuse impossible strategies now, before any work
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" and torch.cuda.is_bf16_supported() else "32-true"
    load_dtype = _dtype(backbone_dtype) if accelerator == "gpu" else torch.float32
    if accelerator == "cpu":
        devices = 1
    return Runtime(accelerator, devices, precision, load_dtype, strategy_name)
