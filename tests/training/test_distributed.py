"""Several ranks in one run, on CPU: two gloo processes started by Lightning (as on one multi-GPU machine)."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_demo

ROOT = Path(__file__).resolve().parents[2]


def _without_rendezvous(environ) -> dict:
    """The environment minus an earlier in-process DDP run's rendezvous (MASTER_PORT is still bound by this pytest
    process when tests/model ran a one-device DDP run first), so Lightning picks a free port for the new ranks."""
    names = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
    return {key: value for key, value in environ.items() if key not in names}


TWO_SMALL_RANKS = [
    *tiny_demo(120, dev=40, test=20),
    "strategy=ddp",
    "strategy.devices=2",
    "train.epochs=1",
    "progress=false",
    "train.require_learning=false",
]


def _two_ranks(script: str, overrides: list[str], cwd, cache_dir, timeout=600, **env) -> dict:
    """The command and keyword arguments of `script` (under the repository root) on two gloo ranks."""
    return dict(
        args=[sys.executable, str(ROOT / script), *TWO_SMALL_RANKS, *overrides, f"paths.cache={cache_dir}"],
        cwd=cwd,
        text=True,
        timeout=timeout,
        env={**_without_rendezvous(os.environ), "OMP_NUM_THREADS": "1", **env},
    )


def test_two_ranks_train_and_score_one_run_and_only_rank_zero_logs(tmp_path, cache_dir):
    """Issue 28, item 2a: odd batch counts to score, with a collective in every scoring forward as under ZeRO-3
    (tests/training/collective_in_every_forward.py): every rank scores as many batches (it hung before), and every
    row is scored once."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "training" / "collective_in_every_forward.py"),
            *tiny_demo(240, dev=78, test=52, folds=2),
            "strategy=ddp",
            "strategy.devices=2",
            "train.eval_batch_size=11",  # odd batch counts to score: ranks get equal counts by repeating batches
            "progress=false",
            "train.require_learning=false",
            f"paths.cache={cache_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_without_rendezvous(os.environ), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["relevance"])
    assert list(runs["tags.relevance.level"].value_counts().sort_index().items()) == [("fold", 2), ("parent", 1)]
    parent = runs[runs["tags.relevance.level"] == "parent"].iloc[0]
    client = MlflowClient()
    oof = json.loads(Path(client.download_artifacts(parent["run_id"], "oof_scores.json", str(tmp_path))).read_text())
    scores = np.array([row[oof["columns"].index("score")] for row in oof["data"]], dtype=float)
    assert len(scores) == parent["metrics.rows_train"] and np.isfinite(scores).all()  # both ranks' shares gathered
    folds = runs[runs["tags.relevance.level"] == "fold"]
    assert any(-(-rows // 11) % 2 for rows in [*folds["metrics.rows_validation"], 78])  # some odd count was scored
    bundle = client.list_artifacts(parent["run_id"])
    assert parent["tags.relevance.model_uri"] and bundle


@pytest.mark.parametrize("rank", ["1", "0"])
def test_a_failure_on_one_rank_of_a_multirun_ends_every_rank_at_once(tmp_path, cache_dir, rank):
    """Issue 28, item 3: two gloo ranks under `-m`, a fault raised on one rank only after fold 0's collectives. The
    other rank waits in fold 1's collectives for it; it must end at once (Lightning's watcher polls every 5 s), not
    at the collective timeout (30 minutes), and the multirun must not go on to job 1 with half its ranks."""
    started = time.monotonic()
    result = subprocess.run(
        **_two_ranks(
            "tests/training/fault_on_one_rank.py",
            ["-m", "seed=1,2", "split.n_folds=2"],
            tmp_path,
            cache_dir,
            RELEVANCE_TEST_FAULT_RANK=rank,
        ),
        capture_output=True,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert f"injected fault on rank {rank}" in result.stderr, result.stderr[-3000:]
    assert elapsed < 300, elapsed  # one job's start-up and first fold, not a collective timeout
    assert "multirun: 2 job(s)" not in result.stderr  # job 1 never ran with half its ranks
    if rank == "0":  # rank 0 ended the rank it started, recorded the job and printed the table
        assert "error on rank 0; ended the 1 rank(s) it started still running" in result.stderr
        assert "multirun: 1 job(s), 0 finished, 1 failed" in result.stderr and result.returncode == 1
    else:  # rank 1 said why and exited; Lightning's watcher on rank 0 ended it
        assert "error on rank 1: injected fault on rank 1; ending every rank" in result.stderr


def test_tapt_on_two_ranks_starts_every_rank_from_the_same_stage_one_adapter(tmp_path, cache_dir):
    """Issue 28, item 1: rank 0 alone saves stage 1's adapter, in its own scratch folder; rank 1 must get the same
    files (it used to point fold 0 at an empty folder and fail after the whole stage-1 epoch)."""
    result = subprocess.run(
        **_two_ranks("train.py", ["tapt=from_other_task", "tapt.max_rows=60", "split.n_folds=2"], tmp_path, cache_dir),
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    digests = dict(
        re.findall(
            r"rank (\d): the folds start from TAPT stage 1's adapter, digest (\w+)", result.stdout + result.stderr
        )
    )
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], result.stderr[-3000:]


def _two_rank_run(tmp_path, cache_dir, kill_at: str | None = None) -> subprocess.CompletedProcess | None:
    """`train.py` on two gloo ranks with 3 folds; with `kill_at`, rank 0 and the rank it started are killed -9 when
    both have printed that line (as a preempted machine would be)."""
    import psutil

    overrides = ["split.n_folds=3", "tracking.log_model=false"]
    run = _two_ranks("train.py", overrides, tmp_path, cache_dir)
    if kill_at is None:
        return subprocess.run(**run, capture_output=True)
    run.pop("timeout")
    process = subprocess.Popen(**run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = 0
    for line in process.stdout:
        seen += kill_at in line
        if seen == 2:  # printed by both ranks: rank 0 prints it once its previous fold is FINISHED in the store
            break
    ranks = [process.pid] + [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)
    return None


def _fold_metrics(tmp_path) -> tuple[dict, float, str]:
    """Each finished fold run's best F1 (by name), the newest parent's out-of-fold F1 and its id."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["relevance"])
    parent = runs[runs["tags.relevance.level"] == "parent"].sort_values("start_time").iloc[-1]
    folds = runs[(runs["tags.mlflow.parentRunId"] == parent["run_id"]) & (runs["status"] == "FINISHED")]
    return dict(zip(folds["tags.relevance.fold"], folds["metrics.best_f1"], strict=True)), parent, runs


def test_a_killed_two_rank_run_resumes_its_unfinished_folds_only(tmp_path, cache_dir):
    """Issue 28, item 7: two gloo ranks, killed -9 while fold 2 of 3 trains; the rerun reuses fold 1 on both ranks
    (rank 1 reads rank 0's finished folds), trains folds 2-3, and ends with the metrics of an uninterrupted run."""
    (tmp_path / "killed").mkdir()
    (tmp_path / "whole").mkdir()
    _two_rank_run(tmp_path / "killed", cache_dir, kill_at="fold 2/3: training")
    rerun = _two_rank_run(tmp_path / "killed", cache_dir)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    said = rerun.stdout + rerun.stderr
    assert "its finished folds are reused" in said and "rank 1: rank 0's finished folds are reused" in said
    assert said.count("fold 1/3: finished before the interruption; reused") == 2  # on both ranks
    resumed, parent, runs = _fold_metrics(tmp_path / "killed")
    assert (runs["tags.relevance.level"] == "parent").sum() == 1 and parent["status"] == "FINISHED"
    fold_0 = runs[runs["tags.relevance.fold"] == "fold-0"]
    assert len(fold_0) == 1  # trained once, before the kill
    whole = _two_rank_run(tmp_path / "whole", cache_dir)
    assert whole.returncode == 0, whole.stderr[-4000:]
    uninterrupted, whole_parent, _ = _fold_metrics(tmp_path / "whole")
    assert resumed == uninterrupted and len(resumed) == 3
    assert parent["metrics.oof_best_f1"] == whole_parent["metrics.oof_best_f1"]


ZERO_3_ON_CPU = ["strategy=deepspeed_stage_3", "strategy.needs=[deepspeed]"]  # DeepSpeed's CPU accelerator, gloo


def test_zero_three_on_two_cpu_ranks_scores_every_row_and_logs_whole_adapters_that_score_alike(tmp_path, cache_dir):
    """Issue 28, items 2a and 2b, under DeepSpeed's own ZeRO-3 (tests/training/deepspeed_on_cpu.py: only Lightning's
    CUDA checks are skipped, and every tensor is sharded): odd batch counts to score do not hang, every row is
    scored once, and the adapters are gathered before saving, so the logged model scores dev as the sharded
    models did (each fold's dev scores, saved when it finished, averaged)."""
    pytest.importorskip("deepspeed")
    result = subprocess.run(
        **_two_ranks(
            "tests/training/deepspeed_on_cpu.py",
            [*ZERO_3_ON_CPU, "split.n_folds=2", "train.eval_batch_size=11", "data.demo.dev_rows=39"],
            tmp_path,
            cache_dir,
            timeout=300,
        ),
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    _, parent, runs = _fold_metrics(tmp_path)
    client = MlflowClient()
    oof = json.loads(Path(client.download_artifacts(parent["run_id"], "oof_scores.json", str(tmp_path))).read_text())
    assert len(oof["data"]) == parent["metrics.rows_train"]  # both ranks' shares, each row once
    fold_dev = []
    for run_id in runs[runs["tags.relevance.level"] == "fold"]["run_id"]:
        with np.load(client.download_artifacts(run_id, "checkpoint/scores.npz", str(tmp_path / run_id))) as saved:
            fold_dev.append(saved["arr_1"])
    (dev_file,) = cache_dir.glob("demo/*-tr120-dv39-*/dev_QC.txt")
    dev = pd.read_json(dev_file, lines=True)
    scorer = mlflow.pyfunc.load_model(parent["tags.relevance.model_uri"]).unwrap_python_model().scorer
    served = scorer.predict(list(zip(dev["origin_query"], dev["category_path"], strict=True)))
    assert np.allclose(served, np.mean(fold_dev, axis=0), atol=1e-5)  # unsharded on one process, as trained


def _deepspeed_run(folder, cache_dir, kill_when: str | None = None) -> subprocess.CompletedProcess | None:
    """`train.py` under ZeRO-3 on two CPU ranks, 3 folds, progress saved after (nearly) every step; with
    `kill_when` (a glob under `folder`), both ranks are killed -9 once that file exists."""
    import psutil

    overrides = [*ZERO_3_ON_CPU, *tiny_demo(240, folds=3, backbone=None), "train.epochs=3"]
    overrides += ["train.checkpoint_minutes=0.001", "tracking.log_model=false"]
    run = _two_ranks("tests/training/deepspeed_on_cpu.py", overrides, folder, cache_dir)
    if kill_when is None:
        return subprocess.run(**run, capture_output=True)
    run.pop("timeout")
    process = subprocess.Popen(**run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while not list(folder.glob(kill_when)):
        assert process.poll() is None and time.monotonic() - started < 300, f"no {kill_when} was written"
        time.sleep(0.05)
    for pid in [process.pid] + [child.pid for child in psutil.Process(process.pid).children(recursive=True)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)
    return None


def test_a_zero_three_run_killed_mid_fold_continues_that_fold_from_its_sharded_checkpoint(tmp_path, cache_dir):
    """Issue 28, item 7: DeepSpeed's own checkpoint (a folder of each rank's shards, through Lightning's
    checkpointing) is the fold's progress; killed -9 in fold 2 of 3 once one was saved whole, the rerun reuses
    fold 1, continues fold 2 from that step on both ranks, and ends with an uninterrupted run's fold metrics."""
    pytest.importorskip("deepspeed")
    (tmp_path / "killed").mkdir()
    (tmp_path / "whole").mkdir()
    _deepspeed_run(tmp_path / "killed", cache_dir, kill_when="checkpoints/*/fold-1/last.ckpt.complete")
    saved = next((tmp_path / "killed").glob("checkpoints/*/fold-1/last.ckpt"))
    assert saved.is_dir() and {path.name for path in saved.rglob("*.pt")} >= {
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    }  # one shard per rank: the sharded optimizer, not one rank's copy
    rerun = _deepspeed_run(tmp_path / "killed", cache_dir)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    said = rerun.stdout + rerun.stderr
    assert said.count("fold 1/3: finished before the interruption; reused") == 2  # on both ranks
    steps = re.findall(r"fold 2/3: continuing from its checkpoint at step (\d+)", said)
    assert len(steps) == 2 and steps[0] == steps[1] and int(steps[0]) > 0, said[-3000:]
    assert not (tmp_path / "killed" / "checkpoints").exists()  # a finished run keeps no progress
    resumed, parent, _ = _fold_metrics(tmp_path / "killed")
    whole = _deepspeed_run(tmp_path / "whole", cache_dir)
    assert whole.returncode == 0, whole.stderr[-4000:]
    uninterrupted, whole_parent, _ = _fold_metrics(tmp_path / "whole")
    assert resumed == uninterrupted and len(resumed) == 3
    assert parent["metrics.oof_best_f1"] == whole_parent["metrics.oof_best_f1"]
