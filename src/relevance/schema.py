"""The typed shape of `conf/train.yaml` and `conf/predict.yaml`, registered with Hydra's ConfigStore and named first
in their defaults lists: Hydra checks every value's type (and that the key exists) while it composes the config,
before any work. Ranges and combinations are `relevance.checks`' job. The config groups (backbone, data, head, ...)
stay open (`Any`): each group's YAML files are the schema of their own keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class Threshold:
    method: str = "exact"
    value: Optional[float] = None
    per_language: bool = False
    min_language_rows: int = 100
    refit: str = "folds"
    unseen: str = "shared"
    optuna_trials: int = 100


@dataclass
class Paths:
    root: str = MISSING
    cache: str = MISSING
    checkpoints: str = MISSING


@dataclass
class Clean:
    lowercase: bool = True
    category_order: str = "root_first"


@dataclass
class Lora:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0


@dataclass
class Train:
    epochs: int = 2
    batch_size: int = 16
    eval_batch_size: int = 32
    accumulate_grad_batches: int = 1
    lr: float = 5.0e-4
    head_lr: Any = "auto"  # auto | a number | null
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    gradient_clip: Optional[float] = 1.0
    max_length: int = 64
    gradient_checkpointing: bool = False
    dropout: bool = False
    wise_ft: float = 1.0
    precision: str = "auto"
    limit_train_batches: Any = None  # Lightning's: a number of batches (int) or a fraction (float)
    num_workers: int = 0
    checkpoint_minutes: Optional[float] = 10.0
    log_every_n_steps: Optional[int] = 10
    require_learning: bool = True
    refit: bool = False
    folds_trained: Optional[int] = None


@dataclass
class Tracking:
    uri: Optional[str] = None
    artifact_root: Optional[str] = None
    experiment: str = "relevance"
    run_name: str = MISSING
    log_model: bool = True
    system_metrics: bool = False
    min_free_gb: float = 5.0


@dataclass
class Sweep:
    study: Optional[str] = None
    storage: Optional[str] = None
    metric: str = "oof_best_f1"
    register_champion: bool = True
    trial: Optional[int] = None
    parent_run: Optional[str] = None
    pruner: Any = None  # sweep/pruner group: an Optuna pruner to instantiate


@dataclass
class Distill:
    teachers: list[str] = field(default_factory=list)
    ensemble: str = "auto"
    scores: str = "out_of_fold"


@dataclass
class Register:
    name: Optional[str] = None
    alias: str = "champion"


@dataclass
class TrainConfig:
    """`python train.py`: one cross-validated training run (or one trial of a sweep)."""

    task: Any = MISSING
    data: Any = MISSING
    backbone: Any = MISSING
    head: Any = MISSING
    augmentation: Any = field(default_factory=dict)
    translator: Any = MISSING
    split: Any = MISSING
    tapt: Any = MISSING
    strategy: Any = MISSING
    seed: int = 42
    threshold: Threshold = field(default_factory=Threshold)
    resume: str = "auto"
    progress: bool = True
    evaluate_dev: bool = True
    paths: Paths = field(default_factory=Paths)
    clean: Clean = field(default_factory=Clean)
    lora: Lora = field(default_factory=Lora)
    train: Train = field(default_factory=Train)
    tracking: Tracking = field(default_factory=Tracking)
    sweep: Sweep = field(default_factory=Sweep)
    register: Register = field(default_factory=Register)
    distill: Distill = field(default_factory=Distill)


@dataclass
class PredictPaths:
    root: str = MISSING
    cache: str = MISSING


@dataclass
class PredictConfig:
    """`python predict.py`: a logged model scoring one data file into a submission."""

    data: Any = MISSING
    model: Optional[str] = None
    file: str = "test"
    output_dir: str = "submissions"
    ensemble: str = "auto"
    translations: Optional[str] = None
    threshold: Optional[float] = None
    batch_size: Optional[int] = None
    progress: bool = True
    trust_remote_code: bool = False
    tracking_uri: Optional[str] = None
    paths: PredictPaths = field(default_factory=PredictPaths)


def register() -> None:
    """Make `train_schema` and `predict_schema` known to Hydra (train.py and predict.py call this first)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="predict_schema", node=PredictConfig)
