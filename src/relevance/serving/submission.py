"""Write and check submission files: JSON Lines of {id, prediction}, every input id exactly once, 0/1 only."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from relevance.errors import DataError
from relevance.tasks import TASKS


def validate_submission(path: str | Path, expected_ids: list[int]) -> None:
    """Raise DataError unless `path` covers every expected id exactly once with a 0/1 prediction."""
    path = Path(path)
    seen: dict[int, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(path, line_number, "not valid JSON.") from None
            if not isinstance(row, dict) or "id" not in row or "prediction" not in row:
                raise DataError(path, line_number, "each line needs 'id' and 'prediction'.")
            if row["prediction"] not in (0, 1) or isinstance(row["prediction"], bool):
                raise DataError(path, line_number, f"prediction is {row['prediction']!r}; it must be 0 or 1.")
            if row["id"] in seen:
                raise DataError(path, line_number, f"id {row['id']} already appeared on line {seen[row['id']]}.")
            seen[row["id"]] = line_number
    missing = set(expected_ids) - set(seen)
    extra = set(seen) - set(expected_ids)
    if missing or extra:
        raise DataError(
            path,
            None,
            f"{len(missing)} input ids have no prediction and {len(extra)} predictions "
            f"match no input id (e.g. {sorted(missing or extra)[:3]}).",
        )


def write_submission(path: str | Path, ids: list[int], predictions, expected_ids: list[int]) -> Path:
    """Write atomically, then validate; a failed check leaves no file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".partial")
    with staging.open("w", encoding="utf-8") as handle:
        for row_id, prediction in zip(ids, predictions):
            handle.write(json.dumps({"id": int(row_id), "prediction": int(prediction)}) + "\n")
    try:
        validate_submission(staging, expected_ids)
    except DataError:
        staging.unlink()
        raise
    os.replace(staging, path)
    return path


def zip_submissions(folder: str | Path) -> Path | None:
    """`submission.zip` with both task files, once both exist (the organisers' upload format)."""
    folder = Path(folder)
    files = [folder / task.file_name("submit") for task in TASKS.values()]
    if not all(f.is_file() for f in files):
        return None
    target = folder / "submission.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            archive.write(f, f.name)
    return target
