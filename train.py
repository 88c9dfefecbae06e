"""Cross-validated LoRA training, tracked in MLflow. `python train.py --help` lists the config groups."""

import hydra
from omegaconf import DictConfig

from relevance.cli import headline, language_table, user_errors_exit


@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from relevance.pipeline import run

    with user_errors_exit():
        summary = run(cfg)
        print("\n" + language_table(summary["languages"]))
        print(f"\nrun {summary['run_id']}:\n{headline(summary)}")
        print(f"compare runs: mlflow ui --backend-store-uri {summary['tracking_uri']} --workers 1\n"
              f"register it:  relevance register --run-id {summary['run_id']} --name relevance-{cfg.task.name} "
              f"--tracking-uri {summary['tracking_uri']}")
        return summary["oof_best_f1"]


if __name__ == "__main__":
    main()
