"""A user's own small data set (issue 31, item 6): a few hundred labelled rows, as a team with its own judgements
would have. Does K-fold training beat what needs no training (the untrained e5-small scored by its catalogue
margin) and TF-IDF fitted on the same rows, and by how much, for the backbones that run offline?

The rows are `data=taxonomy` with `data.taxonomy.train_rows=N` (a third of N queries, each with its path, a
sibling's and a random one); dev is the taxonomy benchmark's own (the same held-out categories, seen and unseen
languages, both views), so every figure compares with bench/taxonomy_quality.py's table. Baselines take their
threshold from the N rows (TF-IDF: out of fold); trained rows are scored as predict.py serves them.

    python bench/small_data.py                           # 300 rows, seeds 42 0 1 (about 40 minutes on 2 cores)
    python bench/small_data.py --sizes 300 900 --seeds 42
    python bench/small_data.py --table-from bench/results/small_data.json
    python bench/small_data.py --task qi --sizes 6000  # QI: queries against English leaf names (title-like)

`--task qi` asks the same of the taxonomy's QI rows (the query against an English leaf name, a title-like short text
with no path; `data.taxonomy.qi_rows=N`, dev on the same held-out categories), into its own figures and section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Figures, TrainFailed, chosen_rows, need_taxonomy, run_train, table, write_section  # noqa: E402
from taxonomy_quality import BEST, GEMMA, SPEC, _cell, floor, served, tfidf, zero_shot_e5_margin  # noqa: E402

from relevance.data.clean import clean_records  # noqa: E402
from relevance.data.reader import read_records  # noqa: E402
from relevance.synthetic.taxonomy import TaxonomySpec, generate_taxonomy  # noqa: E402
from relevance.tasks import TASKS  # noqa: E402

BASELINES = {"floor": floor, "tfidf": tfidf, "zero_shot_e5_margin": zero_shot_e5_margin}
BASELINE_NAMES = {
    "floor": "all-positive floor",
    "tfidf": "TF-IDF char 2-5-grams + logistic regression, fitted on the N rows",
    "zero_shot_e5_margin": "zero-shot: multilingual-e5-small cosine margin (threshold from the N rows)",
}
TRAINED = {  # key: (row name, overrides)
    "e5_best": (
        "offline_best until 2026-12-07 (e5-small bi-encoder, 2 folds + refit; dropout off, unseen languages at a "
        "matched rate)",
        BEST,
    ),
    "offline_best": (
        "experiment=offline_best since 2026-12-07 (e5-small bi-encoder, 2 folds + refit; dropout on, one threshold for "
        "every language)",
        ["experiment=offline_best"],
    ),
    "gemma_classifier": ("Gemma-3-270M + LoRA, classifier head, 1 epoch", GEMMA),
}
QI_ROWS = (
    ", each against its English leaf name, a sibling's and a random category's: a title-like text, no path; dev: QI "
    "rows drawn on the same held-out categories"
)
VIEWS = [(view, group) for view in ("dev", "user") for group in ("seen", "unseen")]


@dataclass(frozen=True)
class TaskTable:
    """What a task's table reads and writes: the spec field N sets, its figures and its section of BENCHMARKS.md."""

    code: str
    size_field: str  # the TaxonomySpec field that is N (the task's training rows)
    figures: str
    section: str
    title: str

    def spec(self, size: int) -> TaxonomySpec:
        return dataclasses.replace(SPEC, **{self.size_field: size})

    def data_overrides(self, size: int) -> list[str]:
        spec = self.spec(size)
        return [
            "data=taxonomy",
            f"task={self.code.lower()}",
            f"data.taxonomy.train_rows={spec.train_rows}",
            f"data.taxonomy.dev_rows_per_language={spec.dev_rows_per_language}",
            f"data.taxonomy.qi_rows={spec.qi_rows}",
            f"data.dir={need_taxonomy()}",
        ]


TABLES = {
    "qc": TaskTable(
        "QC",
        "train_rows",
        "small_data",
        "small-data",
        "A user's own small data set: K-fold training against zero-shot and TF-IDF",
    ),
    "qi": TaskTable(
        "QI", "qi_rows", "taxonomy_qi", "taxonomy-qi", "QI on the taxonomy: queries against title-like leaf names"
    ),
}


def rows_of(task: TaskTable, size: int, scratch: Path):
    """The N training rows and the two dev views of the task, as the harness generates them for N."""
    folder = generate_taxonomy(need_taxonomy(), scratch / f"taxonomy-{task.code}-{size}", task.spec(size))

    def read(which):
        return clean_records(read_records(folder / TASKS[task.code].file_name(which), task.code, require_label=True))[0]

    return read("train"), {"dev": read("dev"), "user": read("dev_user")}


def trained(task: TaskTable, overrides: list[str], size: int, seed: int, scratch: Path, views: dict) -> dict:
    """One harness run on the N rows, its logged model scored on both views; a run the harness refused (a fold
    that learned nothing, train.require_learning) is recorded as refused, not dropped."""
    run_dir = scratch / f"run-{time.time_ns()}"
    run_dir.mkdir()
    command = [*task.data_overrides(size), f"seed={seed}", "tracking.log_model=true", *overrides]
    try:
        found = run_train(command, run_dir)
    except TrainFailed as error:  # the table says which run the harness refused, in the harness's own words
        return {"refused": str(error)}
    keep = ("oof_best_f1", "minutes", "peak_mb", "dev_unseen_f1_at_oof_threshold", "dev_seen_f1_at_oof_threshold")
    return {key: found[key] for key in keep if key in found} | served(found["run_id"], views)


def render(results: dict, task: TaskTable = TABLES["qc"]) -> str:
    body = []
    for size, rows in sorted(results.items(), key=lambda item: int(item[0])):
        for key, name in BASELINE_NAMES.items():
            if key in rows:
                figures = rows[key]
                body.append(
                    [size, name, "-", _cell([figures.get("oof_best_f1")])]
                    + [_cell([figures.get(f"{view}_{group}_f1_at_oof_threshold")]) for view, group in VIEWS]
                    + ["-"]
                )
        for key, (name, _) in TRAINED.items():
            runs = list(rows.get(key, {}).values())
            kept = [r for r in runs if "refused" not in r]
            if not runs:
                continue
            refused = len(runs) - len(kept)
            body.append(
                [size, name + (f" ({refused} of {len(runs)} refused)" if refused else ""), str(len(kept))]
                + [_cell([r.get("oof_best_f1") for r in kept])]
                + [_cell([r.get(f"{view}_{group}_f1_served") for r in kept]) for view, group in VIEWS]
                + [_cell([r.get("minutes") for r in kept], 1)]
            )
    return (
        table(
            [
                "rows",
                "method",
                "seeds",
                "out-of-fold F1",
                "plain seen",
                "plain unseen",
                "user view seen",
                "user view unseen",
                "minutes",
            ],
            body,
        )
        + f"\n\n`data=taxonomy{'' if task.code == 'QC' else ' task=qi'} data.taxonomy.{task.size_field}=N` "
        f"(en/es/fr/ja/pt, N/3 queries{QI_ROWS if task.code == 'QI' else ''}), dev as in the taxonomy table above "
        f"({SPEC.dev_rows_per_language} rows per language, new categories; plain: category names, user view: the "
        f"queries users type). Baselines: threshold best on the N rows (TF-IDF out of fold, 2 query-"
        f"grouped folds). Trained rows: `python train.py <data> seed=S <row's overrides>`, scored by the logged "
        f"model as predict.py does (refit where trained; matched-rate thresholds for unseen languages where the "
        f"recipe says so); mean ± standard deviation over the seeds."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TABLES), default="qc", help="which task's rows (default qc)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[300], help="training rows (default 300)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 0, 1], help="seeds of the trained rows")
    parser.add_argument("--only", nargs="+", help=f"rows: {', '.join([*BASELINES, *TRAINED])}")
    parser.add_argument("--json", type=Path, help="figures (default bench/results/<the task's table>.json)")
    parser.add_argument("--table-from", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    task = TABLES[args.task]
    args.json = args.json or ROOT / "bench" / "results" / f"{task.figures}.json"
    if args.table_from:
        results = json.loads(args.table_from.read_text())
    else:
        figures = Figures(args.json)
        results = figures.results
        wanted = chosen_rows(args.only, [*BASELINES, *TRAINED])
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            for size in args.sizes:
                train, views = rows_of(task, size, scratch)
                rows = results.setdefault(str(size), {})
                for key in wanted:
                    if key in BASELINES:
                        figures.put(rows, key, BASELINES[key](train, views, scratch), f"{size} {key}")
                        continue
                    overrides = TRAINED[key][1]
                    figures.fill_seeds(
                        rows.setdefault(key, {}),
                        args.seeds,
                        lambda seed: trained(task, overrides, size, seed, scratch, views),
                        f"{size} {key}",
                    )
    text = render(results, task)
    print()
    print(text)
    if not args.no_write:
        flag = "" if args.task == "qc" else f" --task {args.task}"
        sizes = " ".join(str(size) for size in sorted(int(size) for size in results))
        write_section(
            task.section, task.title, text, command=f"python bench/small_data.py{flag} --sizes {sizes} --seeds 42 0 1"
        )


if __name__ == "__main__":
    main()
