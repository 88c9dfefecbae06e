"""What a run tells whoever follows it from outside. A plain run has no one to tell: this base does nothing. A sweep's
trial (sweep/trial.py) connects from the entry point and hears of the run's start and of every finished fold."""

from __future__ import annotations

import numpy as np


class RunObserver:
    number: int | None = None  # a sweep trial's number in its study; None: the run is no trial

    def started(self, mlflow_run_id: str) -> None:
        pass

    def fold_observer(self, metric: str, labels: np.ndarray, tasks: np.ndarray, parent_run_id: str):
        """A cross-validation observer (fold, out-of-fold scores so far, the fold's result) -> None."""
        return lambda fold, oof, result: None
