"""Issue 29, item 5: int8 CPU scoring, written by `relevance quantize` only after its F1 check on labelled rows."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from relevance import build
from relevance.data.sources import data_file
from relevance.errors import RelevanceError
from relevance.serving import precision
from relevance.serving.bundle import BUNDLE_FILE
from relevance.serving.scorer import RelevanceScorer
from tests.conftest import compose_train, tiny_demo

DEMO = tiny_demo(120, dev=40, test=20, backbone=None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """A tiny LoRA run with a refit: (its run id, its tracking URI, its labelled dev file, its folder)."""
    tmp_path = tmp_path_factory.mktemp("int8")
    cfg = compose_train(
        ["backbone=tiny", "split.n_folds=2", "train.epochs=1", "train.refit=true", *DEMO], tmp_path, cache_dir
    )
    summary = build.train(cfg)
    dev = data_file(cfg.data, cfg.paths.cache, "QC", "dev")
    return summary["run_id"], cfg.tracking.uri, dev, tmp_path


def _quantize(trained, output: Path, *extra: str):
    from relevance.cli import main

    run_id, uri, dev, _ = trained
    main(["quantize", run_id, "--dev", str(dev), "--output", str(output), "--tracking-uri", uri, *extra])


def test_quantize_prints_both_precisions_and_writes_an_int8_model_that_scores_like_fp32(trained, tmp_path, capsys):
    _quantize(trained, tmp_path / "int8", "--max-f1-change", "0.5")
    printed = capsys.readouterr().out
    assert "| fp32 |" in printed and "| int8 |" in printed and "wrote" in printed
    bundle = tmp_path / "int8" / "artifacts" / "bundle"
    recorded = json.loads((bundle / BUNDLE_FILE).read_text())
    assert recorded["precision"] == "int8"
    check = recorded["precision_check"]
    assert set(check["f1_fp32"]) == set(check["f1_int8"]) >= {"all"} and check["max_f1_change"] == 0.5
    assert abs(check["f1_int8"]["all"] - check["f1_fp32"]["all"]) <= 0.5
    int8 = RelevanceScorer(bundle)  # the bundle's own precision
    fp32 = RelevanceScorer(bundle, precision="fp32")
    quantized = [name for name, module in int8.model.named_modules() if isinstance(module, Int8Linear)]
    assert quantized and not any(isinstance(m, Int8Linear) for m in fp32.model.modules())
    assert not any(name.split(".")[-1] == "score" for name in quantized)  # the head stays fp32
    pairs = [("casquette", "apparel accessories,hats & caps"), ("mehl", "food,grocery"), ("hut", "food,grocery")]
    assert np.allclose(int8.predict(pairs), fp32.predict(pairs), atol=0.02)
    assert int8.precision == "int8" and fp32.precision == "fp32"


def test_quantize_refuses_a_busy_output_folder_and_writes_nothing_there(trained, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(SystemExit) as caught:
        _quantize(trained, tmp_path / "busy")
    assert caught.value.code == 2 and "is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]


def test_the_gate_refuses_an_f1_change_past_the_limit_naming_the_group():
    fp32 = {"f1": {"all": 0.80, "seen": 0.85, "unseen": 0.78}, "pairs_per_s": 10.0, "scores": np.zeros(3)}
    int8 = {"f1": {"all": 0.799, "seen": 0.851, "unseen": 0.77}, "pairs_per_s": 16.0, "scores": np.full(3, 0.01)}
    with pytest.raises(RelevanceError, match=r"unseen F1 from 0.7800 to 0.7700 \(-0.0100\), past the allowed 0.005"):
        precision.gate(fp32, int8, 0.005)
    record = precision.gate(fp32, int8, 0.02)
    assert record["pairs_per_s_int8"] == 16.0 and record["largest_score_change"] == pytest.approx(0.01)


def test_int8_scores_one_model_and_says_how_to_get_one(trained):
    bundle = next(Path(trained[3]).rglob(BUNDLE_FILE)).parent
    with pytest.raises(RelevanceError, match="int8 scores one model; this scorer averages 2 folds: use ensemble=refit"):
        RelevanceScorer(bundle, ensemble="folds", precision="int8")
    with pytest.raises(RelevanceError, match="precision='int4' is not known"):
        RelevanceScorer(bundle, precision="int4")


def test_int8_keeps_every_linear_layer_outside_the_head_in_int8():
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8)))
    model.add_module("score", torch.nn.Linear(8, 1))
    expected = model(torch.ones(2, 8))
    quantized = precision.quantize_int8(model, "score")
    assert isinstance(quantized.body[0], Int8Linear) and isinstance(quantized.body[2], Int8Linear)
    assert type(quantized.score) is torch.nn.Linear
    assert torch.allclose(quantized(torch.ones(2, 8)), expected, atol=0.05)
