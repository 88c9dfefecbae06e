"""The whole path on the tiny backbone: train 2 folds -> MLflow -> registry -> predict -> submission -> REST."""

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from relevance import build
from relevance.data.reader import read_records
from relevance.serving import predict
from relevance.serving.submission import validate_submission
from tests.conftest import compose_predict, compose_train, tiny_demo
from tests.serving.rest import free_port, post, served

DEMO = tiny_demo(240, dev=78, test=52, backbone=None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    tmp_path = tmp_path_factory.mktemp("e2e")
    cfg = compose_train(
        [
            "backbone=tiny",
            "split.n_folds=2",
            "train.epochs=2",
            "train.lr=1e-3",
            "register.name=relevance-qc",
            "train.log_every_n_steps=2",
            *DEMO,
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    return tmp_path, cfg, summary


def test_training_logs_parent_and_fold_runs_with_metrics_and_artifacts(trained):
    tmp_path, cfg, summary = trained
    client = MlflowClient()
    parent = client.get_run(summary["run_id"])
    folds = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    assert len(folds) == 2 and all({"best_f1", "fold_seconds"} <= set(f.data.metrics) for f in folds)
    metrics = parent.data.metrics
    for key in (
        "oof_best_f1",
        "oof_at_0.5_f1",
        "oof_all_positive_f1",
        "decision_threshold",
        "oof_f1_ja",
        "dev_f1_de",
        "dev_f1_at_oof_threshold",
        "oof_fold_mean_f1_at_0.5",
    ):
        assert key in metrics, key
    assert metrics["oof_best_f1"] >= metrics["oof_at_0.5_f1"]
    # each value once: the exact search's threshold is the decision threshold, its F1 the best F1, and with one
    # threshold for every language dev F1 at the decisions is dev F1 at the out-of-fold threshold
    assert not {"oof_best_threshold", "threshold_exact", "threshold_exact_f1", "dev_f1_at_decision"} & set(metrics)
    assert parent.data.params["backbone.name"] == "tiny" and parent.data.params["split.n_folds"] == "2"
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"config.yaml", "plots", "oof_scores.json", "language_f1.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(summary["run_id"], "plots")}
    assert {"plots/threshold_f1.png", "plots/language_f1.png", "plots/dev_language_f1.png"} <= plots
    oof = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=summary["run_id"], artifact_path="oof_scores.json")).read_text()
    )
    assert oof["columns"] == ["id", "task", "language", "fold", "label", "score"]
    assert len(oof["data"]) == 240 and not any(np.isnan(row[-1]) for row in oof["data"])


def test_each_fold_run_has_its_training_curves(trained):
    """Lightning's MLflow logger writes the loss, learning rate and gradient norm per step into each fold run (the
    UI's charts of a fold are curves, not single bars), and leaves the fold run's status to the harness."""
    _, _, summary = trained
    client = MlflowClient()
    parent = client.get_run(summary["run_id"])
    folds = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    for fold in folds:
        assert fold.info.status == "FINISHED"
        assert {"lr-AdamW/backbone", "lr-AdamW/head"} <= set(fold.data.metrics)  # the rate of each parameter group
        for name in ("train_loss", "grad_norm", "lr-AdamW/backbone"):
            history = client.get_metric_history(fold.info.run_id, name)
            steps = [m.step for m in history]
            assert len(history) >= 2 and steps == sorted(steps), (name, steps)
        assert fold.data.params["backbone.name"] == "tiny"  # fold runs carry the run's params


def test_logged_model_holds_adapters_not_base_weights(trained):
    _, _, summary = trained
    local = Path(mlflow.artifacts.download_artifacts(summary["model_uri"]))
    bundle = local / "artifacts" / "bundle"
    meta = json.loads((bundle / "relevance.json").read_text())
    assert meta["folds"] == ["fold_0", "fold_1"] and meta["backbone"]["name"] == "tiny"
    assert meta["thresholds"] == {"QC": pytest.approx(summary["oof_best_threshold"])}
    files = sorted(p.name for p in (bundle / "adapters" / "fold_0").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]  # PEFT's placeholder README removed


def test_registered_champion_predicts_a_valid_submission(trained, cache_dir):
    tmp_path, _, summary = trained
    version = MlflowClient().get_model_version_by_alias("relevance-qc", "champion")
    assert version.run_id == summary["run_id"]
    cfg = compose_predict(
        ["model=models:/relevance-qc@champion", "file=test", f"output_dir={tmp_path / 'sub'}", *DEMO],
        tmp_path,
        cache_dir,
    )
    output = predict.run(cfg)
    test_file = Path(cache_dir).glob("demo/*tr240-dv78-te52*/test_QC.txt")
    ids = [r.id for r in read_records(next(test_file), "QC")]
    validate_submission(output, ids)
    assert output.name == "submit_QC.txt" and len(output.read_text().splitlines()) == 52


def test_relevance_register_best_refuses_a_run_at_its_floor_and_says_why(trained, capsys):
    """The tiny random model does not beat the demo's all-positive floor: `--best` crowns nothing (issue 30, item 1;
    the choice among runs that may be champions is tests/test_champion.py)."""
    tmp_path, _, summary = trained
    from relevance.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["register", "--best", "--name", "relevance-best", "--tracking-uri", mlflow.get_tracking_uri()])
    said = capsys.readouterr().err
    assert caught.value.code == 2 and "none of the 1 finished QC runs on demo may be a champion" in said
    assert "nothing registered" in said and not MlflowClient().search_registered_models("name = 'relevance-best'")


def test_mlflow_models_serve_answers_rest(trained, cache_dir):
    _, _, summary = trained
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(), "RELEVANCE_CACHE": str(cache_dir)}
    with served("models:/relevance-qc@champion", "local", env, port):
        rows = [
            {"language": "fr", "origin_query": "casquette", "category_path": "apparel accessories,hats & caps"},
            {"language": "de", "origin_query": "Mehl", "category_path": "food,grocery,flour, baking and cooking,flour"},
        ]
        answer = post(port, rows)
        predictions = pd.DataFrame(answer["predictions"])
        assert len(predictions) == 2 and set(predictions["prediction"]) <= {0, 1}
        assert predictions["score"].between(0, 1).all()
        threshold = summary["oof_best_threshold"]
        assert ((predictions["score"] >= threshold).astype(int) == predictions["prediction"]).all()
        assert post(port, [])["predictions"] == []
        for bad, words in (
            ([rows[0], {**rows[1], "origin_query": None}], "row 1: origin_query is null or missing"),
            ([{"language": "fr", "origin_query": "casquette"}], "missing column(s) ['category_path']"),
            ([rows[0], {**rows[1], "origin_query": 123}], "row 1: origin_query is the number 123, not text"),
            ([{**rows[0], "category_path": ["a", "b"]}], "row 0: category_path is a list, not text"),
            ([{**rows[0], "category_path": {"a": 1}}], "row 0: category_path is an object, not text"),
            ([{**rows[0], "origin_query": True}], "row 0: origin_query is true/false, not text"),
            ([rows[0], {**rows[1], "language": "xx"}], "row 1: language 'xx' is not a code this model knows"),
            ([{**rows[0], "origin_query": "a" * 10_001}], "row 0: origin_query is 10,001 characters long"),
        ):
            with pytest.raises(urllib.error.HTTPError) as caught:
                post(port, bad)
            assert caught.value.code == 400
            assert words in json.loads(caught.value.read())["message"]


ONE_ROW = {"language": "fr", "origin_query": "casquette", "category_path": "apparel accessories,hats & caps"}
MIXED = [
    ONE_ROW,
    {"language": "de", "origin_query": "Mehl", "category_path": "food,grocery,flour, baking and cooking,flour"},
    {"language": "ja", "origin_query": "水筒", "category_path": "home & garden,kitchen & dining,water bottles"},
]


def test_the_served_model_gives_the_same_row_the_same_score_under_concurrent_requests(trained, cache_dir):
    """Issue 29, item 1: a 2-fold model served by `mlflow models serve` (requests run in threads); 8 threads x 20
    requests, of one row and of a mixed batch, each score equal to what a request alone gets (1e-6). Folds used to
    be merged into one shared base without a lock: 45 distinct scores for one row."""
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    env = {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(), "RELEVANCE_CACHE": str(cache_dir)}
    with served("models:/relevance-qc@champion", "local", env, port):
        alone = {len(rows): [p["score"] for p in post(port, rows)["predictions"]] for rows in ([ONE_ROW], MIXED)}
        requests = [[ONE_ROW] if i % 2 else MIXED for i in range(160)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda rows: post(port, rows)["predictions"], requests))
    for rows, answer in zip(requests, answers, strict=True):
        assert np.allclose([p["score"] for p in answer], alone[len(rows)], rtol=0, atol=1e-6)
    assert alone[3][0] == pytest.approx(alone[1][0], abs=1e-6)  # the batch a row comes in does not matter


def test_loading_the_served_model_does_not_call_its_trained_head_newly_initialized(trained, capfd, caplog):
    """Issue 29, item 7: the base loads with a fresh head, which the adapter then restores; transformers' report
    ("newly initialized ... train on your downstream task") is not shown to the user of a trained model."""
    from relevance.serving.scorer import RelevanceScorer

    _, _, summary = trained
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    capfd.readouterr()
    RelevanceScorer(bundle)
    said = capfd.readouterr().err + caplog.text
    assert "newly initialized" not in said and "LOAD REPORT" not in said


def test_predict_refuses_an_edited_model_in_one_sentence_before_scoring(trained, cache_dir):
    """Issue 29, item 2: a threshold edited to 5.0 used to predict 0 rows relevant with exit code 0."""
    import shutil

    from tests.test_cli import run_cli

    tmp_path, _, summary = trained
    copied = tmp_path / "edited-model"
    shutil.copytree(mlflow.artifacts.download_artifacts(summary["model_uri"]), copied)
    description = copied / "artifacts" / "bundle" / "relevance.json"
    description.write_text(json.dumps(json.loads(description.read_text()) | {"thresholds": {"QC": 5.0}}))
    output = tmp_path / "edited-predictions"
    command = [f"model={copied}", "file=test", f"output_dir={output}", *DEMO, f"paths.cache={cache_dir}"]
    result = run_cli("predict.py", *command, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error")]
    named = f"{copied}/artifacts/bundle/relevance.json: `thresholds` holds {{'QC': 5.0}}"
    assert len(error) == 1 and named in error[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (output / "submit_QC.txt").exists()


def test_an_exported_fold_loads_in_plain_transformers_and_scores_as_the_served_model(
    trained, cache_dir, monkeypatch, capsys
):
    """Issue 29, item 6: `relevance export` writes each fold's adapter merged into its base, head included; plain
    transformers (AutoModelForSequenceClassification, the tokenizer saved beside it) scores the rows the bundle's
    preprocessing formats as that fold alone does in the served model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from relevance.cli import main
    from relevance.data.records import Record
    from relevance.serving.scorer import RelevanceScorer

    tmp_path, _, summary = trained
    monkeypatch.setenv("RELEVANCE_CACHE", str(cache_dir))
    output = tmp_path / "exported"
    command = ["export", "models:/relevance-qc@champion", "--output", str(output)]
    command += ["--tracking-uri", mlflow.get_tracking_uri()]
    main(command)
    assert f"wrote {output / 'fold_1'}" in capsys.readouterr().out
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    records = [
        Record(i, "QC", row["language"], row["origin_query"], row["category_path"]) for i, row in enumerate(MIXED)
    ]
    for fold in ("fold_0", "fold_1"):
        described = json.loads((output / fold / "relevance_export.json").read_text())
        assert described["score"] == {"kind": "classifier"} and described["thresholds"] == {
            "QC": pytest.approx(summary["oof_best_threshold"])
        }
        served = RelevanceScorer(bundle, cache=cache_dir)
        served.folds = [fold]
        expected = served.predict_records(records)
        model = AutoModelForSequenceClassification.from_pretrained(output / fold).eval()
        tokenizer = AutoTokenizer.from_pretrained(output / fold)
        texts = served.preprocessor.inputs(records)
        with torch.inference_mode():
            limit = described["input"]["max_length"]
            tokens = [tokenizer(text, truncation=True, max_length=limit, return_tensors="pt") for text in texts]
            scores = [torch.sigmoid(model(**row).logits[0, 0]).item() for row in tokens]
        assert np.allclose(scores, expected, rtol=0, atol=1e-4), (fold, scores, expected)
    assert not any("lora" in name for name in model.state_dict())  # merged: a plain model
    with pytest.raises(SystemExit) as caught:
        main(command)  # again, into the folder it filled
    assert caught.value.code == 2 and "is not empty; give a new folder" in capsys.readouterr().err


def test_the_fold_ensemble_scores_the_mean_of_its_folds(trained):
    """Issue 29, item 1: the ensemble's score is the mean of each fold model's own score."""
    _, _, summary = trained
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    from relevance.serving.scorer import RelevanceScorer

    pairs = [(row["origin_query"], row["category_path"]) for row in MIXED]
    ensemble = RelevanceScorer(bundle, ensemble="folds")
    alone = []
    for fold in ensemble.folds:
        single = RelevanceScorer(bundle, ensemble="folds")
        single.folds = [fold]  # one fold model, loaded on its own
        alone.append(single.predict(pairs))
    assert len(alone) == 2 and not np.allclose(alone[0], alone[1], atol=1e-4)  # the folds differ
    assert np.allclose(ensemble.predict(pairs), np.mean(alone, axis=0), rtol=0, atol=1e-6)


def test_scorer_api_matches_the_pyfunc(trained):
    _, _, summary = trained
    pyfunc = mlflow.pyfunc.load_model(summary["model_uri"])
    scorer = pyfunc.unwrap_python_model().scorer
    pairs = [
        ("casquette", "apparel accessories,hats & caps,baseball caps"),
        ("Mehl", "food,grocery,flour, baking and cooking,flour"),
        ("", "food"),
    ]
    scores = scorer.predict(pairs)
    frame = pd.DataFrame({"origin_query": [q for q, _ in pairs], "category_path": [t for _, t in pairs]})
    served = pyfunc.predict(frame)
    assert np.allclose(scores, served["score"]) and ((scores >= 0) & (scores <= 1)).all()
    assert scorer.predict(pairs[:1])[0] == pytest.approx(scores[0], abs=1e-5)  # batch composition does not matter


def test_predicting_a_labelled_file_reports_its_f1(trained, cache_dir, capsys):
    tmp_path, _, _ = trained
    cfg = compose_predict(
        ["model=models:/relevance-qc@champion", "file=dev", f"output_dir={tmp_path / 'dev'}", "threshold=0.0", *DEMO],
        tmp_path,
        cache_dir,
    )
    predict.run(cfg)
    out = capsys.readouterr().out
    assert "F1 on dev_QC.txt" in out and "78 rows, 78 predicted relevant" in out  # threshold 0: all relevant
    f1, floor = (float(x) for x in re.findall(r"F1 on dev_QC.txt: ([\d.]+) \(all-positive floor ([\d.]+)\)", out)[0])
    assert f1 == pytest.approx(floor)


def test_a_one_model_scorer_merges_once_and_an_ensemble_never_so_nothing_drifts(trained, cache_dir):
    """One model (here one fold) is merged into the base once and scores like its unmerged adapter; a fold ensemble
    is never merged (unmerging one fold to merge the next rounds the base weights a little each time), so scoring
    the same rows again and again gives the same scores to the last bit."""
    from relevance.serving.scorer import RelevanceScorer

    _, _, summary = trained
    bundle = Path(mlflow.artifacts.download_artifacts(summary["model_uri"])) / "artifacts" / "bundle"
    pairs = [
        ("casquette", "apparel accessories,hats & caps"),
        ("mehl", "food,grocery,flour, baking and cooking"),
        ("wireless earbuds noise cancelling", "electronics,audio,headphones"),
    ] * 3
    ensemble = RelevanceScorer(bundle, cache=cache_dir)
    assert len(ensemble.folds) == 2 and not ensemble.merge
    first = ensemble.predict(pairs)
    for _ in range(3):
        assert np.array_equal(ensemble.predict(pairs), first)
    assert not any(getattr(m, "merged_adapters", []) for m in ensemble.model.modules())
    one = RelevanceScorer(bundle, cache=cache_dir)
    one.folds, one.merge = one.folds[:1], True  # one fold alone, as a refit model is
    unmerged = RelevanceScorer(bundle, cache=cache_dir, merge=False)
    unmerged.folds = unmerged.folds[:1]
    expected = unmerged.predict(pairs)
    merged = [one.predict(pairs) for _ in range(3)]
    np.testing.assert_allclose(merged[0], expected, atol=1e-5)
    assert all(np.array_equal(again, merged[0]) for again in merged[1:])
    lora_layer = next(m for m in one.model.modules() if hasattr(m, "merged_adapters"))
    assert lora_layer.merged_adapters == one.folds  # merged once, and left merged
