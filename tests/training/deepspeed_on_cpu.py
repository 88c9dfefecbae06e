"""`train.py` under DeepSpeed on CPU ranks: DeepSpeed's own CPU accelerator (gloo), with only Lightning's
CUDA-only check skipped. Everything else is the real thing: the ZeRO engine, its parameter shards, their gather."""

import os
import sys
from pathlib import Path

os.environ["DS_ACCELERATOR"] = "cpu"
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lightning.pytorch.strategies.deepspeed as lightning_deepspeed  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy  # noqa: E402


def _setup_environment_on_cpu(self):
    DDPStrategy.setup_environment(self)  # Lightning's refusal of a non-CUDA accelerator is the one step skipped


DeepSpeedStrategy.setup_environment = _setup_environment_on_cpu
lightning_deepspeed._validate_device_index_selection = lambda devices: None  # CPU devices have no index to check
# DeepSpeed reads its rank's device index from Lightning's root device; a CPU device carries it without effect
DeepSpeedStrategy.root_device = property(lambda self: torch.device("cpu", self.local_rank))
_default_config = DeepSpeedStrategy._create_default_config


def _sharding_every_tensor(self, *args, **kwargs):
    """ZeRO-3 keeps tensors under 100k elements whole on every rank; a tiny model's would all stay whole, so here
    every tensor is sharded, as a 12B model's large ones are."""
    config = _default_config(self, *args, **kwargs)
    if "zero_optimization" in config:
        config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    return config


DeepSpeedStrategy._create_default_config = _sharding_every_tensor

script = ROOT / "train.py"
exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__main__", "__file__": str(script)})
