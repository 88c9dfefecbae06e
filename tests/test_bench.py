"""The benchmark scripts' shared parts, and the cheapest script run as a user runs it."""

import importlib
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from common import write_section  # noqa: E402


def test_a_bench_section_is_replaced_in_place_and_new_ones_are_appended(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Measured\n\nhand-written prose\n")
    write_section("speed", "Speed", "| a |\n|---|\n| 1 |", path)
    write_section("other", "Other", "x", path)
    write_section("speed", "Speed", "| a |\n|---|\n| 2 |", path)
    text = path.read_text()
    assert text.startswith("# Measured\n\nhand-written prose\n")
    assert text.count("<!-- bench:speed -->") == 1 and "| 2 |" in text and "| 1 |" not in text
    assert text.index("bench:speed") < text.index("bench:other")  # replaced where it was, not moved
    assert "```bash\npython " in text  # the command that produced it


def test_a_section_gathered_over_several_runs_shows_the_given_command(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_section("quality", "Quality", "| a |\n|---|\n| 1 |", path, command="python bench/q.py --only <row>")
    assert "```bash\npython bench/q.py --only <row>\n```" in path.read_text()


def redrawn_and_committed(script: str, key: str, figures_name: str = "", *render_args) -> tuple[dict, list, list]:
    """A bench script's committed figures (`figures_name`.json, else the script's name), the table rows its `render`
    draws from them, and the table rows of its section in BENCHMARKS.md."""
    figures = json.loads((ROOT / "bench" / "results" / f"{figures_name or script}.json").read_text())
    rendered = importlib.import_module(script).render(figures, *render_args)
    drawn = [line for line in rendered.splitlines() if line.startswith("|")]
    text = (ROOT / "BENCHMARKS.md").read_text()
    section = text[text.index(f"<!-- bench:{key} -->") : text.index(f"<!-- /bench:{key} -->")]
    return figures, drawn, [line for line in section.splitlines() if line.startswith("|")]


def test_the_taxonomy_table_is_redrawn_exactly_from_its_committed_figures():
    _, drawn, committed = redrawn_and_committed("taxonomy_quality", "taxonomy-quality")
    assert drawn == committed


def test_the_study_table_is_redrawn_exactly_from_its_committed_figures_and_names_the_best_trial():
    figures, drawn, committed = redrawn_and_committed("taxonomy_study", "taxonomy-study")
    assert drawn == committed
    complete = [t for t in figures["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["oof_best_f1"])
    assert [line for line in drawn if "(best)" in line] == [
        line for line in drawn if line.startswith(f"| {best['trial']} (best) |")
    ]


def test_threshold_bench_finds_the_exact_optimum_first(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "thresholds.py"),
            "--sizes",
            "3000",
            "--repeats",
            "1",
            "--optuna-trials",
            "5",
            "--no-write",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 3,000")]
    assert len(rows) == 3
    f1 = {row.split("|")[2].strip(): float(row.split("|")[4]) for row in rows}
    exact = f1.pop("exact (every distinct score)")
    assert all(value <= exact for value in f1.values())


def test_gpu_throughput_bench_runs_its_scaled_down_variant_on_cpu(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_throughput.py"),
            "--tiny",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--length",
            "32",
            "--score-batch",
            "8",
            "--json",
            str(out),
            "--no-write",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = __import__("json").loads(out.read_text())
    train, score = result["rows"]
    assert result["dimensions"] == "tiny" and train["what"] == "train, auto"
    assert train["tokens_per_s"] > 0 and score["pairs_per_s"] > 0 and train["tflops"] > 0
    assert 0 < train["trainable_m"] < 1  # LoRA r16 plus the score head, not the whole model
    assert "| train, auto |" in done.stdout and "tiny dimensions" in done.stdout


def test_plan_memory_bench_measures_what_autograd_keeps_and_the_peaks_beside_the_plan(tmp_path, cache_dir):
    import json
    import os

    out = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "plan_memory.py"), "--backbones", "tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RELEVANCE_CACHE": str(cache_dir)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert len(results["cpu"]) == 4  # the tiny rows: default, longer, LoRA dropout, eager attention
    for row in results["cpu"]:
        assert set(row["planned"]) == {"weights", "trainable + AdamW", "activations"}
        assert row["kept_for_backward_gb"] > 0 and row["training_peak_gb"] > 0 and row["loaded_gb"] > 0
    assert results["gpu"] and all(r["measured_gb"] > 0 for r in results["gpu"])  # the H100 results beside their plan
    assert "| tiny | default | 16 x 64 |" in done.stdout and "| NVIDIA H100 80GB HBM3 | 8 x 512 |" in done.stdout


def test_the_gpu_acceptance_script_runs_its_steps_on_a_cpu(tmp_path, cache_dir):
    """bench/gpu_acceptance.py --smoke: the same train.py (both heads), relevance register and predict.py steps a
    lent GPU runs, on backbone=tiny, so that the script is known to work before a lease is spent on it."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_acceptance.py"),
            "--smoke",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "gpu_acceptance_smoke.json").read_text())
    assert set(report["heads"]) == {"classifier", "yes_no"}
    for head in report["heads"].values():
        assert len(head["run_id"]) == 32 and head["planned_memory_gb"] > 0 and head["tokens_per_second"] > 0
        assert len(head["process_rss_gb_per_fold"]) == 2
    assert report["predict_seconds"] > 0 and (tmp_path / "work" / "submissions" / "submit_QC.txt").is_file()


def test_the_small_data_and_qi_tables_are_redrawn_exactly_from_their_committed_figures():
    from small_data import TABLES

    for task in TABLES.values():
        figures, drawn, committed = redrawn_and_committed("small_data", task.section, task.figures, task)
        assert drawn == committed and any(run for rows in figures.values() for run in rows.get("e5_best", {}).values())


def test_a_refused_bench_run_carries_the_harness_sentence_and_keeps_its_log(tmp_path):
    from common import TrainFailed, run_train

    with pytest.raises(TrainFailed, match=r"exited 2: error: data.dir=.*nowhere is not a folder") as refused:
        run_train(["data=taxonomy", f"data.dir={tmp_path / 'nowhere'}"], tmp_path)
    assert refused.value.log.is_file() and "is not a folder" in refused.value.log.read_text()


def test_a_stopped_bench_keeps_every_finished_run_and_a_rerun_adds_only_the_missing_seeds(tmp_path):
    from common import Figures

    path = tmp_path / "results" / "figures.json"
    figures, ran = Figures(path), []

    def run(seed):
        if seed == 2:
            raise KeyboardInterrupt  # the bench stopped during its third run
        ran.append(seed)
        return {"f1": seed / 10}

    runs = figures.results.setdefault("row", {})
    with pytest.raises(KeyboardInterrupt):
        figures.fill_seeds(runs, [0, 1, 2], run, "row")
    assert json.loads(path.read_text()) == {"row": {"0": {"f1": 0.0}, "1": {"f1": 0.1}}}

    again, ran = Figures(path), []
    again.fill_seeds(again.results["row"], [0, 1, 3], run, "row")
    assert ran == [3] and sorted(json.loads(path.read_text())["row"]) == ["0", "1", "3"]
    again.fill_seeds(again.results["row"], [1], lambda seed: {"f1": 1.0}, "row", redo=True)
    assert json.loads(path.read_text())["row"]["1"] == {"f1": 1.0}


def test_an_unknown_bench_row_is_refused_before_anything_runs():
    from common import chosen_rows

    assert chosen_rows(None, ["floor", "tfidf"]) == ["floor", "tfidf"]
    assert chosen_rows(["tfidf"], ["floor", "tfidf"]) == ["tfidf"]
    with pytest.raises(SystemExit, match="--only tfdf: not a row; choose from floor, tfidf."):
        chosen_rows(["tfidf", "tfdf"], ["floor", "tfidf"])
