"""Every file of every config group becomes a `Run` (relevance.build) on this machine, whose objects carry what the
file chose; what cannot work here is refused at start in one sentence. The hub cannot be reached here, so a hub
backbone's location is stood in by the tiny model's (only its tokenizer is read while building), and a hub
translator runs as `translator.source=tiny`."""

import json

import pytest
import torch

from relevance import build, checks, tracking
from relevance.data.sources import data_folder
from relevance.errors import ConfigError
from relevance.weights import resolve_source
from tests.conftest import ROOT, SPEC, compose_train, tiny_demo

CONF = ROOT / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "sweep"))
FILES = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
DEMO = tiny_demo(60, dev=26, test=26, backbone=None)
GPU_ONLY = {"deepspeed_stage_2", "deepspeed_stage_3", "deepspeed_stage_3_offload"}


def test_every_group_and_file_is_covered():
    assert {"augmentation", "backbone", "data", "experiment", "head", "split", "strategy", "tapt", "task"} <= set(
        GROUPS
    )
    assert len(FILES) >= 45


@pytest.fixture
def hub_stand_in(monkeypatch, cache_dir):
    """A hub backbone's location -> the tiny model's folder (named: the hub cannot be reached from here)."""
    tiny = compose_train(["backbone=tiny"], cache_dir, cache_dir).backbone

    def located(backbone, cache):
        return resolve_source(tiny if backbone.source in ("hub", "auto", "random") else backbone, cache)

    monkeypatch.setattr(build, "resolve_source", located)


def overrides_for(group: str, name: str, cache_dir, taxonomy_dir) -> list[str]:
    """The file chosen, and what lets it build here without changing what it chose."""
    chosen = f"augmentation=[{name}]" if group == "augmentation" else f"{group}={name}"
    if group == "hparams_search":
        chosen = f"+{chosen}"
    extra = {
        ("data", "competition"): [f"data.dir={data_folder(compose_train(DEMO, cache_dir, cache_dir).data, cache_dir)}"],
        ("data", "taxonomy"): [
            f"data.dir={taxonomy_dir}",
            *(f"data.taxonomy.{k}={json.dumps(v).replace(' ', '')}" for k, v in SPEC.items()),
        ],
        ("head", "bi_encoder"): ["backbone=multilingual_e5_small"],
    }.get((group, name), [])
    if group == "experiment":  # a recipe chooses its own backbone, head, folds and translator
        return [chosen, *DEMO]
    demo = [] if group == "data" and name != "demo" else DEMO
    return ["backbone=tiny", *demo, "split.n_folds=2", chosen, *extra]


def compose_here(overrides: list[str], tmp_path, cache_dir):
    """The config, with the models only the hub holds stood in: a hub translator runs as a tiny random model of its
    kind, a hub embedder of hard negatives as TF-IDF."""
    cfg = compose_train(overrides, tmp_path, cache_dir)
    stand_ins = []
    if cfg.translator.get("source") == "hub":
        stand_ins.append("translator.source=tiny")
    negatives = (cfg.get("augmentation") or {}).get("hard_negatives")
    if negatives and negatives.embedder not in ("tfidf", "intfloat/multilingual-e5-small"):
        stand_ins.append("augmentation.hard_negatives.embedder=tfidf")
    return compose_train([*overrides, *stand_ins], tmp_path, cache_dir) if stand_ins else cfg


@pytest.mark.parametrize(("group", "name"), FILES, ids=[f"{g}={n}" for g, n in FILES])
def test_each_config_file_builds_a_run_that_carries_its_choice(
    group, name, tmp_path, cache_dir, taxonomy_dir, hub_stand_in
):
    cfg = compose_here(overrides_for(group, name, cache_dir, taxonomy_dir), tmp_path, cache_dir)
    if group == "strategy" and name in GPU_ONLY and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=f"strategy={name} needs a CUDA GPU"):
            checks.check_config(cfg)
            build.run(cfg)
        return
    checks.check_config(cfg)
    run = build.run(cfg)
    assert run.tracking.params == tracking.flatten(cfg) and run.tracking.fingerprint
    assert len(run.data.records) == len(run.data.labels) > 0 and set(run.data.folds) == set(range(cfg.split.n_folds))
    assert all(path.is_file() for path in run.tracking.data_files.values())
    settings = run.trainer.settings
    assert (settings.backbone.name, settings.head.name, settings.seed) == (cfg.backbone.name, cfg.head.name, cfg.seed)
    assert run.reporting.tasks == tuple(run.preprocessor.templates) and run.plan.n_folds == cfg.split.n_folds
    chose = {
        "backbone": lambda: (
            settings.backbone.name == name and run.preprocessor.encoder == (cfg.backbone.kind == "encoder")
        ),
        "head": lambda: settings.head.name == name,
        "task": lambda: (
            run.reporting.task_code == cfg.task.code and len(run.reporting.tasks) == (2 if name == "joint" else 1)
        ),
        "tapt": lambda: (run.tapt is None) == (name == "none") and (run.tapt is None or len(run.tapt.rows) > 0),
        "translator": lambda: run.preprocessor.translations.settings.name == name,
        "augmentation": lambda: (
            name in run.preprocessor.augmentation and (run.self_validation is not None) == (name == "self_validation")
        ),
        "strategy": lambda: run.runtime.world_size >= 1 and cfg.strategy.name == name,
        "data": lambda: {task for task, _ in run.tracking.data_files} == set(run.preprocessor.templates),
        "split": lambda: cfg.split.name == name,
        "experiment": lambda: run.reporting.title == cfg.backbone.name,
        "hparams_search": lambda: cfg.sweep.study,
    }[group]
    assert chose(), f"{group}={name}: the run does not carry the file's choice"
