"""The sweep's parts on their own: failure reasons, the per-fold objective, resuming rules, storage errors, and
what a trial needs of a distributed run."""

import numpy as np
import optuna
import pytest
import sqlalchemy
import torch

from relevance.errors import ConfigError, TrainingDiverged
from relevance.evaluation import metrics
from relevance.runtime import resolve_runtime
from relevance.sweep.study import counts, failure_reason, open_storage, open_study, release_locks
from relevance.sweep.trial import connect, objective_so_far
from tests.conftest import compose_strategy, compose_train


@pytest.mark.parametrize(
    "error, reason",
    [
        (TrainingDiverged("the training loss became nan at step 3"), "diverged: the training loss became nan"),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory: CUDA out of"),
        (MemoryError(), "out of memory: MemoryError"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"), "RuntimeError: Default"),
        (ConfigError("train.scheduler='x' is not known"), "error: train.scheduler='x' is not known"),
        (ValueError("bad\nsecond line"), "ValueError: bad"),
    ],
)
def test_failure_reasons_name_the_cause_in_one_line(error, reason):
    found = failure_reason(error)
    assert found.startswith(reason) and "\n" not in found


def test_objective_so_far_ignores_unscored_folds_and_ends_at_the_final_objective():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.6).astype(int)
    scores = np.clip(rng.normal(0.4 + 0.3 * labels, 0.2), 0, 1)
    tasks = np.array(["QC"] * 200 + ["QI"] * 200)
    partial = scores.copy()
    partial[100:200] = np.nan
    partial[300:] = np.nan
    qc_half = metrics.best_f1_threshold(labels[:100], scores[:100]).f1
    qi_half = metrics.best_f1_threshold(labels[200:300], scores[200:300]).f1
    assert objective_so_far("qc_oof_best_f1", labels, partial, tasks) == pytest.approx(qc_half)
    assert objective_so_far("oof_best_f1", labels, partial, tasks) == pytest.approx((qc_half + qi_half) / 2)
    full = [metrics.best_f1_threshold(labels[t], scores[t]).f1 for t in (slice(0, 200), slice(200, 400))]
    assert objective_so_far("oof_best_f1", labels, scores, tasks) == pytest.approx(np.mean(full))


def test_a_study_resumes_only_under_the_same_overrides(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    first, created = open_study(storage, "s", None, ["+hparams_search=lr", "backbone=tiny", "progress=false"])
    assert created
    again, created = open_study(
        storage,
        "s",
        None,
        ["backbone=tiny", "+hparams_search=lr", "progress=true", "sweep.storage=x", "hydra.sweeper.n_trials=50"],
    )
    assert not created and again.study_name == first.study_name  # order and neutral keys do not matter
    with pytest.raises(ConfigError, match=r"sweep.study=s was started with the overrides .* sweep.study=<new name>"):
        open_study(storage, "s", None, ["+hparams_search=lr", "backbone=gemma3_270m"])
    assert counts(again) == {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0, "running": 0, "waiting": 0}


def test_released_locks_free_the_store_that_an_interrupted_write_held(tmp_path):
    """A signal inside a trial's write once left its session holding sqlite's lock: the sweeper's cleanup waited the
    60 s timeout, failed, and left the trial RUNNING (CI, SIGINT at 14.5 s of a sweep)."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    interrupted = open_storage(url)
    study, _ = open_study(interrupted, "s", None, [])
    session = interrupted.scoped_session()
    session.execute(sqlalchemy.text("UPDATE studies SET study_name = study_name"))  # a write never committed
    sweeper = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 0.2}})
    with pytest.raises(optuna.exceptions.StorageInternalError):
        sweeper.set_study_user_attr(study._study_id, "marked", True)
    release_locks()
    sweeper.set_study_user_attr(study._study_id, "marked", True)
    assert optuna.load_study(study_name="s", storage=url).user_attrs["marked"] is True


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "postgresql://user@db-host/optuna",
            r"needs its database driver; install it with `pip install -e .\[postgres\]`",
        ),
        ("nonsense://x", "cannot be opened"),
    ],
)
def test_storage_mistakes_are_one_sentence(url, message):
    with pytest.raises(ConfigError, match=message):
        open_storage(url)


def test_several_devices_need_a_distributed_strategy_and_a_launcher(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="needs a distributed strategy; use strategy=ddp"):
        resolve_runtime(compose_strategy("auto"), "auto", "float32", devices=2)
    with pytest.raises(ConfigError, match="strategy.devices=0 must be an integer >= 1"):
        resolve_runtime(compose_strategy("ddp"), "auto", "float32", devices=0)
    assert resolve_runtime(compose_strategy("ddp"), "auto", "float32", devices=2, num_nodes=2).world_size == 4
    cfg = compose_train(
        ["backbone=tiny", "strategy=ddp", "strategy.devices=2", "sweep.trial=0", "sweep.study=s"], tmp_path, cache_dir
    )
    with pytest.raises(ConfigError, match="needs its ranks started by SLURM"):
        connect(cfg)
    with pytest.raises(ConfigError, match="sweep.metric=qc_oof_best_f1 picks one task of task=joint"):
        connect(
            compose_train(
                ["backbone=tiny", "sweep.trial=0", "sweep.study=s", "sweep.metric=qc_oof_best_f1"], tmp_path, cache_dir
            )
        )
