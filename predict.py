"""Score a competition file with a registered or logged model and write the submission file."""

import signal
import sys

# Until exit_on_interrupt below takes over (the imports take a moment), a signal ends start-up quietly.
for _signal in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signal, lambda signum, frame: sys.exit(128 + signum))

import hydra
from omegaconf import DictConfig

from relevance.cli import config_errors_exit, exit_on_interrupt, user_errors_exit


@hydra.main(config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from relevance.serving.predict import run

    with user_errors_exit():
        run(cfg)


if __name__ == "__main__":
    # SIGTERM or Ctrl-C: exit 143/130 and one line; a value of the wrong type or an unknown key: one line, exit 2
    with exit_on_interrupt("prediction"), config_errors_exit():
        main()
