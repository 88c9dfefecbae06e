"""Accelerator, precision, load dtype and Lightning strategy, decided once before any work starts."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import torch

from relevance.errors import ConfigError

log = logging.getLogger(__name__)


RANK_VARIABLES = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")  # torchrun/Lightning, srun, mpirun


def local_rank() -> int:
    """This process's rank on its machine, from whichever launcher started it (0 when none did). Under srun
    LOCAL_RANK is not set until Lightning sets it, after the models that load earlier have chosen a device."""
    import os

    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def inference_device() -> str:
    """Where this process puts a model outside Lightning (serving, hard-negative embedding, translation, the head
    learning-rate probe, 4-bit loading): its own GPU, `cuda:<local rank>`, never every rank's GPU 0."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{local_rank() % max(torch.cuda.device_count(), 1)}"


@dataclass(frozen=True)
class Runtime:
    accelerator: str
    devices: int | str
    precision: str
    load_dtype: torch.dtype
    strategy_cfg: object  # the `strategy` config (conf/strategy/*.yaml)
    num_nodes: int = 1

    @property
    def world_size(self) -> int:
        return int(self.devices) * self.num_nodes

    @property
    def strategy_name(self) -> str:
        return self.strategy_cfg.name

    def strategy(self):
        """A fresh strategy object per Trainer: Lightning binds one to its accelerator."""
        return build_strategy(self.strategy_cfg, self.accelerator)


def weights_dtype(name: str, gpu: bool) -> torch.dtype:
    """The dtype to load a backbone in: `backbone.dtype` on a GPU; fp32 on a CPU, where bf16 matrix multiplies are
    several times slower."""
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if name not in dtypes:
        raise ConfigError(f"backbone.dtype={name!r} is not known; use bfloat16, float16 or float32.")
    return dtypes[name] if gpu else torch.float32


def build_strategy(strategy, accelerator: str):
    """The Lightning strategy a `strategy` config names: "auto", or the object its `lightning` entry builds
    (`_target_`). Refused in one sentence when the machine lacks what the config `needs` (cuda, deepspeed)."""
    needs = list(strategy.get("needs") or [])
    if "cuda" in needs and accelerator != "gpu":
        raise ConfigError(
            f"strategy={strategy.name} needs a CUDA GPU and this machine has none; use strategy=auto (or ddp) on CPU."
        )
    if "deepspeed" in needs and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"strategy={strategy.name} needs DeepSpeed; install it with `pip install -e .[deepspeed]`.")
    lightning = strategy.get("lightning", "auto")
    if lightning in (None, "auto"):
        return "auto"
    from hydra.utils import instantiate

    return instantiate(lightning, _execution_whitelist_=("lightning.pytorch.strategies.*",))


def zero_stage(strategy) -> int:
    """The DeepSpeed ZeRO stage a `strategy` config names (0: none)."""
    from omegaconf import OmegaConf

    lightning = strategy.get("lightning")
    return int(lightning.get("stage", 0)) if OmegaConf.is_config(lightning) else 0


def distributed(strategy) -> bool:
    """Whether the strategy runs one process per device (anything but Lightning's single-device auto)."""
    return strategy.get("lightning", "auto") not in (None, "auto")


def global_rank() -> int:
    """This process's rank, from the launcher's environment (torchrun, SLURM, Lightning's own subprocesses)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def launched_per_rank() -> bool:
    """Whether an outside launcher (SLURM tasks, torchrun) started every rank, as opposed to Lightning starting
    the other ranks itself by re-running the command."""
    import os

    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def resolve_runtime(strategy, precision: str, backbone_dtype: str, devices: int = 1, num_nodes: int = 1) -> Runtime:
    """GPU if there is one. bf16 weights and bf16-mixed precision on GPU; fp32 on CPU, where bf16 is slow.

    Several devices or nodes need a distributed strategy (ddp or deepspeed_*); on a CPU only ddp (gloo), which
    is how the multi-process path is tested without a GPU."""
    for key, value in (("strategy.devices", devices), ("strategy.num_nodes", num_nodes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key}={value!r} must be an integer >= 1.")
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    build_strategy(strategy, accelerator)  # refuse impossible strategies now, before any work
    if devices * num_nodes > 1 and not distributed(strategy):
        raise ConfigError(
            f"strategy.devices={devices} x strategy.num_nodes={num_nodes} needs a distributed strategy; "
            f"use strategy=ddp or strategy=deepspeed_stage_2."
        )
    if accelerator == "gpu" and devices > torch.cuda.device_count() and num_nodes == 1:
        raise ConfigError(f"strategy.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s).")
    if devices * num_nodes == 1 and "deepspeed" in (strategy.get("needs") or []):
        log.warning(
            "strategy=%s on one device shards nothing: it measured 15-24%% slower than strategy=auto on an H100 "
            "(BENCHMARKS.md, GPU); use strategy=auto on one GPU, and DeepSpeed with "
            "strategy.devices >= 2.",
            strategy.name,
        )
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" and torch.cuda.is_bf16_supported() else "32-true"
    load_dtype = weights_dtype(backbone_dtype, accelerator == "gpu")
    return Runtime(accelerator, devices, precision, load_dtype, strategy, num_nodes)
