"""Cross-validated LoRA training, tracked in MLflow. `python train.py --help` lists the config groups."""

import hydra
from omegaconf import DictConfig

from relevance.cli import language_table, user_errors_exit


@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from relevance.pipeline import run

    with user_errors_exit():
        summary = run(cfg)
        print("\n" + language_table(summary["languages"]))
        print(f"\nrun {summary['run_id']}: out-of-fold F1 {summary['oof_best_f1']:.4f} at threshold "
              f"{summary['oof_best_threshold']:.3f} ({summary['oof_at_0.5_f1']:.4f} at 0.5; all-positive floor "
              f"{summary['oof_all_positive_f1']:.4f})")
        if "dev_f1_at_oof_threshold" in summary:
            print(f"dev F1 (fold ensemble, out-of-fold threshold): {summary['dev_f1_at_oof_threshold']:.4f} "
                  f"(floor {summary['dev_all_positive_f1']:.4f})")
        print(f"compare runs: mlflow ui --backend-store-uri {summary['tracking_uri']} --workers 1\n"
              f"register it:  relevance register --run-id {summary['run_id']} --name relevance-{cfg.task.name} "
              f"--tracking-uri {summary['tracking_uri']}")
        return summary["oof_best_f1"]


if __name__ == "__main__":
    main()
