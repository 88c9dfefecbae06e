"""The class Hydra registers (entry point `hydra.plugins`). Hydra imports every plugin at each start, so this
stays light: Optuna, MLflow and the sweep itself load only when a sweep is configured."""

from __future__ import annotations

import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RelevanceSweeper(Sweeper):
    def __init__(self, **settings: Any):
        from relevance.sweep.sweeper import StudySweeper

        self.sweeper = StudySweeper(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from relevance.cli import user_errors_exit

        with user_errors_exit():  # a mistake in the sweep's settings: one line, exit code 2
            try:
                return self.sweeper.sweep(arguments)
            except KeyboardInterrupt:  # the running trials are recorded as interrupted and queued again
                print("\ninterrupted: run the same command again to resume the study", file=sys.stderr)
                sys.exit(130)
