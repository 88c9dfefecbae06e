"""The tasks, in one home: QC (does the query match a category path?), QI (does it match an item title?), and
Joint (one model for both; each row says which task it is). A task knows the field its candidate text is in, its
files, its languages, the other task (TAPT's first stage trains on it), how its metrics are named, and a row a client
can send; its prompt lives in its YAML file (conf/task/). Code elsewhere asks the task object, never its name."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class Task:
    """One competition task."""

    code: str
    target_field: str
    seen_languages: tuple[str, ...]  # labelled training rows exist in these
    unseen_languages: tuple[str, ...]  # only in dev/test
    other: str
    target_is_path: (
        bool  # a category path of comma-separated levels (hierarchy tags, leaf-first order, category splits)
    )
    target_may_be_null: bool  # a missing target reads as empty (real QI rows have null titles)
    example: dict  # a row a client can send (language, query, target)
    other_query: str  # another query for the example's second row, which should not match its target

    @property
    def parts(self) -> tuple[Task, ...]:
        return (self,)

    @property
    def rows_name_their_task(self) -> bool:
        """Whether each input row must say which task it is (only a joint model reads the `task` column)."""
        return False

    @property
    def target_fields(self) -> tuple[str, ...]:
        return (self.target_field,)

    def file_name(self, which: str) -> str:
        """The competition's naming: train_QC.txt, dev_QI.txt, submit_QC.txt, ..."""
        return f"{which}_{self.code}.txt"

    def metric_prefix(self, part: str) -> str:
        """A single task's metrics are named bare (oof_best_f1)."""
        return ""

    def example_rows(self) -> list[dict]:
        """Two rows a user can send as they are: the example, and another query against the same target."""
        row = {"task": self.code, **self.example}
        return [row, row | {"origin_query": self.other_query}]


@dataclass(frozen=True)
class Joint:
    """One model for several tasks, trained together; the headline F1 is the mean of the parts' (the competition
    score)."""

    parts: tuple[Task, ...]
    code: str = "JOINT"
    other: None = None  # no other task to pre-train on

    @property
    def rows_name_their_task(self) -> bool:
        return True

    @property
    def target_fields(self) -> tuple[str, ...]:
        return tuple(part.target_field for part in self.parts)

    def metric_prefix(self, part: str) -> str:
        """Each part's metrics carry its code: qc_oof_best_f1, qi_oof_best_f1."""
        return f"{part.lower()}_"

    def example_rows(self) -> list[dict]:
        """A row of each part, each with the other parts' target fields empty."""
        return [
            {"task": part.code, **part.example}
            | {field: None for field in self.target_fields if field not in part.example}
            for part in self.parts
        ]


QC = Task(
    "QC",
    "category_path",
    ("en", "es", "fr", "ja", "ko", "pt"),
    ("ar", "de", "it", "pl"),
    other="QI",
    target_is_path=True,
    target_may_be_null=False,
    example={"language": "en", "origin_query": "baking flour", "category_path": "Food,Baking,Flour"},
    other_query="garden hose",
)
QI = Task(
    "QI",
    "item_title",
    ("en", "es", "fr", "ja", "ko", "pt", "th"),
    ("ar", "de", "it", "pl", "id", "vn"),
    other="QC",
    target_is_path=False,
    target_may_be_null=True,
    example={"language": "fr", "origin_query": "farine de blé", "item_title": "Farine de blé T55 1 kg"},
    other_query="vélo",
)
TASKS = {task.code: task for task in (QC, QI)}  # the single tasks, by code
JOINT = Joint((QC, QI))
KINDS = {**TASKS, JOINT.code: JOINT}  # what a model can be trained for: QC, QI or JOINT


def task_kind(code: str) -> Task | Joint:
    """The task (or joint task) of a code: QC, QI or JOINT."""
    return KINDS[code.upper()]


def task_parts(task: DictConfig) -> dict[str, DictConfig]:
    """Task code -> its `task` config group (its prompt): one entry, or one per part for task=joint."""
    if task_kind(task.code).rows_name_their_task:
        return {part.code: part for part in task.parts.values()}
    return {task.code: task}
