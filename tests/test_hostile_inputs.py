"""The hostile-input suite: what users get wrong, fed to the real entry points (`train.py`, `predict.py`,
`relevance`), each in its own process (tests/entry_points.py). Every refused case must end with exit code 2 and
exactly one `error:` line naming the file, line or key (no traceback), and leave nothing behind: no MLflow run, no
registered model, no progress files, nothing in the temporary folder. Accepted cases (odd but valid input) must
train. Signals and kills are in tests/test_interrupts.py, REST payloads in tests/test_end_to_end.py."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests import entry_points
from tests.conftest import ROOT

ROW = {"id": 0, "task": "QC", "language": "en", "origin_query": "baking flour", "category_path": "food,baking"}
DATA = ["data=competition", "data.dir=data", "backbone=tiny", "progress=false", "train.epochs=1", "split=random"]
STORE = "sqlite:///mlruns/mlflow.db"


def rows(n: int = 40, **change) -> list[dict]:
    """`n` learnable training rows, two languages, both labels in each."""
    made = []
    for i in range(n):
        label = i % 2
        query = ("flour for baking", "garden hose")[label ^ 1] + f" {i}"
        made.append(ROW | {"id": i, "language": ("en", "fr")[i % 4 // 2], "origin_query": query, "label": label})
    return [row | change for row in made]


def lines(items) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


def good_then(bad) -> str:
    """A valid file whose third line is `bad`."""
    good = rows()
    return lines(good[:2] + [bad] + good[3:])


@dataclass
class Case:
    id: str
    script: str
    args: list[str]
    words: str  # in the one `error:` line (or, with code 0, in the output)
    files: dict[str, str | bytes] = field(default_factory=dict)
    code: int = 2


def data_case(id: str, words: str, content, name: str = "train_QC.txt", *args: str) -> Case:
    return Case(id, "train.py", [*DATA, *args], words, {f"data/{name}": content})


CASES = [
    # The training data: every mistake names the file, the line and the fix.
    Case("data: no data.dir", "train.py", ["data=competition", "backbone=tiny"], "data=competition needs data.dir="),
    Case("data: data.dir missing", "train.py", [*DATA[:1], "data.dir=nowhere", *DATA[2:]], "nowhere"),
    data_case("data: no train file", "file not found; set data.dir", "", "dev_QC.txt"),
    data_case("data: empty file", "the file is empty", ""),
    data_case("data: only blank lines", "the file is empty", "\n\n\n"),
    data_case("data: gzip archive", "this is a gzip archive; decompress it", gzip.compress(lines(rows()).encode())),
    data_case(
        "data: latin-1 text",
        "line 3: not UTF-8 text",
        good_then("").replace("\n\n", '\n{"x": "caf\xe9"}\n').encode("latin-1"),
    ),
    data_case("data: JSON array", "line 1: the file holds a JSON array", "[\n" + json.dumps(rows()[0]) + ",\n]\n"),
    data_case("data: pretty-printed", "pretty-printed JSON", json.dumps(rows()[0], indent=2) + "\n"),
    data_case("data: cut-off line", "line 3: the line ends before its object does", good_then('{"id": 2, "task"')),
    data_case("data: single quotes", "line 3: not valid JSON", good_then("{'id': 2}")),
    data_case("data: a list, not an object", "line 3: expected a JSON object, found list", good_then("[1, 2]")),
    data_case("data: a string line", "line 3: expected a JSON object, found str", good_then('"text"')),
    data_case("data: a number line", "line 3: expected a JSON object, found int", good_then("7")),
    data_case("data: no id", "line 3: missing field 'id'", good_then({k: v for k, v in ROW.items() if k != "id"})),
    data_case(
        "data: no task", "line 3: missing field 'task'", good_then({k: v for k, v in ROW.items() if k != "task"})
    ),
    data_case(
        "data: no language",
        "line 3: missing field 'language'",
        good_then({k: v for k, v in ROW.items() if k != "language"} | {"id": 2, "label": 0}),
    ),
    data_case(
        "data: no query",
        "line 3: missing field 'origin_query'",
        good_then({k: v for k, v in ROW.items() if k != "origin_query"} | {"id": 2, "label": 0}),
    ),
    data_case(
        "data: no category path",
        "line 3: missing field 'category_path'",
        good_then({k: v for k, v in ROW.items() if k != "category_path"} | {"id": 2, "label": 0}),
    ),
    data_case("data: no label", "line 3: missing field 'label'", good_then(ROW | {"id": 2})),
    data_case("data: label 2", "line 3: label is 2; it must be 0 or 1", good_then(ROW | {"id": 2, "label": 2})),
    data_case("data: label yes", "line 3: label is 'yes'", good_then(ROW | {"id": 2, "label": "yes"})),
    data_case(
        "data: label null",
        "line 3: label is null; training files need a 0/1 label",
        good_then(ROW | {"id": 2, "label": None}),
    ),
    data_case("data: label 0.5", "line 3: label is 0.5", good_then(ROW | {"id": 2, "label": 0.5})),
    data_case(
        "data: label NaN",
        "line 3: label is nan",
        good_then(
            '{"id": 2, "task": "QC", "language": "en", "origin_query": "q", "category_path": "food", "label": NaN}'
        ),
    ),
    data_case(
        "data: id text", "line 3: id is 'abc'; it must be an integer", good_then(ROW | {"id": "abc", "label": 0})
    ),
    data_case("data: id null", "line 3: id is None", good_then(ROW | {"id": None, "label": 0})),
    data_case("data: id float", "line 3: id is 2.5", good_then(ROW | {"id": 2.5, "label": 0})),
    data_case("data: duplicate id", "line 3: id 0 already appeared on line 1", good_then(ROW | {"label": 0})),
    data_case(
        "data: language null", "line 3: language is None", good_then(ROW | {"id": 2, "language": None, "label": 0})
    ),
    data_case("data: language empty", "line 3: language is ''", good_then(ROW | {"id": 2, "language": "", "label": 0})),
    data_case(
        "data: query a number", "line 3: origin_query is 7", good_then(ROW | {"id": 2, "origin_query": 7, "label": 0})
    ),
    data_case(
        "data: category path null",
        "line 3: category_path is None",
        good_then(ROW | {"id": 2, "category_path": None, "label": 0}),
    ),
    data_case(
        "data: category path a list",
        "line 3: category_path is ['food', 'baking']",
        good_then(ROW | {"id": 2, "category_path": ["food", "baking"], "label": 0}),
    ),
    data_case(
        "data: a QI row in the QC file",
        "line 3: task is 'QI' but this file is read as 'QC'",
        good_then(ROW | {"id": 2, "task": "QI", "label": 0}),
    ),
    data_case(
        "data: a QI file given as QC",
        "line 1: this is a QI file",
        lines(
            [
                {k: v for k, v in r.items() if k != "category_path"} | {"task": "QI", "item_title": "flour"}
                for r in rows()
            ]
        ),
    ),
    data_case("data: task unknown", "line 3: task is 'QX'", good_then(ROW | {"id": 2, "task": "QX", "label": 0})),
    data_case("data: every label 1", "every training row is labelled 1", lines(rows(label=1))),
    data_case("data: every label 0", "every training row is labelled 0", lines(rows(label=0))),
    data_case("data: every query empty", "every row's query is empty after cleaning", lines(rows(origin_query="  "))),
    data_case("data: fewer rows than folds", "split.n_folds=5 is more than the 4 training rows", lines(rows(4))),
    data_case(
        "data: a bad dev file",
        "dev_QC.txt, line 2: not valid JSON",
        "",
        "dev_QC.txt",
    ),
    # Config values: a wrong type stops while Hydra composes, a wrong range or combination in relevance.checks.
    Case(
        "config: seed=abc",
        "train.py",
        ["seed=abc"],
        "seed=abc: Value 'abc' of type 'str' could not be converted to Integer",
    ),
    Case(
        "config: train.lr=fast",
        "train.py",
        ["train.lr=fast"],
        "train.lr=fast: Value 'fast' of type 'str' could not be converted to Float",
    ),
    Case("config: train.lr=0", "train.py", ["train.lr=0"], "train.lr=0.0 must be a number > 0"),
    Case("config: train.epochs=2.5", "train.py", ["train.epochs=2.5"], "train.epochs=2.5: Value '2.5' of type 'float'"),
    Case("config: train.epochs=0", "train.py", ["train.epochs=0"], "train.epochs=0 must be an integer >= 1"),
    Case(
        "config: train.batch_size=0", "train.py", ["train.batch_size=0"], "train.batch_size=0 must be an integer >= 1"
    ),
    Case(
        "config: train.max_length=4", "train.py", ["train.max_length=4"], "train.max_length=4 must be an integer >= 8"
    ),
    Case("config: lora.r=0", "train.py", ["lora.r=0"], "lora.r=0 must be an integer >= 1"),
    Case(
        "config: split.category_depth=0",
        "train.py",
        ["split=category_aware", "split.category_depth=0"],
        "split.category_depth=0 must be an integer >= 1",
    ),
    Case(
        "config: augmentation=nonexistent",
        "train.py",
        ["augmentation=nonexistent"],
        "available options in 'augmentation': hard_negatives, self_validation, tags, translate",
    ),
    Case(
        "config: a trailing comma in data.dir",
        "train.py",
        ["data=competition", "data.dir=/data/cikm,"],
        "data.dir=/data/cikm, ends with a comma, which Hydra reads as a list of values",
    ),
    Case("config: data.dir on the demo", "train.py", ["data.dir=/tmp"], "data=demo generates its own rows and reads"),
    Case("config: +data.dir on the demo", "train.py", ["+data.dir=/tmp"], "data=demo generates its own rows and reads"),
    Case("config: lora.dropout=2", "train.py", ["lora.dropout=2"], "lora.dropout=2.0 must be at most 0.99"),
    Case("config: lora.dropout=x", "train.py", ["lora.dropout=x"], "lora.dropout=x: Value 'x' of type 'str'"),
    Case(
        "config: train.warmup_ratio=5",
        "train.py",
        ["train.warmup_ratio=5"],
        "train.warmup_ratio=5.0 must be at most 1.0",
    ),
    Case(
        "config: train.scheduler", "train.py", ["train.scheduler=stepwise"], "train.scheduler='stepwise' is not known"
    ),
    Case("config: train.head_lr=-1", "train.py", ["train.head_lr=-1"], "train.head_lr=-1 must be a number > 0"),
    Case(
        "config: checkpoint_minutes=-1",
        "train.py",
        ["train.checkpoint_minutes=-1"],
        "train.checkpoint_minutes=-1.0 must be a number >= 0",
    ),
    Case("config: split.n_folds=1", "train.py", ["split.n_folds=1"], "split.n_folds=1 must be an integer >= 2"),
    Case("config: data.max_rows=-5", "train.py", ["data.max_rows=-5"], "data.max_rows=-5 must be an integer >= 1"),
    Case("config: data.max_rows=0", "train.py", ["data.max_rows=0"], "data.max_rows=0 must be an integer >= 1"),
    Case(
        "config: experiment name empty",
        "train.py",
        ["tracking.experiment=''"],
        "tracking.experiment='' must be a non-empty name",
    ),
    Case("config: unknown key", "train.py", ["train.lrr=3"], "Key 'lrr' not in 'Train'. Did you mean: 'lr'?"),
    Case("config: unknown option", "train.py", ["backbone=foo"], "Could not find 'backbone/foo'; available options"),
    Case("config: unparsable override", "train.py", ["seed=["], "no viable alternative at input '['"),
    Case(
        "config: a value for a group", "train.py", ["threshold=0.4"], "threshold is a group of settings, not one value"
    ),
    Case(
        "config: fixed threshold 2",
        "train.py",
        ["threshold.method=fixed", "threshold.value=2"],
        "threshold.method=fixed needs threshold.value between 0 and 1 (got 2.0)",
    ),
    Case("config: threshold method", "train.py", ["threshold.method=magic"], "threshold.method='magic'"),
    Case(
        "config: category order",
        "train.py",
        ["clean.category_order=middle_out"],
        "clean.category_order='middle_out' is not known",
    ),
    Case(
        "config: catalogue margin not a switch",
        "train.py",
        ["experiment=offline_best", "head.catalogue_margin=maybe"],
        "head.catalogue_margin='maybe' must be true or false",
    ),
    Case(
        "data: catalogue file missing",
        "train.py",
        ["experiment=offline_best", "head.catalogue_file=no/such/categories.txt"],
        "categories.txt: file not found; set head.catalogue_file to a file of category paths",
    ),
    Case(
        "config: catalogue margin under ZeRO-3",
        "train.py",
        ["experiment=offline_best", "strategy=deepspeed_stage_3"],
        "head.catalogue_margin embeds the categories outside the training engine",
    ),
    Case(
        "config: yes/no head under ZeRO-3",
        "train.py",
        ["backbone=tiny", "head=yes_no", "strategy=deepspeed_stage_3"],
        "head=yes_no reads two rows of the LM head's weight directly",
    ),
    Case(
        "config: leaf first + tagged levels",
        "train.py",
        ["clean.category_order=leaf_first", "+augmentation=[tags]"],
        "use one of the two",
    ),
    Case(
        "config: QI by category", "train.py", ["backbone=tiny", "task=qi", "split=category_aware"], "only QC rows have"
    ),
    Case(
        "config: joint on an encoder",
        "train.py",
        ["task=joint", "backbone=multilingual_e5_small"],
        "task=joint tells QC from QI rows",
    ),
    Case("config: 4-bit on CPU", "train.py", ["backbone.quantization=4bit"], "QLoRA) needs a CUDA GPU"),
    Case("config: 8-bit", "train.py", ["backbone.quantization=8bit"], "backbone.quantization='8bit' is not known"),
    Case("config: checkpointing=maybe", "train.py", ["train.gradient_checkpointing=maybe"], "is not a valid bool"),
    Case(
        "config: register without a model",
        "train.py",
        ["register.name=x", "tracking.log_model=false"],
        "register.name needs a logged model",
    ),
    Case("config: tracking scheme", "train.py", ["tracking.uri=nonsense://x"], "nonsense:// is not a tracking store"),
    Case("config: folder store", "train.py", ["tracking.uri=file:///tmp/mlruns"], "MLflow 3 refuses folder stores"),
    Case("config: distillation, no teacher", "train.py", ["head.loss=kl"], "head.loss=kl learns from a teacher's"),
    Case(
        "config: teacher, no distillation loss",
        "train.py",
        ["distill.teachers=[abc]"],
        "distill.teachers is given but head.loss=pointwise does not read a teacher",
    ),
    Case(
        "config: tracking server down",
        "train.py",
        ["tracking.uri=http://127.0.0.1:9"],
        "tracking.uri=http://127.0.0.1:9 does not answer",
    ),
    Case(
        "config: unwritable store", "train.py", ["tracking.uri=sqlite:////proc/relevance/mlflow.db"], "/proc/relevance"
    ),
    Case(
        "config: resume an unknown run",
        "train.py",
        ["backbone=tiny", "resume=0123456789abcdef"],
        "resume=0123456789abcdef: there is no such run",
    ),
    Case(
        "config: translate mode",
        "train.py",
        ["+augmentation=[translate]", "augmentation.translate.mode=x"],
        "augmentation.translate.mode='x' is not known",
    ),
    Case(
        "config: hard negative window",
        "train.py",
        ["+augmentation=[hard_negatives]", "augmentation.hard_negatives.window=[50,20]"],
        "window=[50, 20] must be two ranks",
    ),
    Case(
        "config: self-validation confidence",
        "train.py",
        ["+augmentation=[self_validation]", "augmentation.self_validation.confidence=0.3"],
        "confidence=0.3 must be between 0.5 and 1",
    ),
    # Odd but valid: trained, with a word where something was left out.
    Case(
        "accepted: a null query",
        "train.py",
        DATA,
        "dropped 1 training row(s) whose query is empty",
        {"data/train_QC.txt": good_then(ROW | {"id": 2, "origin_query": None, "label": 0})},
        code=0,
    ),
    Case(
        "accepted: CRLF line ends",
        "train.py",
        DATA,
        "out-of-fold F1",
        {"data/train_QC.txt": lines(rows()).replace("\n", "\r\n")},
        code=0,
    ),
    Case(
        "accepted: a byte-order mark",
        "train.py",
        DATA,
        "out-of-fold F1",
        {"data/train_QC.txt": "\ufeff" + lines(rows())},
        code=0,
    ),
    Case(
        "accepted: extra fields",
        "train.py",
        DATA,
        "out-of-fold F1",
        {"data/train_QC.txt": lines(rows(note="x"))},
        code=0,
    ),
    # predict.py and relevance register.
    Case("predict: no model", "predict.py", [], "needs model="),
    Case(
        "predict: no store",
        "predict.py",
        ["model=models:/x@champion", "tracking_uri=sqlite:///m.db"],
        "there is no tracking store at",
    ),
    Case(
        "predict: output_dir a file",
        "predict.py",
        ["model=models:/x@champion", "output_dir=taken"],
        "output_dir=taken is a file",
        {"taken": "x"},
    ),
    Case("predict: threshold 2", "predict.py", ["model=models:/x@champion", "threshold=2"], "threshold=2.0"),
    Case("predict: batch_size=x", "predict.py", ["model=x", "batch_size=x"], "batch_size=x: Value 'x' of type 'str'"),
    Case(
        "predict: unknown key",
        "predict.py",
        ["model=x", "modle=y"],
        "Key 'modle' not in 'PredictConfig'. Did you mean: 'model'?",
    ),
    Case(
        "predict: a folder that is no model",
        "predict.py",
        ["model=folder"],
        "folder",
        {"folder/readme.txt": "no model"},
    ),
    Case("register: no arguments", "relevance", ["register"], "the following arguments are required: --name"),
    Case(
        "register: unknown run",
        "relevance",
        ["register", "--run-id", "abc", "--name", "m", "--tracking-uri", STORE],
        "there is no tracking store",
    ),
    Case(
        "register: best in an empty folder",
        "relevance",
        ["register", "--best", "--name", "m"],
        "there is no tracking store",
    ),
]


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def _nothing_left(folder: Path) -> None:
    database = folder / "mlruns" / "mlflow.db"
    if database.exists():
        client = MlflowClient(f"sqlite:///{database}")
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert runs == [], [(r.info.run_name, r.info.status) for r in runs]
        assert client.search_registered_models() == []
    assert not (folder / "checkpoints").exists()
    assert not any((folder / "tmp").iterdir()), list((folder / "tmp").iterdir())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_input_is_refused_in_one_line_and_leaves_nothing(case, tmp_path, cache_dir):
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if case.id == "data: a bad dev file":
        (tmp_path / "data" / "train_QC.txt").write_text(lines(rows()))
        (tmp_path / "data" / "dev_QC.txt").write_text(lines(rows(4)[:1]) + "{'id': 9}\n")
    (tmp_path / "tmp").mkdir()
    env = {"RELEVANCE_CACHE": str(cache_dir), "TMPDIR": str(tmp_path / "tmp")}
    result = entry_points.run(case.script, *case.args, cwd=tmp_path, env=env)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.returncode == case.code, result.stderr[-3000:]
    if case.code == 0:
        assert case.words in result.stdout + result.stderr
        assert not any((tmp_path / "tmp").iterdir())
        return
    assert case.words in _one_error_line(result.stderr)
    _nothing_left(tmp_path)


def test_the_readme_counts_the_cases_there_are():
    """The README quotes how many cases of each kind there are; a case added or removed must update it."""
    assert len({case.id for case in CASES}) == len(CASES)
    kinds = Counter(case.id.split(":")[0] for case in CASES)
    readme = " ".join((ROOT / "README.md").read_text().split())
    for quoted in (
        f"feeds {len(CASES)} hostile cases",
        f"{kinds['data']} broken data files",
        f"{kinds['config']} config mistakes",
        f"{kinds['predict'] + kinds['register']} predict/register mistakes",
        f"{kinds['accepted']} odd-but-valid files",
        f"All {len(CASES)} pass",
    ):
        assert quoted in readme
