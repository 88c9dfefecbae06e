"""Read the competition's JSON Lines files (named .txt) into validated records, with one clear error per mistake."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from relevance.data.records import MAX_FIELD_CHARS, Record
from relevance.errors import DataError
from relevance.tasks import QC, TASKS

log = logging.getLogger(__name__)

_REQUIRED = ("id", "task", "language", "origin_query")
GZIP_MAGIC = b"\x1f\x8b"


def _label(value, path, line: int) -> int:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
    if value in (0, 1, "0", "1"):
        return int(value)
    raise DataError(path, line, f'label is {value!r}; it must be 0 or 1 (an int or the string "0"/"1").')


def parse_row(row, task: str, path, line: int, require_label: bool) -> Record:
    """Validate one decoded JSON object; `path` and `line` only name the place in errors."""
    if not isinstance(row, dict):
        raise DataError(
            path, line, f"expected a JSON object, found {type(row).__name__}; each line must be one object."
        )
    target_field = TASKS[task].target_field
    other = TASKS[TASKS[task].other]
    if target_field not in row and other.target_field in row:
        raise DataError(
            path,
            line,
            f"this is a {other.code} file (its rows have {other.target_field}, not {target_field}); "
            f"give it as {other.file_name('train').replace('train', '<split>')} or use task={other.code.lower()}.",
        )
    for field in (*_REQUIRED, target_field):
        if field not in row:
            raise DataError(
                path, line, f"missing field '{field}'; {task} rows need {', '.join((*_REQUIRED, target_field))}."
            )
    if row["task"] != task:
        raise DataError(
            path,
            line,
            f"task is {row['task']!r} but this file is read as {task!r}; check the file name or the task= option.",
        )
    row_id = row["id"]
    if isinstance(row_id, str) and row_id.strip().isdigit():
        row_id = int(row_id)
    if not isinstance(row_id, int) or isinstance(row_id, bool):
        raise DataError(path, line, f"id is {row['id']!r}; it must be an integer.")
    language = row["language"]
    if not isinstance(language, str) or not language.strip():
        raise DataError(path, line, f"language is {language!r}; it must be a language code such as 'en' or 'vn'.")
    query = row["origin_query"]
    if query is None:
        query = ""
    if not isinstance(query, str):
        raise DataError(path, line, f"origin_query is {query!r}; it must be a string.")
    target = row[target_field]
    if target is None and TASKS[task].target_may_be_null:
        target = ""  # 453 real QI train rows have a null title, 231 of them relevant: keep them.
    if not isinstance(target, str):
        raise DataError(path, line, f"{target_field} is {target!r}; it must be a string.")
    label = None
    if row.get("label") is not None:
        label = _label(row["label"], path, line)
    elif require_label:
        said = "label is null" if "label" in row else "missing field 'label'"
        raise DataError(path, line, f"{said}; training files need a 0/1 label on every row.")
    query, target = query[:MAX_FIELD_CHARS], target[:MAX_FIELD_CHARS]  # see MAX_FIELD_CHARS
    return Record(id=row_id, task=task, language=language.strip().lower(), query=query, target=target, label=label)


def _too_long(row, task: str) -> bool:
    return any(
        isinstance(row.get(field), str) and len(row[field]) > MAX_FIELD_CHARS
        for field in ("origin_query", TASKS[task].target_field)
    )


def json_lines(path: Path):
    """(line number, decoded object) for each non-blank line; UTF-8 and JSON mistakes name the file and line.
    A file that takes more than a few seconds shows a progress bar (bytes read, the rate, rows so far and rows/s)."""
    from tqdm.auto import tqdm

    with (
        path.open("rb") as handle,
        tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, delay=3, desc=f"reading {path.name}", leave=False
        ) as bar,
    ):
        if handle.read(2) == GZIP_MAGIC:
            raise DataError(path, None, "this is a gzip archive; decompress it (gunzip) and give the text file.")
        handle.seek(0)
        for line_number, raw in enumerate(handle, start=1):
            bar.update(len(raw))
            if line_number % 20_000 == 0:
                rate = line_number / max(bar.format_dict["elapsed"], 1e-6)
                bar.set_postfix_str(f"{line_number:,} rows, {rate:,.0f} rows/s", refresh=False)
            try:
                text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(path, line_number, "not UTF-8 text; save the file as UTF-8.") from None
            if not text.strip():
                continue
            try:
                yield line_number, json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(path, line_number, _json_mistake(text, error)) from None


def _json_mistake(text: str, error: json.JSONDecodeError) -> str:
    """What a line that is not one JSON object most likely is, and the fix."""
    stripped = text.strip()
    if stripped in ("[", "]") or stripped.startswith("[{"):
        return "the file holds a JSON array; write one JSON object per line (JSON Lines), e.g. with jq -c '.[]'."
    if stripped in ("{", "}") or stripped.startswith('"'):
        return "an object spread over several lines (pretty-printed JSON); write one JSON object per line."
    if stripped.startswith("{") and error.pos >= len(text.rstrip()):  # the text ran out inside the object
        return (
            f"the line ends before its object does ({error.msg} at column {error.colno}): it is cut off, or an "
            f"object spread over several lines; each line must be one whole JSON object."
        )
    return f"not valid JSON ({error.msg} at column {error.colno}); each line must be one JSON object."


def read_records(
    path: str | Path, task: str, require_label: bool = False, max_rows: int | None = None, seed: int = 0
) -> list[Record]:
    """Read one competition file. Raises DataError naming the file and line for any malformed row.

    `max_rows`: keep a uniform random sample of that many rows, drawn while reading (reservoir sampling, seeded),
    in file order: every line is still checked, but only the sample is kept, so memory holds `max_rows` rows
    whatever the file's size, and what follows reading works on the sample alone."""
    path = Path(path)
    task = task.upper()
    if task not in TASKS:
        raise DataError(path, None, f"unknown task {task!r}; use QC or QI.")
    if not path.is_file():
        raise DataError(path, None, "file not found; set data.dir to the folder holding train_QC.txt etc.")
    records: list[Record] = []
    first_line_of: dict[int, int] = {}
    cut: list[int] = []  # lines whose query or target was cut at MAX_FIELD_CHARS
    draw, kept_lines, seen = random.Random(seed), [], 0
    for line_number, row in json_lines(path):
        record = parse_row(row, task, path, line_number, require_label)
        if _too_long(row, task):
            cut.append(line_number)
        if record.id in first_line_of:
            raise DataError(
                path,
                line_number,
                f"id {record.id} already appeared on line {first_line_of[record.id]}; "
                f"ids must be unique within a file.",
            )
        first_line_of[record.id] = line_number
        seen += 1
        if not max_rows or len(records) < max_rows:
            records.append(record)
            kept_lines.append(line_number)
        elif (slot := draw.randrange(seen)) < max_rows:  # row `seen` replaces a kept one with chance max_rows/seen
            records[slot], kept_lines[slot] = record, line_number
    if not records:
        raise DataError(path, None, "the file is empty; expected one JSON object per line.")
    if max_rows and seen > max_rows:
        records = [record for _, record in sorted(zip(kept_lines, records), key=lambda pair: pair[0])]
        log.info("%s: kept a random %d of its %d rows (data.max_rows, seed %d)", path, max_rows, seen, seed)
    if cut:
        log.warning(
            "%s: %d row(s) hold a query or target over %d characters (first on line %d); cut there, since no "
            "model reads that far",
            path,
            len(cut),
            MAX_FIELD_CHARS,
            cut[0],
        )
    return records


def write_records(path: str | Path, records: list[Record]) -> None:
    """Write records in the competition's own format (used by the demo generator)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            row = {
                "id": record.id,
                "task": record.task,
                "language": record.language,
                "origin_query": record.query,
                TASKS[record.task].target_field: record.target,
            }
            if record.label is not None:
                row["label"] = record.label
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_catalogue(path: str | Path) -> list[Record]:
    """Category paths to compare with (head.catalogue_file): a QC file in the competition's format (its
    category_path values, such as test_QC.txt) or a UTF-8 text file with one path per line, written as the data
    files write them. Returned as QC records with an empty query, so they are cleaned and read like targets."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found; set head.catalogue_file to a file of category paths.")
    with path.open("rb") as handle:
        first = next((line.strip() for line in handle if line.strip()), b"")
    if first.startswith(b"{"):
        paths = [record.target for record in read_records(path, QC.code)]
    else:
        try:
            paths = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as error:
            raise DataError(path, None, f"not UTF-8 text ({error.reason}); save it as UTF-8.") from None
    if not paths:
        raise DataError(path, None, "the file holds no category path; write one path per line.")
    return [Record(id=i, task=QC.code, language="", query="", target=target) for i, target in enumerate(paths)]
