"""The class Hydra registers (entry point `hydra.plugins`). Hydra imports every plugin at each start, so this
stays light: Optuna, MLflow and the sweep itself load only when a sweep is configured."""

from __future__ import annotations

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

        # A mistake in the sweep's settings: one line, exit code 2. An interruption goes on to train.py's edge,
        # which says how to resume (the sweeper recorded the running trials as interrupted and queued them again).
        with user_errors_exit():
            return self.sweeper.sweep(arguments)
