"""What every benchmark script shares: Markdown tables, the section of BENCHMARKS.md each one rewrites, peak
memory, the taxonomy files, and running `python train.py` in a scratch folder."""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
TAXONOMY_DIR = Path(
    os.environ.get("RELEVANCE_TAXONOMY_DIR", ROOT.parent / "shared" / "data" / "google-product-taxonomy")
)


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; floats keep the precision the caller formatted them with (pass strings)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def write_section(key: str, title: str, body: str, path: Path = BENCHMARKS, command: str | None = None) -> None:
    """Replace (or append) the block between `<!-- bench:key -->` markers in BENCHMARKS.md with the title, the
    command that produced it (or `command`, for a table gathered over several runs) and `body`; prose outside the
    markers is left alone."""
    block = (
        f"<!-- bench:{key} -->\n### {title}\n\n```bash\n{command or command_line()}\n```\n\n{body.strip()}\n"
        f"<!-- /bench:{key} -->"
    )
    text = path.read_text() if path.is_file() else "# Measured figures\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"\n(written to {path.name}, section {key})")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def need_taxonomy() -> Path:
    if not (TAXONOMY_DIR / "taxonomy-with-ids.en-US.txt").is_file():
        sys.exit(
            f"The Google Product Taxonomy files are not in {TAXONOMY_DIR}; set RELEVANCE_TAXONOMY_DIR to the "
            f"folder holding taxonomy-with-ids.<locale>.txt."
        )
    return TAXONOMY_DIR


def run_worker(label: str, command: list[str]) -> dict:
    """Run one measured method in its own process (so its peak memory is its own); its last stdout line is JSON."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class TrainFailed(RuntimeError):
    """A `python train.py` run that exited non-zero; its message is the harness's own last line on stderr (a refusal
    is one sentence), and the whole log stays in the run's scratch folder."""

    def __init__(self, returncode: int, log: Path):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        super().__init__(f"train.py exited {returncode}: {lines[-1] if lines else '(nothing on stderr)'}")
        self.returncode, self.log = returncode, log


def run_train(overrides: list[str], scratch: Path, experiment: str = "relevance") -> dict:
    """`python train.py <overrides>` in `scratch` (its own MLflow store); the parent run's metrics and the minutes."""
    import mlflow

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    uri = f"sqlite:///{scratch}/mlflow.db"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"tracking.uri={uri}",
        f"tracking.artifact_root={scratch}/a",
        "progress=false",
        "tracking.log_model=false",
        *overrides,
    ]
    start = time.perf_counter()
    log = Path(scratch) / "train.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not the largest child's so far
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise TrainFailed(process.returncode, log)
    wall = time.perf_counter() - start
    mlflow.set_tracking_uri(uri)
    run = mlflow.search_runs(
        experiment_names=[experiment], filter_string="tags.`relevance.level` = 'parent'", order_by=["start_time DESC"]
    ).iloc[0]
    metrics = {k[len("metrics.") :]: v for k, v in run.items() if k.startswith("metrics.") and v == v}
    return {"minutes": wall / 60, "peak_mb": usage.ru_maxrss / 1024, "run_id": run.run_id, **metrics}


def chosen_rows(only: list[str] | None, rows: list[str]) -> list[str]:
    """`--only`'s rows in the order given (every row when absent); an unknown key stops the bench in one sentence
    before anything runs."""
    wanted = only or rows
    unknown = [key for key in wanted if key not in rows]
    if unknown:
        sys.exit(f"--only {unknown[0]}: not a row; choose from {', '.join(rows)}.")
    return wanted


class Figures:
    """A bench's figures as a JSON file, written after every run so that a stopped bench loses one run at most and
    a rerun skips what is already there."""

    def __init__(self, path: Path):
        self.path = path
        self.results = json.loads(path.read_text()) if path.is_file() else {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.results, indent=2))

    def put(self, where: dict, key: str, figures: dict, label: str) -> None:
        """One finished measurement: kept, printed and saved."""
        where[key] = figures
        print(label, {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}, flush=True)
        self.save()

    def fill_seeds(self, runs: dict, seeds: list[int], run, label: str, redo: bool = False) -> None:
        """`run(seed)` for each seed missing from `runs` (every seed with `redo`), saving after each."""
        for seed in seeds:
            if str(seed) not in runs or redo:
                self.put(runs, str(seed), run(seed), f"{label} {seed}")
