"""Decision-threshold search: the harness's exact sweep against an Optuna TPE search and a 0.01 grid.

    python bench/thresholds.py                       # 1e4, 1e5 and 1e6 scores, 3 repeats each
    python bench/thresholds.py --sizes 10000 --optuna-trials 50

Scores are drawn like a real model's out-of-fold scores: positives (62%, as in the competition's QI) from
Beta(5, 2), negatives from Beta(2, 5), so the best threshold is somewhere inside (0, 1) and F1 varies smoothly.
The exact sweep tries every distinct score with one sort, so no method can beat its F1; the table shows how much
the others lose and what they cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_section  # noqa: E402

from relevance.evaluation import metrics, thresholds  # noqa: E402


def grid(labels: np.ndarray, scores: np.ndarray, step: float = 0.01) -> thresholds.Tuned:
    """What many scripts do: F1 at 0, 0.01, ..., 1, one pass over the rows per threshold."""
    started = time.perf_counter()
    candidates = np.round(np.arange(0, 1 + step / 2, step), 10)
    f1 = [metrics.scores_at(labels, scores, t).f1 for t in candidates]
    best = int(np.argmax(f1))
    return thresholds.Tuned("grid", float(candidates[best]), f1[best], time.perf_counter() - started)


def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.62).astype(int)
    scores = np.where(labels == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))
    return labels, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optuna-trials", type=int, default=100)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    methods = {
        "exact (every distinct score)": lambda y, s, k: thresholds.exact(y, s),
        "0.01 grid (101 thresholds)": lambda y, s, k: grid(y, s),
        f"Optuna TPE ({args.optuna_trials} trials)": lambda y, s, k: thresholds.optuna_search(
            y, s, args.optuna_trials, seed=k
        ),
    }
    body = []
    for n in args.sizes:
        for name, method in methods.items():
            runs = []
            for repeat in range(args.repeats):
                labels, scores = sample(n, seed=repeat)
                exact_f1 = metrics.best_f1_threshold(labels, scores).f1
                tuned = method(labels, scores, repeat)
                runs.append((tuned.seconds, tuned.f1, exact_f1 - tuned.f1, tuned.threshold))
            seconds, f1, loss, threshold = (np.array(column) for column in zip(*runs))
            body.append(
                [
                    f"{n:,}",
                    name,
                    f"{1000 * np.median(seconds):.1f}",
                    f"{np.mean(f1):.5f}",
                    f"{np.mean(loss):.1e}",
                    f"{np.mean(threshold):.4f}",
                ]
            )
            print(" | ".join(map(str, body[-1])), flush=True)
    text = table(["scores", "method", "median ms", "F1 (mean)", "F1 below exact (mean)", "threshold (mean)"], body)
    text += f"\n\n{args.repeats} draws per size; times are the median, on the machine described at the top."
    print()
    print(text)
    if not args.no_write:
        write_section("thresholds", "Thresholds: exact sweep against a 0.01 grid and Optuna", text)


if __name__ == "__main__":
    main()
