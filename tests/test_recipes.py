"""Each method through the whole pipeline on the tiny backbone, and each team's recipe by name (experiment=...)."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from relevance import build, checks
from relevance.data.reader import read_records
from relevance.data.sources import data_file
from relevance.errors import ConfigError, RelevanceError
from relevance.serving import predict
from tests.conftest import compose_predict, compose_train, tiny_demo

SMALL = [
    *tiny_demo(120, dev=52, test=26, folds=2),
    "train.epochs=1",
    "train.lr=1e-3",
]


def _children(summary) -> dict[str, object]:
    run = MlflowClient().get_run(summary["run_id"])
    children = MlflowClient().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    return {c.data.tags.get("relevance.fold", c.info.run_name): c for c in children}  # folds: by the fold they are


@pytest.mark.parametrize(
    "recipe, extra",
    [
        ("dcuragons", ["train.folds_trained=null"]),  # SMALL has 2 folds
        (
            "yin_qc",
            [
                "translator=file",
                "augmentation.hard_negatives.embedder=tfidf",
                "augmentation.translate.rows_per_language=20",
                "augmentation.hard_negatives.rows=30",
            ],
        ),
        ("yin_qi", ["translator=file", "augmentation.translate.rows_per_language=20", "train.max_length=64"]),
        ("dilab", []),
    ],
)
def test_each_team_recipe_runs_end_to_end_on_tiny(recipe, extra, tmp_path, cache_dir):
    cfg = compose_train([f"experiment={recipe}", *SMALL, *extra], tmp_path, cache_dir)
    summary = build.train(cfg)
    assert 0 <= summary["oof_best_f1"] <= 1 and summary["model_uri"]
    children = _children(summary)
    names = set(children)
    assert {"fold-0", "fold-1"} <= names
    parent_name = MlflowClient().get_run(summary["run_id"]).info.run_name  # charts over runs tell folds apart
    assert children["fold-1"].info.run_name == f"{parent_name}/fold-1"
    if recipe == "dcuragons":
        assert "tapt-stage1-qi" in names and cfg.split.name == "category_aware"
    if recipe == "yin_qc":
        assert summary["rows_synthesized"] == 20 * 4 and summary["rows_hard_negatives"] > 0
        assert summary["decision_threshold"] == 0.4
    if recipe in ("yin_qi", "dilab"):
        assert {"self-validation/fold-0", "self-validation/fold-1"} <= names
    params = MlflowClient().get_run(summary["run_id"]).data.params
    assert params["head.name"] == ("classifier" if recipe == "dcuragons" else "yes_no")


def test_translation_concat_is_replayed_by_the_served_model_and_a_refit_can_serve(tmp_path, cache_dir):
    cfg = compose_train([*SMALL, "augmentation=[translate]", "train.refit=true"], tmp_path, cache_dir)
    summary = build.train(cfg)
    assert summary["translations_reused"] > 0 and summary["translations_computed"] == 0
    assert "refit" in _children(summary)
    scorer = predict.load_scorer(summary["run_id"], ensemble="refit")
    auto, folds = predict.load_scorer(summary["run_id"]), predict.load_scorer(summary["run_id"], ensemble="folds")
    assert auto.ensemble == "refit" and auto.threshold == pytest.approx(summary["refit_threshold"])
    assert folds.folds == ["fold_0", "fold_1"] and folds.threshold == pytest.approx(summary["decision_threshold"])
    assert scorer.folds == ["refit"] and scorer.bundle.preprocessor["translator"]["path"].endswith("translations.jsonl")
    dev = read_records(data_file(cfg.data, cfg.paths.cache, "QC", "dev"), "QC")[:6]
    before = scorer.translations.reused
    scores = scorer.predict_records(dev)
    assert len(scores) == 6 and ((0 <= scores) & (scores <= 1)).all()
    assert scorer.translations.reused - before == sum(r.language != "en" for r in dev)
    out = predict.run(
        compose_predict(
            [
                f"model={summary['run_id']}",
                "file=dev",
                "ensemble=refit",
                f"output_dir={tmp_path / 'sub'}",
                *tiny_demo(120, dev=52, test=26, backbone=None),
            ],
            tmp_path,
            cache_dir,
        )
    )
    assert len(out.read_text().splitlines()) == 52
    own_file = tmp_path / "new_queries.jsonl"
    own_file.write_text(Path(scorer.bundle.preprocessor["translator"]["path"]).read_text())
    with_file = predict.load_scorer(summary["run_id"], translations_file=str(own_file))
    assert with_file.translations.settings.path == str(own_file)
    default = predict.load_scorer(summary["run_id"]).predict_records(dev)
    assert np.allclose(with_file.predict_records(dev), default)  # same translations, read from the given file
    assert with_file.translations.reused > 0


def test_refit_is_refused_for_a_model_trained_without_it(tmp_path, cache_dir):
    summary = build.train(compose_train(SMALL, tmp_path, cache_dir))
    with pytest.raises(RelevanceError, match="train.refit=true"):
        predict.load_scorer(summary["run_id"], ensemble="refit")


def test_a_sweep_rerun_translates_nothing_twice(tmp_path, cache_dir):
    overrides = [
        *SMALL,
        "augmentation=[translate]",
        "augmentation.translate.mode=both",
        "augmentation.translate.rows_per_language=5",
        "translator=tiny",
        "tracking.log_model=false",
    ]
    first = build.train(compose_train(overrides, tmp_path, tmp_path / "cache"))  # a cache of its own
    assert first["translations_computed"] > 0
    second = build.train(compose_train(overrides, tmp_path, tmp_path / "cache"))
    assert second["translations_computed"] == 0
    assert second["translations_reused"] == first["translations_computed"] + first["translations_reused"]
    metrics = MlflowClient().get_run(second["run_id"]).data.metrics
    assert metrics["translations_computed"] == 0


def test_tapt_logs_stage_one_and_a_later_run_can_start_from_it(tmp_path, cache_dir):
    summary = build.train(
        compose_train(
            # seed=0: stage 1 trains as fold -1, so its seed wraps instead of going negative
            [*SMALL, "tapt=from_other_task", "tapt.max_rows=60", "tracking.log_model=false", "seed=0"],
            tmp_path,
            cache_dir,
        )
    )
    stage1 = _children(summary)["tapt-stage1-qi"]
    assert stage1.data.metrics["rows_trained"] == 60
    files = {Path(a.path).name for a in MlflowClient().list_artifacts(stage1.info.run_id, "tapt_adapter")}
    assert "adapter_model.safetensors" in files
    again = build.train(
        compose_train(
            [*SMALL, "tapt=from_other_task", f"tapt.from_run={stage1.info.run_id}", "tracking.log_model=false"],
            tmp_path,
            cache_dir,
        )
    )
    assert "tapt-stage1-qi" not in _children(again)
    from_parent = build.train(
        compose_train(
            [*SMALL, "tapt=from_other_task", f"tapt.from_run={summary['run_id']}", "tracking.log_model=false"],
            tmp_path,
            cache_dir,
        )
    )
    assert from_parent["oof_best_f1"] == pytest.approx(again["oof_best_f1"])  # the same stage-1 adapter
    with pytest.raises(ConfigError, match="no tapt_adapter artifact"):
        build.train(
            compose_train(
                [*SMALL, "tapt=from_other_task", f"tapt.from_run={again['run_id']}", "tracking.log_model=false"],
                tmp_path,
                cache_dir,
            )
        )


def test_self_validation_logs_what_it_removed_and_still_judges_every_row(tmp_path, cache_dir):
    summary = build.train(
        compose_train(
            [
                *SMALL,
                "augmentation=[self_validation]",
                "augmentation.self_validation.confidence=0.51",
                "tracking.log_model=false",
            ],
            tmp_path,
            cache_dir,
        )
    )
    metrics = MlflowClient().get_run(summary["run_id"]).data.metrics
    flagged = int(metrics["self_validation_flagged"])
    assert flagged > 0  # at confidence 0.51 a one-epoch tiny model contradicts many labels
    assert flagged == sum(v for k, v in metrics.items() if k.startswith("self_validation_flagged_"))
    table = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=summary["run_id"], artifact_path="self_validation/flagged_rows.json"
            )
        ).read_text()
    )
    assert len(table["data"]) == flagged and "action" in table["columns"]
    fold = _children(summary)["fold-0"]
    assert fold.data.metrics["rows_validation"] == 60  # removed rows still scored
    assert fold.data.metrics["rows_trained"] < 60 or flagged < 2


def test_tapt_without_the_other_tasks_data_fails_at_start(tmp_path, cache_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train_QC.txt").write_text(
        json.dumps({"id": 1, "task": "QC", "language": "en", "origin_query": "a", "category_path": "b", "label": 1})
        + "\n"
    )
    cfg = compose_train(
        ["backbone=tiny", "tapt=from_other_task", "data=competition", f"data.dir={folder}"], tmp_path, cache_dir
    )
    with pytest.raises(ConfigError, match=r"tapt=from_other_task .*train_QI.txt does not exist"):
        checks.check_config(cfg)


def test_joint_model_trains_both_tasks_with_a_threshold_each_and_predicts_both_files(tmp_path, cache_dir):
    cfg = compose_train([*SMALL, "task=joint"], tmp_path, cache_dir)
    summary = build.train(cfg)
    for task in ("qc", "qi"):
        assert 0 <= summary[f"{task}_oof_best_f1"] <= 1 and f"{task}_dev_f1_at_oof_threshold" in summary
    assert summary["oof_best_f1"] == pytest.approx((summary["qc_oof_best_f1"] + summary["qi_oof_best_f1"]) / 2)
    scorer = predict.load_scorer(summary["run_id"])
    assert scorer.tasks == ["QC", "QI"] and set(scorer.thresholds) == {"QC", "QI"}
    assert scorer.thresholds["QC"] == summary["qc_decision_threshold"]
    assert "category:" in scorer.templates["QC"] and "product:" in scorer.templates["QI"]
    with pytest.raises(RelevanceError, match="pass one of them"):
        scorer.predict([("cap", "apparel,hats")])
    assert len(scorer.predict([("cap", "apparel,hats")], task="QC")) == 1
    frame = pd.DataFrame(
        [
            {"task": "QC", "origin_query": "cap", "category_path": "apparel,hats", "item_title": None},
            {"task": "QI", "origin_query": "cap", "category_path": None, "item_title": "red cap"},
        ]
    )
    out = mlflow.pyfunc.load_model(summary["model_uri"]).predict(frame)
    assert list(out.columns) == ["score", "prediction"] and len(out) == 2
    outputs = predict.run(
        compose_predict(
            [
                f"model={summary['run_id']}",
                "file=test",
                f"output_dir={tmp_path / 's'}",
                *tiny_demo(120, dev=52, test=26, backbone=None),
            ],
            tmp_path,
            cache_dir,
        )
    )
    assert [p.name for p in outputs] == ["submit_QC.txt", "submit_QI.txt"]
    assert (tmp_path / "s" / "submission.zip").is_file()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=joint", "backbone=xlm_roberta_large"], "task=joint tells QC from QI rows by their prompts"),
        (["task=joint", "tapt=from_other_task"], "no other task to pre-train on"),
        (["task=joint", "split=category_aware"], "split=category_aware"),
        (["head=yes_no", "backbone=xlm_roberta_large"], "head=yes_no .* encoder"),
        (["augmentation=[hard_negatives]", "augmentation.hard_negatives.window=[50,20]"], "window"),
        (["augmentation=[self_validation]", "augmentation.self_validation.confidence=0.3"], "between 0.5 and 1"),
        (["augmentation=[self_validation]", "augmentation.self_validation.action=fix"], "use drop or relabel"),
        (["augmentation=[translate]", "augmentation.translate.mode=paraphrase"], "concat, synthesize or both"),
        (
            ["augmentation=[translate]", "translator.path=/nowhere.jsonl"],
            "translator.path=/nowhere.jsonl is not a file",
        ),
        (["threshold.method=fixed", "threshold.value=1.5"], "threshold.value between 0 and 1"),
        (["threshold.method=median"], "threshold.method='median' is not known"),
    ],
)
def test_combinations_that_cannot_work_fail_at_start_with_one_sentence(overrides, message, tmp_path, cache_dir):
    with pytest.raises(ConfigError, match=message):
        checks.check_config(compose_train(["backbone=tiny", *overrides], tmp_path, cache_dir))


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        (
            "dcuragons",  # nhtlongcs/e-commerce-product-search: config/QC/train_14b.json, data_fold0.json
            {
                "backbone.hub_id": "google/gemma-3-12b-pt",
                "train.epochs": 2,
                "train.lr": 1e-5,
                "train.batch_size": 4,
                "train.accumulate_grad_batches": 2,
                "train.scheduler": "constant_with_warmup",
                "train.warmup_ratio": 0.01,
                "train.weight_decay": 1e-4,
                "train.max_length": 2048,
                "split.n_folds": 5,
                "train.folds_trained": 3,
            },
        ),
        (
            "dilab",  # 2noweyh/DILAB-Alibaba-Ecommerce-Search: script/train.sh
            {
                "backbone.hub_id": "Qwen/Qwen2.5-14B-Instruct",
                "backbone.prompt_style": "alpaca",
                "backbone.lora_targets": [
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                    "lm_head",
                ],
                "lora.r": 16,
                "lora.alpha": 16,
                "lora.dropout": 0.05,
                "train.lr": 1e-4,
                "train.scheduler": "cosine",
                "train.warmup_ratio": 0.05,
                "train.batch_size": 2,
                "train.accumulate_grad_batches": 4,
                "train.max_length": 1024,
                "train.epochs": 2,
            },
        ),
    ],
)
def test_each_recipe_resolves_to_its_teams_code(recipe, expected, tmp_path, cache_dir):
    from omegaconf import OmegaConf

    cfg = compose_train([f"experiment={recipe}"], tmp_path, cache_dir)
    assert {key: OmegaConf.select(cfg, key) for key in expected} == expected


def test_training_3_of_5_folds_trains_three_models_and_scores_only_their_held_out_rows(tmp_path, cache_dir):
    """DcuRAGONS trained 3 of their 5 folds (train.folds_trained=3): three fold runs, a three-model ensemble, and
    out-of-fold F1 and thresholds from the rows those three held out (the other rows only trained)."""
    overrides = [*SMALL, "data.demo.train_rows=200", "split.n_folds=5", "train.folds_trained=3"]
    summary = build.train(compose_train(overrides, tmp_path, cache_dir))
    assert sorted(_children(summary)) == ["fold-0", "fold-1", "fold-2"]
    oof = pd.DataFrame(mlflow.load_table("oof_scores.json", run_ids=[summary["run_id"]]))
    held_out = oof["fold"] < 3
    assert oof.loc[held_out, "score"].notna().all() and oof.loc[~held_out, "score"].isna().all()
    scored = oof[held_out]
    predicted = scored["score"] >= summary["decision_threshold"]
    true_positives = (predicted & (scored["label"] == 1)).sum()
    f1 = 2 * true_positives / (predicted.sum() + (scored["label"] == 1).sum())
    assert summary["oof_best_f1"] == pytest.approx(f1)  # judged on the three folds' held-out rows alone
    scorer = predict.load_scorer(summary["run_id"])
    assert scorer.folds == ["fold_0", "fold_1", "fold_2"] and 0 < scorer.threshold < 1
    with pytest.raises(ConfigError, match="train.folds_trained=6 is more than split.n_folds=5"):
        checks.check_config(compose_train([*overrides, "train.folds_trained=6"], tmp_path, cache_dir))
