"""Optuna sweeps through Hydra on the tiny backbone, as a user runs them: `python train.py -m +hparams_search=...`
in a subprocess, against a real sqlite study and a real MLflow store."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.conftest import tiny_demo

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    *tiny_demo(240, dev=78, test=52, folds=3),
    "progress=false",
    "train.require_learning=false",
]


def sweep_command(cache_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "+hparams_search=lr",
        *SMALL,
        f"paths.cache={cache_dir}",
        *overrides,
    ]


def run_sweep(tmp_path: Path, cache_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(cache_dir, *overrides), cwd=tmp_path, capture_output=True, text=True, timeout=900
    )


def load(tmp_path: Path, name: str = "lr-qc-tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/sweeps/optuna.db")


def runs(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return mlflow.search_runs(experiment_names=["relevance"])


def test_interrupted_sweep_resumes_and_retries_the_interrupted_trial(tmp_path, cache_dir):
    command = sweep_command(cache_dir, "hydra.sweeper.n_trials=4", "sweep/pruner=none")
    # A shell that started the tests in the background ignores SIGINT, and children inherit that: restore it.
    worker = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    for line in worker.stdout:  # Ctrl-C while trial 1 trains its second fold
        seen.append(line)
        if "fold 2/3" in line and any("trial 1:" in earlier and "lr=" in earlier for earlier in seen):
            worker.send_signal(signal.SIGINT)
            break
    rest, _ = worker.communicate(timeout=300)
    assert worker.returncode == 130, "".join(seen) + rest
    assert "run the same command again" in rest
    interrupted = load(tmp_path).trials
    assert [t.state for t in interrupted] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert interrupted[1].user_attrs["fail_reason"].startswith("interrupted")
    # one line says what happened and what to do; an interrupted sweep crowns nothing (issue 30, items 1 and 2)
    assert (
        rest.count(
            "interrupted by SIGINT during training; the sweep's runs are marked KILLED and no champion is "
            "registered; run the same command again to resume study lr-qc-tiny"
        )
        == 1
    ), rest
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert not MlflowClient().search_registered_models("name = 'relevance-qc'")

    resumed = run_sweep(tmp_path, cache_dir, "hydra.sweeper.n_trials=4", "sweep/pruner=none")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = load(tmp_path).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 5 and len(complete) == 4  # 4 finished + the interrupted one, nothing started twice
    assert trials[2].params == interrupted[1].params  # the interrupted parameters were tried again first
    assert complete[0].number == 0 and complete[0].value == interrupted[0].value  # trial 0 was not redone
    best = max(complete, key=lambda t: t.value)
    assert load(tmp_path).best_value == best.value

    frame = runs(tmp_path)
    sweep_runs = frame[frame["tags.relevance.level"] == "sweep"]
    assert len(sweep_runs) == 1  # the resume continued the same MLflow parent run
    sweep_run = sweep_runs.iloc[0]
    assert sweep_run["status"] == "FINISHED" and sweep_run["metrics.trials_complete"] == 4
    assert sweep_run["metrics.best_value"] == pytest.approx(best.value)
    # issue 30, item 6: the sweep run says what it is, and the study names its objective for optuna-dashboard
    assert "maximizes `oof_best_f1` over 4 trials" in sweep_run["tags.mlflow.note.content"]
    assert sweep_run["params.metric"] == "oof_best_f1" and sweep_run["params.study"] == "lr-qc-tiny"
    assert load(tmp_path).metric_names == ["oof_best_f1"]
    trial_runs = frame[frame["tags.relevance.level"] == "parent"]
    assert set(trial_runs["tags.mlflow.parentRunId"]) == {sweep_run["run_id"]}
    states = dict(zip(trial_runs["tags.relevance.trial"], trial_runs["tags.relevance.trial_state"]))
    assert states == {"0": "COMPLETE", "1": "FAIL", "2": "COMPLETE", "3": "COMPLETE", "4": "COMPLETE"}
    failed = trial_runs[trial_runs["tags.relevance.trial"] == "1"].iloc[0]
    assert failed["status"] == "KILLED" and failed["tags.relevance.fail_reason"].startswith("interrupted")
    # the study's best trial is the one considered; the tiny random model sits at the demo's floor, so it is named
    # and not registered (the registering itself: tests/test_champion.py and tests/test_end_to_end.py)
    assert f"best trial {best.number} (run {best.user_attrs['mlflow_run_id']}) is not registered" in resumed.stdout
    assert not MlflowClient().search_registered_models("name = 'relevance-qc'")
    assert {a.path for a in MlflowClient().list_artifacts(sweep_run["run_id"], "study")} >= {
        "study/history.png",
        "study/trials.csv",
    }


# Seconds after the start at which a signal lands: start-up, the study's creation, trials' folds, Optuna's and
# MLflow's bookkeeping between trials (a trial of this sweep takes about 3 s on 2 cores, after about 8 s of start).
DELAYS = (2.0, 8.5, 10.0, 11.5, 13.0, 14.5, 16.0, 18.0, 21.0)


def test_a_signal_anywhere_in_a_sweep_stops_it_with_its_code_killed_runs_and_no_champion(tmp_path, cache_dir):
    """SIGTERM and SIGINT at many points of a tiny sweep: never ignored (once a SIGTERM swallowed in a finalizer let
    the sweep run every trial, register a champion and exit 0), one line saying how to resume, no traceback, no run
    left RUNNING or marked FINISHED for an interrupted trial, no trial left running, nothing registered."""
    outcomes = []
    for index, delay in enumerate(DELAYS):
        signum = signal.SIGTERM if index % 2 == 0 else signal.SIGINT
        folder = tmp_path / f"at-{delay}"
        folder.mkdir()
        worker = subprocess.Popen(
            sweep_command(cache_dir, "hydra.sweeper.n_trials=8", "sweep/pruner=none"),
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        time.sleep(delay)
        worker.send_signal(signum)
        output, _ = worker.communicate(timeout=300)
        where = f"{signal.Signals(signum).name} at {delay} s:\n{output[-3000:]}"
        assert worker.returncode == 128 + signum, where
        assert output.count("interrupted by") == 1 and "Traceback" not in output, where
        assert "Exception ignored" not in output and "registered as" not in output, where
        outcomes.append(output)
        if not (folder / "mlruns" / "mlflow.db").exists():
            continue  # stopped before the store was made: nothing to mark
        client = MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
        experiment = client.get_experiment_by_name("relevance")
        found = client.search_runs([experiment.experiment_id]) if experiment else []
        assert all(run.info.status != "RUNNING" for run in found), where
        assert not client.search_registered_models(), where
        for run in found:
            level, state = run.data.tags.get("relevance.level"), run.data.tags.get("relevance.trial_state")
            if level == "sweep":
                assert run.info.status == "KILLED", where
            elif level == "parent" and state != "COMPLETE":
                assert run.info.status == "KILLED", where
        storage = f"sqlite:///{folder}/sweeps/optuna.db"
        if (folder / "sweeps" / "optuna.db").exists() and optuna.get_all_study_names(storage):
            assert all(trial.state != TrialState.RUNNING for trial in load(folder).trials), where
    resumable = [text for text in outcomes if "to resume study lr-qc-tiny" in text]
    assert len(resumable) >= len(DELAYS) // 2, "too few signals landed inside the sweep itself"


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path, cache_dir):
    result = run_sweep(
        tmp_path,
        cache_dir,
        "hydra.sweeper.n_trials=2",
        "sweep/pruner=none",
        "hydra/sweeper/sampler=random",
        "train.warmup_ratio=0",
        "hydra.sweeper.max_failure_rate=1",
        "hydra.sweeper.params={train.lr: 'choice(1e-3, 1e6)'}",
        "sweep.register_champion=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(tmp_path).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and len(complete) == 2  # failures do not use up the budget of finished trials
    assert all(t.params["train.lr"] == 1e6 for t in failed)
    assert all(t.user_attrs["fail_reason"].startswith("diverged: the training loss became nan") for t in failed)
    frame = runs(tmp_path)
    reasons = frame.loc[frame["tags.relevance.trial_state"] == "FAIL", "tags.relevance.fail_reason"]
    assert len(reasons) == len(failed) and all(r.startswith("diverged") for r in reasons)


def test_too_many_failures_stop_the_sweep_with_one_line(tmp_path, cache_dir):
    result = run_sweep(
        tmp_path, cache_dir, "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.25", "train.scheduler=bogus"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: the sweep stopped: 2 trials failed")
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # 1 allowed (0.25 x 4), stopped at 2
    assert "train.scheduler='bogus' is not known" in trials[0].user_attrs["fail_reason"]


def test_a_trial_that_learned_nothing_is_set_aside_as_pruned_not_counted_as_a_failure(tmp_path, cache_dir):
    """The README's lr_lora sweep drew train.lr=7.3e-05 with one epoch first: a model that learned nothing, which
    is what a search finds out, not a broken setup; counted as a failure it stopped the sweep at once."""
    result = run_sweep(
        tmp_path,
        cache_dir,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0",
        "train.require_learning=true",  # the random tiny model learns nothing: every trial is such a trial
        "split.n_folds=2",
        "sweep/pruner=none",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert all(t.user_attrs["pruned_reason"].startswith("no fold learned") for t in trials)
    output = result.stdout + result.stderr
    assert "did not learn (set aside as pruned)" in output
    assert "no trial of study lr-qc-tiny completed; no champion registered" in output


@pytest.mark.parametrize("pruner, state, folds", [("median", TrialState.PRUNED, 1), ("none", TrialState.COMPLETE, 3)])
def test_a_hopeless_trial_is_pruned_after_its_first_fold(tmp_path, cache_dir, pruner, state, folds):
    """Three earlier trials reached F1 0.99 at every fold; the tiny random model cannot, so the median pruner
    stops it after fold 0. Without a pruner the same trial trains all folds."""
    study = optuna.create_study(
        study_name="lr-qc-tiny",
        storage=f"sqlite:///{tmp_path}/sweeps/optuna.db" if (tmp_path / "sweeps").mkdir() is None else None,
        direction="maximize",
    )
    lr = optuna.distributions.FloatDistribution(1e-5, 2e-3, log=True)
    for value in (1e-4, 2e-4, 3e-4):
        study.add_trial(
            optuna.trial.create_trial(
                params={"train.lr": value},
                distributions={"train.lr": lr},
                value=0.99,
                intermediate_values={0: 0.99, 1: 0.99, 2: 0.99},
            )
        )
    result = run_sweep(
        tmp_path, cache_dir, "hydra.sweeper.n_trials=4", f"sweep/pruner={pruner}", "sweep.register_champion=false"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trial = load(tmp_path).trials[3]
    assert trial.state == state
    assert sorted(trial.intermediate_values) == list(range(folds))
    frame = runs(tmp_path)
    run = frame[frame["tags.relevance.trial"] == "3"].iloc[0]
    assert run["status"] == ("KILLED" if state == TrialState.PRUNED else "FINISHED")
    assert (frame["tags.mlflow.parentRunId"] == run["run_id"]).sum() == folds  # one child run per fold trained
    sweep_run = frame[frame["tags.relevance.level"] == "sweep"].iloc[0]
    assert sweep_run["metrics.folds_saved_by_pruning"] == 3 - folds


def test_two_workers_share_one_study_without_duplicate_or_lost_trials(tmp_path, cache_dir):
    """Two `python train.py -m` processes on one storage, as two GPUs or two machines would run them (one CPU
    thread each: two workers spinning on each other's cores slow down many times over)."""
    command = sweep_command(cache_dir, "hydra.sweeper.n_trials=6", "sweep/pruner=none")
    workers = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    trials = load(tmp_path).trials
    assert all(t.state == TrialState.COMPLETE for t in trials)  # none lost (left running) or failed
    assert 6 <= len(trials) <= 7  # a worker may start one trial while the other finishes the last (documented)
    ran = [
        {int(line.split()[1].rstrip(",")) for line in output.splitlines() if line.startswith("trial ")}
        for output in outputs
    ]
    assert ran[0] and ran[1] and not ran[0] & ran[1]  # both worked, never on the same trial
    assert ran[0] | ran[1] == {t.number for t in trials}
    frame = runs(tmp_path)
    trial_runs = frame[frame["tags.relevance.level"] == "parent"]
    assert sorted(trial_runs["tags.relevance.trial"].astype(int)) == sorted(t.number for t in trials)
    assert (frame["tags.relevance.level"] == "sweep").sum() == 1  # one MLflow parent for both workers
    assert set(trial_runs["tags.mlflow.parentRunId"]) == set(
        frame.loc[frame["tags.relevance.level"] == "sweep", "run_id"]
    )


def test_local_parallel_launcher_runs_trials_side_by_side(tmp_path, cache_dir):
    result = run_sweep(
        tmp_path,
        cache_dir,
        "hydra/launcher=local_parallel",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "sweep/pruner=median",
        "sweep.register_champion=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    first, second = trials  # launched together: each started before the other ended
    assert first.datetime_start < second.datetime_complete and second.datetime_start < first.datetime_complete
    assert len(set(t.user_attrs["mlflow_run_id"] for t in trials)) == 2


def test_launcher_and_storage_configs_compose(tmp_path, cache_dir):
    from hydra import compose, initialize_config_dir
    from hydra.core.plugins import Plugins

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        slurm = compose(
            "train",
            overrides=[
                "+hparams_search=lr_lora",
                "hydra/launcher=slurm",
                "strategy=ddp",
                "strategy.devices=4",
                "strategy.num_nodes=2",
                "hydra.sweeper.n_jobs=3",
                "sweep.storage=postgresql://optuna@db-host/optuna",
            ],
            return_hydra_config=True,
        )
        local = compose(
            "train",
            overrides=[
                "+hparams_search=lr",
                "hydra/launcher=local_parallel",
                "hydra.sweeper.n_jobs=2",
                "sweep/pruner=hyperband",
            ],
            return_hydra_config=True,
        )
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node, launcher.array_parallelism) == (2, 4, 4, 3)
    assert slurm.sweep.storage.startswith("postgresql://") and slurm.hydra.sweeper.params["lora.r"]
    assert local.hydra.launcher._target_.endswith("JoblibLauncher") and local.hydra.launcher.n_jobs == 2
    assert local.sweep.pruner._target_ == "optuna.pruners.HyperbandPruner" and local.sweep.pruner.max_resource == 2
    for cfg in (slurm, local):  # the plugins these name are installed and accept the settings
        assert Plugins.instance().class_name_to_class[cfg.hydra.launcher._target_]
