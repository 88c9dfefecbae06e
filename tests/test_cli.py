"""User mistakes at the command line: one sentence on stderr, exit code 2, no stack trace."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PLUMBING, ROOT


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


def test_predict_without_model_or_with_unknown_model(tmp_path):
    result = run_cli("predict.py", tmp_path=tmp_path)
    assert result.returncode == 2 and "needs model=" in result.stderr
    result = run_cli(
        "predict.py", "model=models:/nobody@champion", f"tracking_uri=sqlite:///{tmp_path}/m.db", tmp_path=tmp_path
    )
    assert result.returncode == 2 and "model=models:/nobody@champion" in result.stderr
    assert "Traceback" not in result.stderr


def test_multirun_lands_as_comparable_runs_in_one_experiment(tmp_path):
    """`python train.py -m ...` (Hydra's sweeper): one parent run per job, all in the same MLflow experiment."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    result = run_cli(
        "train.py",
        "-m",
        "backbone=tiny",
        "lora.r=2,4",
        "split.n_folds=2",
        "progress=false",
        "evaluate_dev=false",
        "data.demo.train_rows=120",
        "data.demo.dev_rows=26",
        "data.demo.test_rows=26",
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


def test_register_best_names_a_missing_experiment(tmp_path, capsys):
    from relevance.cli import main

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
