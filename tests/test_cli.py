"""User mistakes at the command line: one sentence on stderr, exit code 2, no stack trace."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PLUMBING, ROOT, tiny_demo


def run_cli(script, *args, tmp_path):
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    plumbing = PLUMBING if script == "train.py" else []
    return subprocess.run(
        [sys.executable, str(ROOT / script), f"paths.root={tmp_path}", *plumbing, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["data=competition"], "data=competition needs data.dir="),
        (["backbone=tiny", "strategy=deepspeed_stage_2"], "needs a CUDA GPU"),
        (["backbone=tiny", "task=qi", "split=category_aware"], "only QC rows have"),
    ],
)
def test_train_config_mistakes(tmp_path, args, words):
    if "deepspeed" in " ".join(args):
        import torch

        if torch.cuda.is_available():
            pytest.skip("has a GPU")
    result = run_cli("train.py", *args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()  # refused before anything was written


def test_train_names_the_bad_line_of_a_users_file(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    good = {"id": 1, "task": "QC", "language": "en", "origin_query": "baking", "category_path": "food", "label": 1}
    (folder / "train_QC.txt").write_text(json.dumps(good) + "\n" + json.dumps(good | {"id": 2, "label": 7}) + "\n")
    result = run_cli("train.py", "data=competition", f"data.dir={folder}", "backbone=tiny", tmp_path=tmp_path)
    assert result.returncode == 2
    assert f"{folder / 'train_QC.txt'}, line 2: label is 7" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([("baking", 1), ("flour", 1), ("cake", 1)], "every training row is labelled 1; a relevance model needs"),
        ([("baking", 0), ("flour", 0), ("cake", 0)], "every training row is labelled 0"),
        ([("  ", 1), (" ", 0)], "every row's query is empty after cleaning"),
    ],
)
def test_training_data_with_nothing_to_learn_is_refused_before_any_run(tmp_path, rows, words):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = [
        {"id": i, "task": "QC", "language": "en", "origin_query": q, "category_path": "food", "label": label}
        for i, (q, label) in enumerate(rows)
    ]
    (folder / "train_QC.txt").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli("train.py", "data=competition", f"data.dir={folder}", "backbone=tiny", tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{folder / 'train_QC.txt'}: {words}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns" / "artifacts").exists() or not any((tmp_path / "mlruns" / "artifacts").iterdir())


def test_predict_without_model_or_with_unknown_model(tmp_path):
    result = run_cli("predict.py", tmp_path=tmp_path)
    assert result.returncode == 2 and "needs model=" in result.stderr
    result = run_cli(
        "predict.py", "model=models:/nobody@champion", f"tracking_uri=sqlite:///{tmp_path}/m.db", tmp_path=tmp_path
    )
    assert result.returncode == 2 and f"there is no tracking store at {tmp_path}/m.db" in result.stderr
    assert not (tmp_path / "m.db").exists()  # a wrong path is named, not made into an empty store
    with_store(tmp_path / "m.db")
    result = run_cli(
        "predict.py", "model=models:/nobody@champion", f"tracking_uri=sqlite:///{tmp_path}/m.db", tmp_path=tmp_path
    )
    assert result.returncode == 2 and "model=models:/nobody@champion" in result.stderr
    assert "Traceback" not in result.stderr


def with_store(database):
    """A real, empty sqlite tracking store at `database`."""
    from relevance import tracking

    tracking.setup(f"sqlite:///{database}", "other", database.parent / "artifacts")


def test_predict_checks_its_output_folder_before_loading_the_model(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    result = run_cli("predict.py", "model=models:/nobody@champion", "output_dir=taken", tmp_path=tmp_path)
    assert result.returncode == 2 and "output_dir=taken is a file; give a folder" in result.stderr


def test_multirun_lands_as_comparable_runs_in_one_experiment(tmp_path):
    """`python train.py -m ...` (Hydra's sweeper): one parent run per job, all in the same MLflow experiment."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    result = run_cli(
        "train.py",
        "-m",
        *tiny_demo(120, dev=26, test=26, folds=2),
        "lora.r=2,4",
        "progress=false",
        "evaluate_dev=false",
        f"tracking.uri={uri}",
        f"paths.cache={tmp_path / 'cache'}",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["relevance"], filter_string="tags.`relevance.level` = 'parent'")
    assert sorted(runs["params.lora.r"]) == ["2", "4"]
    assert runs["metrics.oof_best_f1"].notna().all()
    assert len(list((tmp_path / "sweeps" / "multirun").glob("*/*/.hydra/config.yaml"))) == 2
    client = mlflow.tracking.MlflowClient()
    for run_id in runs["run_id"]:  # Hydra's record of each job travels with its run
        logged = {a.path for a in client.list_artifacts(run_id, "hydra")}
        assert {"hydra/overrides.yaml", "hydra/config.yaml", "hydra/train.log"} <= logged
        overrides = mlflow.artifacts.load_text(f"runs:/{run_id}/hydra/overrides.yaml")
        assert "lora.r=" in overrides
    folds = mlflow.search_runs(experiment_names=["relevance"], filter_string="params.`lora.r` = '2'")
    assert len(folds) == 3  # the parent and its two folds: fold runs carry the params too


def test_language_table_lists_seen_first_and_leaves_missing_cells_blank():
    from relevance.cli import language_table

    table = language_table(
        {
            "out-of-fold": [{"language": "ja", "f1": 0.9, "floor": 0.8, "rows": 50, "seen": True}],
            "dev": [
                {"language": "ar", "f1": 0.61, "floor": 0.75, "rows": 20, "seen": False},
                {"language": "ja", "f1": 0.85, "floor": 0.8, "rows": 20, "seen": True},
            ],
        }
    )
    header, _, ja, ar = table.splitlines()
    assert "out-of-fold F1 (floor)" in header and "dev F1 (floor)" in header
    assert ja.split()[:5] == ["ja", "yes", "0.900", "(0.800)", "n=50"] and "0.850 (0.800)" in ja
    assert ar.split()[:5] == ["ar", "no", "0.610", "(0.750)", "n=20"]  # no out-of-fold cell for an unseen language
    one = language_table(
        {"dev": [{"language": "pl", "f1": float("nan"), "floor": 1.0, "rows": 9, "seen": False, "one_label": True}]}
    )
    assert one.splitlines()[2].split() == ["pl", "no", "one", "label", "n=9"]  # no F1 against a floor of 1


def test_register_best_names_a_missing_store_or_experiment(tmp_path, capsys, monkeypatch):
    from relevance.cli import main

    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(SystemExit) as caught:
        main(["register", "--best", "--name", "x"])
    assert caught.value.code == 2 and "there is no tracking store at" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []  # nothing made where nothing was
    with_store(tmp_path / "m.db")
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "register",
                "--best",
                "--name",
                "x",
                "--experiment",
                "nope",
                "--tracking-uri",
                f"sqlite:///{tmp_path}/m.db",
            ]
        )
    assert caught.value.code == 2 and "no experiment named 'nope'" in capsys.readouterr().err


def test_predict_refuses_a_threshold_outside_0_1(tmp_path):
    result = run_cli("predict.py", "model=models:/x@champion", "threshold=1.5", tmp_path=tmp_path)
    assert result.returncode == 2 and "threshold=1.5 must be a number between 0 and 1" in result.stderr


def test_register_a_run_without_a_model_leaves_no_registered_model(tmp_path, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    from relevance.cli import main

    with_store(tmp_path / "m.db")
    uri = f"sqlite:///{tmp_path}/m.db"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=MlflowClient().get_experiment_by_name("other").experiment_id) as run:
        mlflow.log_metric("oof_best_f1", 0.5)  # a run, but no model (tracking.log_model=false)
    with pytest.raises(SystemExit) as caught:
        main(["register", "--run-id", run.info.run_id, "--name", "empty", "--tracking-uri", uri])
    assert caught.value.code == 2 and f"run {run.info.run_id} logged no model" in capsys.readouterr().err
    assert MlflowClient().search_registered_models("name = 'empty'") == []


def test_relevance_says_what_it_is_and_its_version(capsys):
    from relevance import __version__
    from relevance.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"relevance {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Model registry commands of the relevance harness" in capsys.readouterr().out


def test_train_and_predict_help_describe_the_command_with_examples(tmp_path):
    train = run_cli("train.py", "--help", tmp_path=tmp_path)
    assert train.returncode == 0 and train.stdout.startswith("train.py: cross-validated training")
    assert "python train.py -m backbone=gemma3_12b,qwen3_14b" in train.stdout and "backbone: gemma2_9b" in train.stdout
    predict = run_cli("predict.py", "--help", tmp_path=tmp_path)
    assert predict.returncode == 0 and "model= is required" in predict.stdout
    assert "experiment:" not in predict.stdout  # training-only groups are not offered for prediction
