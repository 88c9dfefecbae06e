"""Command-line edges: user mistakes become one line on stderr and exit code 2, never a stack trace."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path

from relevance import interrupts
from relevance.errors import RelevanceError
from relevance.tasks import KINDS, TASKS


def quiet_libraries() -> None:
    """Keep the console for our progress and results: library chatter that is expected here goes away."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in (
        "lightning.pytorch",
        "lightning.fabric",
        "transformers",
        "peft",
        "mlflow.pyfunc",
        "mlflow.models",
        "mlflow.store",
        "alembic",
        "huggingface_hub",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    # MLflow logs each database error with its traceback before raising it; the error itself reaches our edge
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported (not here: 5 s)
    for pattern in (
        ".*in eval mode.*",
        ".*custom batch sampler.*",
        ".*is_gradient_checkpointing.*",
        ".*input example was not provided.*",
        ".*serialized using CloudPickle.*",
        ".*LeafSpec.*",
        ".*does not have many workers.*",
        ".*litlogger.*",
        ".*Could not find a config file.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def user_errors_exit(reraise: bool = False, errors_to_caller: bool = False):
    """A user's mistake ends the program with one line; `reraise` hands it on instead (to a sweeper, which
    records the trial as failed with that line as its reason), as `errors_to_caller` does for mistakes only (a
    multirun records the job as failed and runs the next). An interruption goes on to `exit_on_interrupt` as
    Interrupted, whatever Lightning made of it."""
    quiet_libraries()
    with interrupts.handled():
        try:
            yield
        except RelevanceError as error:
            if reraise or errors_to_caller or interrupts.was_interrupted(error):
                raise
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except SystemExit as error:
            if not interrupts.was_interrupted(error):
                raise
            raise interrupts.Interrupted(interrupts.signal_name()) from None


@contextlib.contextmanager
def exit_on_interrupt(doing: str):
    """The outermost block of an entry point: SIGTERM or Ctrl-C, wherever it lands (start-up, a fold, a sweep's
    bookkeeping, inside a library), ends the program with exit code 128 + signal (143, 130) and one line, which
    says what to do next (the stage that was running set it: resume a run, resume a study, start over). An error
    raised after the signal (a library that caught it and failed on the state it left) is its consequence: the
    same exit, plus that error's first line."""
    with interrupts.handled():
        try:
            yield
        except BaseException as error:
            if interrupts.received is None and not isinstance(error, KeyboardInterrupt):
                raise
            if not interrupts.was_interrupted(error):  # a library swallowed the signal, then failed for it
                first_line = (str(error).splitlines() or [""])[0]
                print(f"after the signal: {type(error).__name__}: {first_line}", file=sys.stderr)
            print(f"\ninterrupted by {interrupts.signal_name()} during {doing}; {interrupts.hint}", file=sys.stderr)
            sys.exit(interrupts.exit_code())


@contextlib.contextmanager
def config_errors_exit():
    """Hydra's own composition errors (a value of the wrong type, an unknown key or group option, an override it
    cannot parse) as one line and exit code 2, like every other user mistake, instead of its several-line report."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises the error here instead of printing and exiting itself
    try:
        yield
    except (HydraException, OmegaConfBaseException) as error:
        print(f"error: {config_error_line(error)}", file=sys.stderr)
        sys.exit(2)


def config_error_line(error: Exception) -> str:
    """One line from a Hydra or OmegaConf error: what was asked, why it cannot be, and the hint Hydra gives."""
    lines = [line.strip() for line in str(error).split("Config search path:")[0].splitlines() if line.strip()]
    dangling = re.match(r"Error when parsing index: \d+, string: (\S+?=\S*,) out of", lines[0] if lines else "")
    if dangling:  # data.dir=/data/cikm, : the comma Hydra reads as a list of values for a multirun
        return (
            f"{dangling.group(1)} ends with a comma, which Hydra reads as a list of values (a multirun); remove "
            f"the comma, or quote a value that holds one ('key=\"a,b\"')."
        )
    if "Could not override 'data.dir'" in (lines[0] if lines else ""):  # data=demo, which reads no folder
        from relevance.data.sources import DEMO_READS_NO_FOLDER

        return f"data.dir: {DEMO_READS_NO_FOLDER}"
    cause = error.__cause__
    reason = (getattr(cause, "msg", None) or str(cause)).splitlines()[0] if cause is not None else ""
    first = lines[0].removeprefix("Error merging override ").removeprefix("In 'train': ").removeprefix("In 'predict': ")
    if "is not a subclass of" in reason:  # a value given to a group of settings, e.g. threshold=0.4
        key = first.split("=")[0]
        reason = f"{key} is a group of settings, not one value; set its keys ({key}.<key>=<value>)"
    if len(lines) > 2 and lines[1].startswith("Available options"):
        return f"{first}; {lines[1].rstrip(':').lower()}: {', '.join(lines[2:])}."  # an unknown group option
    hints = " ".join(lines[1:])
    line = " ".join(part for part in (f"{first.rstrip('.')}: {reason}" if reason else first, hints) if part)
    return line if line.endswith(".") else line + "."


def run_plan(overrides: list[str], rows: int, mfu: float, row_tokens: int = 64, data: bool = False) -> str:
    """Compose the training config as train.py would (Hydra's compose API; types checked there) and plan it, at
    the training file's own row lengths with `data`. Hub access is not needed: the plan is for the machine that
    will have it."""
    from hydra import compose, initialize_config_dir

    from relevance import plan
    from relevance.checks import CONF

    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("train", overrides=["paths.root=.", *overrides])
    lengths = plan.data_lengths(cfg) if data else None
    return plan.report(cfg, plan.make_plan(cfg, rows, row_tokens, lengths=lengths), mfu, lengths)


def language_table(by_language: dict[str, list[dict]]) -> str:
    """Per-language F1 beside its floor, seen and unseen languages marked, one column per scored set."""
    names = list(by_language)
    cells = {name: {row["language"]: row for row in rows} for name, rows in by_language.items()}
    seen = {row["language"]: row["seen"] for rows in by_language.values() for row in rows}
    languages = sorted(seen, key=lambda language: (not seen[language], language))  # seen first
    header = "language  seen  " + "  ".join(f"{name + ' F1 (floor)':>22}" for name in names)
    lines = [header, "-" * len(header)]
    for language in languages:
        values = [_cell(cells[n][language]) if language in cells[n] else "" for n in names]
        lines.append(f"{language:<8}  {'yes' if seen[language] else 'no':<4}  " + "  ".join(f"{v:>22}" for v in values))
    return "\n".join(lines)


def _cell(row: dict) -> str:
    if row.get("one_label"):
        return f"one label n={row['rows']:<4}"
    return f"{row['f1']:.3f} ({row['floor']:.3f}) n={row['rows']:<4}"


def run_export(reference: str, output: Path, tracking_uri: str | None) -> None:
    import tempfile

    import mlflow

    from relevance import tracking
    from relevance.serving.export import export
    from relevance.serving.predict import as_given, download_bundle
    from relevance.serving.scorer import default_cache

    mlflow.set_tracking_uri(tracking.existing_store(tracking_uri or tracking.default_tracking_uri(".")))
    with tempfile.TemporaryDirectory() as scratch:
        downloaded, bundle = download_bundle(reference, scratch)
        try:
            written = export(bundle, output, default_cache())
        except RelevanceError as error:
            raise as_given(error, downloaded, reference) from None
    for folder in written:
        print(f"wrote {folder}")


def run_quantize(
    reference: str, dev: Path, output: Path, max_change: float, task: str | None, tracking_uri: str | None
) -> None:
    """Check int8 against fp32 on labelled rows, and write the int8 model only if its F1 holds."""
    import shutil
    import tempfile

    import mlflow

    from relevance import tracking
    from relevance.data.reader import read_records
    from relevance.serving import precision
    from relevance.serving.bundle import ModelBundle
    from relevance.serving.predict import as_given, download_bundle
    from relevance.serving.scorer import RelevanceScorer

    if output.exists() and any(output.iterdir()):
        raise RelevanceError(f"--output {output} is not empty; give a new folder for the int8 model.")
    if not 0 <= max_change < 1:
        raise RelevanceError(f"--max-f1-change {max_change} must be at least 0 and under 1 (default 0.005).")
    if not dev.is_file():
        raise RelevanceError(f"--dev {dev} is not a file; give a labelled file of the model's task (dev_QC.txt).")
    mlflow.set_tracking_uri(tracking.existing_store(tracking_uri or tracking.default_tracking_uri(".")))
    with tempfile.TemporaryDirectory() as scratch:
        downloaded, folder = download_bundle(reference, scratch)
        try:
            bundle = ModelBundle.load(folder)
            tasks = bundle.tasks
            if task is None and len(tasks) > 1:
                raise RelevanceError(f"this model scores {' and '.join(tasks)}; say which {dev} holds with --task.")
            records = read_records(dev, task or tasks[0])
            if any(r.label is None for r in records):
                raise RelevanceError(f"--dev {dev} has rows without a label; the check needs labelled rows.")
            results = {}
            for name in precision.PRECISIONS:
                print(f"scoring {len(records)} rows of {dev.name} in {name} ...", flush=True)
                results[name] = precision.measure(RelevanceScorer(folder, precision=name, device="cpu"), records)
            print(precision.table(results["fp32"], results["int8"]))
            check = precision.gate(results["fp32"], results["int8"], max_change)
        except RelevanceError as error:
            raise as_given(error, downloaded, reference) from None
        bundle.precision, bundle.precision_check = "int8", {**check, "dev_file": dev.name}
        bundle.save(folder)
        shutil.copytree(downloaded, output, dirs_exist_ok=True)
    print(
        f"wrote {output}: int8 weights, F1 within {max_change} of fp32 on {dev.name}; score with "
        f"`python predict.py model={output}` or serve with `mlflow models serve -m {output}`"
    )


def main(argv: list[str] | None = None) -> None:
    """`relevance register ...`: put a run's model (or the best run's) into the model registry."""
    with exit_on_interrupt("the command"):
        _command(argv)


def _command(argv: list[str] | None) -> None:
    from relevance import __version__, tracking
    from relevance.plan import DEFAULT_MFU

    parser = argparse.ArgumentParser(
        prog="relevance",
        description="Model registry commands of the relevance harness (train with `python train.py`, predict with "
        "`python predict.py`).",
        epilog="example: relevance register --best --name relevance-qc   (the finished run with the highest "
        "oof_best_f1 becomes models:/relevance-qc@champion)",
    )
    parser.add_argument("--version", action="version", version=f"relevance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register", help="register a run's model under a name and alias")
    which = reg.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="the training (parent) run whose model to register")
    which.add_argument("--best", action="store_true", help="the run with the highest --metric in --experiment")
    reg.add_argument("--name", required=True, help="registered model name, e.g. relevance-qc")
    reg.add_argument("--alias", default="champion", help="alias to point at the new version (default: champion)")
    reg.add_argument("--experiment", default="relevance", help="MLflow experiment searched by --best")
    reg.add_argument("--metric", default="oof_best_f1", help="metric --best maximises (default: oof_best_f1)")
    reg.add_argument(
        "--task",
        choices=list(KINDS),
        default=None,
        help="--best: runs of this task (default: the name's, relevance-qc is QC)",
    )
    reg.add_argument(
        "--data",
        default=None,
        help="--best: runs on this data set, e.g. taxonomy or competition (default: "
        "that of the name's registered versions, else the only one)",
    )
    reg.add_argument(
        "--min-gain",
        type=float,
        default=None,
        help="--best: F1 a champion must beat its all-positive floor by (default 0.01)",
    )
    reg.add_argument("--tracking-uri", default=None, help="default: sqlite:///./mlruns/mlflow.db")
    plan = commands.add_parser(
        "plan",
        help="check a training config before renting a GPU: parameters, LoRA targets, memory per GPU, time",
        description="Builds the configured backbone on PyTorch's meta device (no download, no memory) with its head "
        "and LoRA, and says what matched, the memory per GPU with and without gradient checkpointing, and the time "
        "per epoch on A100/H100/H200.",
        epilog="example: relevance plan --data experiment=dcuragons data=competition data.dir=/data/cikm strategy=ddp "
        "strategy.devices=4",
    )
    plan.add_argument("overrides", nargs="*", help="the overrides you would give train.py (key=value)")
    plan.add_argument("--rows", type=int, default=300_000, help="training rows per epoch (default: QC train, 300,000)")
    plan.add_argument(
        "--mfu",
        type=float,
        default=DEFAULT_MFU,
        help=f"model FLOPs utilisation assumed (default {DEFAULT_MFU}: measured 0.07-0.14 for LoRA training on an "
        f"H100, short rows lowest)",
    )
    plan.add_argument(
        "--row-tokens", type=int, default=64, help="mean tokens of a row, for the time (default 64: a QC row)"
    )
    plan.add_argument(
        "--data",
        action="store_true",
        help="read the config's training file(s) and plan at their rows' real token lengths (replaces --rows and "
        "--row-tokens)",
    )
    export = commands.add_parser(
        "export",
        help="write a model as plain Hugging Face checkpoints (adapter merged, head included), one per fold and refit",
        description="Each fold's (and the refit's) adapter folded into its base weights and saved with its head, "
        "its tokenizer, relevance_export.json (input format, how the output becomes a score, thresholds) and the "
        "model card: transformers, vLLM, TEI or sentence-transformers load it without this package.",
        epilog="example: relevance export models:/relevance-qc@champion --output exported/",
    )
    export.add_argument("model", help="models:/<name>@<alias>, models:/<name>/<version> or a training run id")
    export.add_argument("--output", required=True, help="a new or empty folder")
    export.add_argument("--format", choices=["hf"], default="hf", help="hf: Hugging Face checkpoints (default)")
    export.add_argument("--tracking-uri", default=None, help="default: sqlite:///./mlruns/mlflow.db")
    quantize = commands.add_parser(
        "quantize",
        help="write an int8 copy of a model for faster CPU scoring, only if its F1 on labelled rows holds",
        description="Scores the labelled rows with the model as logged (fp32) and with int8 weights (dynamic, one "
        "scale per channel), prints pairs/s and F1 side by side (all rows, seen and unseen languages), and writes "
        "the int8 model only when every F1 is within --max-f1-change of fp32's. int8 scores the refit (or a "
        "one-fold model).",
        epilog="example: relevance quantize models:/relevance-qc@champion --dev data/dev_QC.txt --output qc-int8/",
    )
    quantize.add_argument("model", help="models:/<name>@<alias>, models:/<name>/<version> or a training run id")
    quantize.add_argument("--dev", required=True, help="a labelled file of the model's task (the competition format)")
    quantize.add_argument("--output", required=True, help="a new or empty folder for the int8 model")
    quantize.add_argument("--max-f1-change", type=float, default=0.005, help="largest F1 change allowed (0.005)")
    quantize.add_argument("--task", choices=list(TASKS), default=None, help="the file's task, for a joint model")
    quantize.add_argument("--tracking-uri", default=None, help="default: sqlite:///./mlruns/mlflow.db")
    args = parser.parse_args(argv)
    if args.command == "quantize":
        with user_errors_exit():
            run_quantize(
                args.model, Path(args.dev), Path(args.output), args.max_f1_change, args.task, args.tracking_uri
            )
        return
    if args.command == "export":
        with user_errors_exit():
            run_export(args.model, Path(args.output), args.tracking_uri)
        return
    if args.command == "plan":
        with config_errors_exit(), user_errors_exit():
            print(run_plan(args.overrides, args.rows, args.mfu, args.row_tokens, args.data))
        return
    with user_errors_exit():
        import mlflow

        mlflow.set_tracking_uri(tracking.existing_store(args.tracking_uri or tracking.default_tracking_uri(".")))
        if args.best:
            from relevance import champion

            gain = champion.MIN_GAIN if args.min_gain is None else args.min_gain
            chosen = champion.choose(args.experiment, args.metric, args.name, args.task, args.data, gain)
            print(chosen.describe(args.experiment))
            run_id = chosen.winner.run_id
        else:
            run_id = args.run_id
        version = tracking.register(tracking.model_uri(run_id), args.name, args.alias)
        print(f"registered run {run_id} as models:/{args.name}/{version} (alias @{args.alias})")
