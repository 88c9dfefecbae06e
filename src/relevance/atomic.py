"""Folders that appear whole or not at all: a crash never leaves a half-written cache behind."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable


def build_folder(target: Path, build: Callable[[Path], None]) -> Path:
    """Run `build(staging)` into a sibling staging folder, then rename it to `target` (kept if it exists)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
