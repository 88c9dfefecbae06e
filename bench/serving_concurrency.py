"""A served model under concurrent requests: the same scores as one request alone, and what the lock costs.

    python bench/serving_concurrency.py                          # Gemma-3-270M, 2 folds, 160 requests
    python bench/serving_concurrency.py --backbone tiny --requests 80

Trains a 2-fold model on demo rows (`python train.py`, in a scratch folder with its own store), serves it with
`mlflow models serve --env-manager local`, and sends the same requests one at a time and from 8 threads: one row
per request, and batches of 16 mixed rows. Reports requests/s, median and 95th-percentile latency, and how far
any score strays from what the request alone got (it must be 0: requests score one at a time under a lock).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, table, write_section  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.serving.rest import free_port, post, served  # noqa: E402

ROWS = [
    {"language": "fr", "origin_query": "casquette", "category_path": "apparel accessories,hats & caps"},
    {"language": "de", "origin_query": "Mehl", "category_path": "food,grocery,flour, baking and cooking,flour"},
    {"language": "ja", "origin_query": "水筒", "category_path": "home & garden,kitchen & dining,water bottles"},
    {"language": "es", "origin_query": "auriculares", "category_path": "electronics,audio,headphones"},
]


def train(scratch: Path, backbone: str) -> str:
    """A registered 2-fold model; its registry URI."""
    uri = f"sqlite:///{scratch}/mlflow.db"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"backbone={backbone}",
        "split.n_folds=2",
        "data.demo.train_rows=240",
        "data.demo.dev_rows=40",
        "data.demo.test_rows=20",
        "train.require_learning=false",
        "progress=false",
        f"tracking.uri={uri}",
        f"tracking.artifact_root={scratch}/a",
        "register.name=bench-concurrency",
    ]
    subprocess.run(command, cwd=scratch, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return "models:/bench-concurrency@champion"


def measure(port: int, payloads: list[list[dict]], threads: int) -> tuple[float, list[float], list[list[float]]]:
    """Requests/s, each request's latency, and each request's scores."""

    def one(rows):
        started = time.perf_counter()
        scores = [p["score"] for p in post(port, rows)["predictions"]]
        return time.perf_counter() - started, scores

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(one, payloads))
    return len(payloads) / (time.perf_counter() - started), [a[0] for a in answers], [a[1] for a in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gemma3_270m")
    parser.add_argument("--requests", type=int, default=160)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        model = train(Path(scratch), args.backbone)
        port = free_port()
        with served(model, "local", {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}, port, seconds=300):
            for label, batch in (("1 row", ROWS[:1]), ("16 mixed rows", (ROWS * 4)[:16])):
                alone = [p["score"] for p in post(port, batch)["predictions"]]
                for threads in (1, 8):
                    rate, latency, scores = measure(port, [batch] * args.requests, threads)
                    stray = max(float(np.max(np.abs(np.subtract(s, alone)))) for s in scores)
                    q = statistics.quantiles(latency, n=20)
                    rows.append(
                        [label, threads, f"{rate:.1f}", f"{q[9] * 1000:.0f}", f"{q[18] * 1000:.0f}", f"{stray:.1e}"]
                    )
                    print(rows[-1], flush=True)
    body = table(
        ["request", "client threads", "requests/s", "median ms", "p95 ms", "max score difference vs alone"], rows
    )
    body += (
        f"\n\n{args.requests} requests per line, backbone {args.backbone}, a 2-fold ensemble served by "
        f"`mlflow models serve --env-manager local` on this machine's CPU."
    )
    write_section(f"serving-concurrency-{args.backbone}", f"Serving under concurrent requests ({args.backbone})", body)


if __name__ == "__main__":
    main()
