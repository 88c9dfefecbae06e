"""The logged model as MLflow sees it: code that travels with it, requirements an index serves, no path of this
machine inside it, an input example; and (slow) served by `mlflow models serve --env-manager virtualenv` from a
fresh environment built only from what was logged."""

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import mlflow
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from relevance import build
from relevance.serving.logged_model import SERVING_PACKAGES
from tests.conftest import compose_train, tiny_demo
from tests.serving.rest import free_port, post, served

DEMO = tiny_demo(120, dev=40, test=20, backbone=None)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, cache_dir):
    """A tiny run's logged model, downloaded: (its folder, the run's summary)."""
    tmp_path = tmp_path_factory.mktemp("logged")
    cfg = compose_train(["backbone=tiny", "split.n_folds=2", "train.epochs=1", *DEMO], tmp_path, cache_dir)
    summary = build.train(cfg)
    folder = Path(mlflow.artifacts.download_artifacts(summary["model_uri"], dst_path=str(tmp_path / "model")))
    return folder, summary


def _requirements(folder: Path) -> list[Requirement]:
    return [Requirement(line) for line in (folder / "requirements.txt").read_text().split() if line]


def test_requirements_pin_index_versions_and_the_code_travels_with_the_model(logged):
    folder, summary = logged
    requirements = _requirements(folder)
    assert all(len(r.specifier) == 1 and "+" not in str(r.specifier) for r in requirements), requirements
    assert "relevance" not in {r.name for r in requirements}  # an unrelated project of that name is on PyPI
    assert (folder / "code" / "relevance" / "serving" / "scorer.py").is_file()
    # named after its run (issue 30, item 6), the first of its name in this store
    assert mlflow.get_logged_model(summary["model_uri"].removeprefix("models:/")).name == "tiny-qc-query_group"


def test_no_path_of_this_machine_is_inside_the_model(logged):
    folder, _ = logged
    home = str(Path.home())
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".txt", ".md", ""):
            assert home not in path.read_text(errors="replace"), path
    configs = list(folder.rglob("adapter_config.json"))
    assert configs and all(json.loads(c.read_text())["base_model_name_or_path"] == "tiny" for c in configs)
    assert not any("[More Information Needed]" in p.read_text() for p in folder.rglob("README.md"))


def test_the_input_example_is_logged_and_scores(logged):
    folder, _ = logged
    model = mlflow.models.Model.load(folder / "MLmodel")
    assert model.saved_input_example_info is not None
    assert model.signature.inputs.input_names() == ["task", "language", "origin_query", "category_path"]
    example = model.load_input_example(str(folder))
    scored = mlflow.pyfunc.load_model(str(folder)).predict(example)
    assert list(scored.columns) == ["score", "prediction"] and len(scored) == len(example)


def test_what_the_served_model_imports_is_covered_by_its_requirements(logged, tmp_path):
    """A fresh interpreter loads the model and scores its example; every installed distribution it imported must
    be one of the requirements or a dependency of one (else a rebuilt environment would lack it)."""
    folder, _ = logged
    probe = (
        "import json, sys, mlflow; from importlib.metadata import packages_distributions as p;"
        f"m = mlflow.pyfunc.load_model({str(folder)!r});"
        f"m.predict(mlflow.models.Model.load({str(folder / 'MLmodel')!r}).load_input_example({str(folder)!r}));"
        "d = p(); print(json.dumps(sorted({x for n in list(sys.modules) for x in d.get(n.split('.')[0], [])})))"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    imported = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
        ).stdout.splitlines()[-1]
    )
    covered = _closure({r.name for r in _requirements(folder)})
    missing = {d for d in imported if canonicalize_name(d) not in covered} - {"relevance"}
    assert not missing, f"imported but not required: {sorted(missing)}"
    assert set(map(canonicalize_name, SERVING_PACKAGES)) <= covered


def _closure(names: set[str]) -> set[str]:
    """The requirements and everything they depend on (as installed here; extras ignored)."""
    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except Exception:  # noqa: BLE001 - not installed here: nothing to follow
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_the_requirements_resolve_on_the_package_index(logged, tmp_path):
    """pip resolves the logged requirements (every pin exists on the index and they fit together) without
    installing anything."""
    folder, _ = logged
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(tmp_path / "report.json"),
            "-r",
            str(folder / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = {
        item["metadata"]["name"].lower() for item in json.loads((tmp_path / "report.json").read_text())["install"]
    }
    assert {r.name.lower() for r in _requirements(folder)} <= installed


@pytest.mark.slow
def test_mlflow_serves_the_model_from_a_fresh_virtualenv(logged, tmp_path, cache_dir):
    """`mlflow models serve --env-manager virtualenv`: MLflow builds the model's own environment from its logged
    python_env.yaml and requirements (pyenv's Python, a new virtualenv, pip install), outside this checkout, and
    the server answers a REST request."""
    if shutil.which("pyenv") is None:
        pytest.fail("pyenv is needed by MLflow's virtualenv env manager (it is on the project's machines)")
    folder, _ = logged
    port = free_port()
    env = {"PYTHONPATH": "", "RELEVANCE_CACHE": str(cache_dir), "MLFLOW_ENV_ROOT": str(tmp_path / "envs")}
    with served(str(folder), "virtualenv", env, port, cwd=tmp_path, seconds=900):
        rows = [{"language": "fr", "origin_query": "casquette", "category_path": "apparel accessories,hats & caps"}]
        answer = post(port, rows)
        assert len(answer["predictions"]) == 1 and 0 <= answer["predictions"][0]["score"] <= 1
    assert list((tmp_path / "envs").glob("*")), "MLflow served from a virtualenv of its own"


def test_the_run_tells_its_story_card_description_and_datasets(logged):
    """What the UI shows: the run's description (the headline), its datasets with digests, the model card in the
    model and on the run, and as the registered version's description."""
    from mlflow.tracking import MlflowClient

    from relevance import tracking

    folder, summary = logged
    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    assert run.data.tags["mlflow.note.content"].startswith("out-of-fold F1 ")
    datasets = {(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs}
    assert {name for name, _ in datasets} == {"train_QC.txt", "dev_QC.txt"} and all(len(d) == 8 for _, d in datasets)
    card = (folder / "artifacts" / "bundle" / "README.md").read_text()
    assert card == mlflow.artifacts.load_text(f"runs:/{summary['run_id']}/{tracking.CARD_FILE}")
    assert (
        f"| out-of-fold F1, best threshold | {summary['oof_best_f1']:.4f} | {summary['oof_all_positive_f1']:.4f} |"
        in card
    )
    assert "languages scored on dev but never trained on: " in card and "backbone: `tiny`" in card
    # issue 30, item 6: every field filled (the rows, the model's URI), and metadata the Hub parses
    rows = int(run.data.metrics["rows_train"])
    assert f"`demo`, {rows} training rows" in card and "?" not in card.split("## Data")[1]
    model_name = run.info.run_name
    assert f"python predict.py model=runs:/{summary['run_id']}/{model_name} " in card
    assert mlflow.pyfunc.load_model(f"runs:/{summary['run_id']}/{model_name}").metadata.run_id == summary["run_id"]
    from huggingface_hub import ModelCard

    hub = ModelCard(card)
    (result,) = hub.data.eval_results[:1]
    assert result.metric_type == "f1" and result.metric_value == round(summary["oof_best_f1"], 4)
    assert set(hub.data.language) >= {"en", "fr"} and "relevance" in hub.data.tags
    version = tracking.register(summary["model_uri"], "card-test", "champion")
    registered = client.get_model_version("card-test", str(version))
    assert registered.description == card.split("\n---\n", 1)[1].lstrip("\n")  # the body, without the YAML
    assert registered.tags["metric.out_of_fold_f1_best_threshold"] == str(round(summary["oof_best_f1"], 4))
    assert set(registered.tags["languages"].split(",")) == set(hub.data.language)


def test_a_4bit_model_requires_bitsandbytes_at_the_projects_pin():
    """Issue 28, item 9: a QLoRA model is served 4-bit as it trained, so its environment needs bitsandbytes."""
    import tomllib

    from relevance.serving.logged_model import QLORA, requirements
    from tests.conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["qlora"] == [QLORA]
    assert any(r.startswith("bitsandbytes==") for r in requirements({"name": "b", "quantization": "4bit"}))
    assert not any(r.startswith("bitsandbytes") for r in requirements({"name": "b", "quantization": None}))
