"""Score a competition file with a registered or logged model and write the submission file."""

import hydra
from omegaconf import DictConfig

from relevance.cli import config_errors_exit, user_errors_exit


@hydra.main(config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from relevance.serving.predict import run

    with user_errors_exit(doing="prediction"):
        run(cfg)


if __name__ == "__main__":
    with config_errors_exit():  # a value of the wrong type or an unknown key: one line, exit code 2
        main()
