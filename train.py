"""Cross-validated LoRA training, tracked in MLflow. `python train.py --help` lists the config groups."""

import signal
import sys

# Until exit_on_interrupt below takes over (the imports take a moment), a signal ends start-up quietly.
for _signal in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signal, lambda signum, frame: sys.exit(128 + signum))

import warnings

import hydra
from omegaconf import DictConfig

from relevance import multirun
from relevance.cli import config_errors_exit, exit_on_interrupt, language_table, quiet_libraries, user_errors_exit

# Hydra 1.4 asks call sites to whitelist instantiated targets; the sweep callbacks it instantiates are our own.
warnings.filterwarnings("ignore", message=r".*_target_='relevance\.(sweep|multirun)\..*", category=UserWarning)


@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from relevance.data.sources import check_folder_early
    from relevance.tasks import task_parts

    in_sweep = cfg.sweep.trial is not None  # a sweep records a failed trial and goes on; a single run exits
    job = multirun.in_multirun() and not in_sweep  # a multirun's failed job is recorded and the next job runs
    with user_errors_exit(reraise=in_sweep, errors_to_caller=job):
        check_folder_early(cfg.data, list(task_parts(cfg.task)), list(HydraConfig.get().overrides.task))
        from relevance.build import train
        from relevance.evaluation.reporting import headline
        from relevance.ranks import failure_ends_every_rank
        from relevance.sweep.trial import connect

        quiet_libraries()  # again: importing Lightning sets its own loggers back to INFO

        with failure_ends_every_rank(multirun_job=multirun.in_multirun()), multirun.recording_run_id():
            summary = train(cfg, connect(cfg))
        if in_sweep:
            print(f"trial {cfg.sweep.trial}, run {summary['run_id']}:\n{headline(summary)}")
            return summary[cfg.sweep.metric]
        print("\n" + language_table(summary["languages"]))
        print(f"\nrun {summary['run_id']}:\n{headline(summary)}")
        print(
            f"compare runs: mlflow ui --backend-store-uri {summary['tracking_uri']} --workers 1\n"
            f"register it:  relevance register --run-id {summary['run_id']} --name relevance-{cfg.task.name} "
            f"--tracking-uri {summary['tracking_uri']}"
        )
        return summary["oof_best_f1"]


if __name__ == "__main__":
    # SIGTERM or Ctrl-C anywhere: exit 143/130 and one line; a wrong type or unknown key: one line, exit code 2
    with exit_on_interrupt("training"), config_errors_exit(), multirun.failures_exit():
        main()
