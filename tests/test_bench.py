"""The benchmark scripts' shared parts, and the cheapest script run as a user runs it."""

import subprocess
import sys

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


def test_plan_memory_bench_measures_a_peak_beside_the_plan(tmp_path, cache_dir):
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
    (row,) = json.loads(out.read_text())
    assert (
        row["measured_gb"] > 0
        and row["planned_gb"] > 0
        and set(row["planned_parts"])
        == {
            "weights",
            "trainable + AdamW",
            "activations",
        }
    )
    assert "| tiny | 16 x 64 |" in done.stdout
