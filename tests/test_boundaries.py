"""Which package may import which: the sweep is the entry point's business (it connects a trial as an observer of
the run), so no module outside `relevance.sweep` imports it; evaluation computes and tracking logs; the synthetic
stand-ins are reached through the composition root and `relevance.weights`, never from `model/` or `text/`."""

import ast
import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "relevance"


def imported(path: Path) -> set[str]:
    """The modules a file imports, relative imports made absolute (lazy imports inside functions included)."""
    inside = path.is_relative_to(SOURCE)
    package = ".".join(("relevance", *path.relative_to(SOURCE).parent.parts)) if inside else ""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_only_the_sweep_package_and_the_entry_points_import_the_sweep():
    outside = [path for path in SOURCE.rglob("*.py") if "sweep" not in path.relative_to(SOURCE).parts]
    assert any(path.name == "pipeline.py" for path in outside)
    offenders = {
        str(path.relative_to(SOURCE)): sorted(m for m in imported(path) if m.startswith("relevance.sweep"))
        for path in outside
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}
    assert any(m.startswith("relevance.sweep") for m in imported(SOURCE.parents[1] / "train.py"))


def test_evaluation_computes_reports_and_leaves_logging_them_to_tracking():
    modules = {path.name: imported(path) for path in (SOURCE / "evaluation").glob("*.py")}
    assert "reporting.py" in modules
    assert {name: sorted(m for m in found if m.startswith("mlflow")) for name, found in modules.items()} == {
        name: [] for name in modules
    }


def test_model_and_text_load_locations_and_never_reach_the_synthetic_stand_ins():
    packages = ("model", "text")
    modules = {str(p.relative_to(SOURCE)): imported(p) for pkg in packages for p in (SOURCE / pkg).glob("*.py")}
    assert "text/translation.py" in modules and "model/backbones.py" in modules
    offenders = {
        name: sorted(m for m in found if m.startswith("relevance.synthetic")) for name, found in modules.items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}
    assert any(m.startswith("relevance.synthetic") for m in imported(SOURCE / "weights.py"))


def test_the_pipeline_orders_a_built_run_in_one_screen_without_config_mlflow_or_sweep():
    path = SOURCE / "pipeline.py"
    text = path.read_text()
    assert len(text.splitlines()) <= 60 and "def run(job: Run" in text
    assert sorted(m for m in imported(path) if m.startswith(("mlflow", "omegaconf", "hydra", "relevance.sweep"))) == []
    assert re.search(r"\bcfg\b", text) is None


def test_only_the_tasks_module_names_a_task():
    """A task's facts have one home (relevance.tasks): no other module compares or maps a task's name; the
    synthetic generators, which write each task's rows, are the exception."""
    names = {"QC", "QI", "JOINT", "qc", "qi", "joint"}
    found = {
        f"{path.relative_to(SOURCE)}:{node.lineno}"
        for path in SOURCE.rglob("*.py")
        if path.relative_to(SOURCE).parts[0] != "synthetic" and path.name != "tasks.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    }
    assert found == set()


def test_the_config_is_read_only_by_the_composition_root_the_refusals_the_planner_and_the_entry_side():
    """Issue 32: below the entry points, a function that takes the whole Hydra config (`cfg`) is the composition
    root (build), a refusal (checks, or a class's own `check`), the planner, predict.py's and the sweep's own code,
    or one of two that use the config as a value and read no key of it (its fingerprint, its flattened params)."""
    allowed_modules = {"build.py", "checks.py", "plan.py", "serving/predict.py"}
    as_a_value = {("training/resume.py", "fingerprint"), ("tracking/__init__.py", "flatten")}
    takers = {
        (str(path.relative_to(SOURCE)), node.name)
        for path in SOURCE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and "cfg" in [a.arg for a in node.args.args + node.args.kwonlyargs]
    }
    elsewhere = {
        (module, name)
        for module, name in takers
        if module not in allowed_modules and not module.startswith("sweep/") and name != "check"
    }
    assert {("build.py", "run"), ("model/heads.py", "check"), ("training/distill.py", "check")} <= takers
    assert elsewhere == as_a_value
    for module, _ in as_a_value:
        assert re.search(r"\bcfg\.[a-z_]+", (SOURCE / module).read_text()) is None
