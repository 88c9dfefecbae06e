import os
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


# Most tests check plumbing by training a random tiny model on a few rows, which need not learn; test_health checks
# that a run in which no fold learned fails by default.
PLUMBING = ["train.require_learning=false"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache per test session (tiny backbone, demo data), unless RELEVANCE_CACHE points at a warm one."""
    return Path(os.environ.get("RELEVANCE_CACHE") or tmp_path_factory.mktemp("cache"))


def compose_train(overrides: list[str], tmp_path: Path, cache_dir: Path):
    """The train config as `python train.py <overrides>` would see it, writing into tmp_path."""
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose(
            "train",
            overrides=[
                f"paths.root={tmp_path}",
                f"paths.cache={cache_dir}",
                "progress=false",
                f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
                *PLUMBING,
                *overrides,
            ],
        )
    return cfg


def compose_strategy(name: str):
    """The `strategy` config of `strategy=<name>`, as a run composes it (base file included)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose("train", overrides=[f"strategy={name}"]).strategy


def compose_predict(overrides: list[str], tmp_path: Path, cache_dir: Path):
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose(
            "predict",
            overrides=[
                f"paths.root={tmp_path}",
                f"paths.cache={cache_dir}",
                "progress=false",
                f"tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
                *overrides,
            ],
        )


def readme_commands() -> list[str]:
    """The README's bash blocks, one command per line (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands
