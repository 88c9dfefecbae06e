"""`train.py` with a fault on one rank only (RELEVANCE_TEST_FAULT_RANK), a stand-in for what one rank can meet alone
(a GPU error, a full local disk): raised where a fold's held-out scores are evaluated, after the first fold's
collectives. Lightning re-runs this script (sys.argv[0]) for its other ranks, so the fault travels with them."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

if os.environ.get("LOCAL_RANK", "0") == os.environ["RELEVANCE_TEST_FAULT_RANK"]:
    from relevance.training import cross_validation

    def _fault(*args, **kwargs):
        raise RuntimeError(f"injected fault on rank {os.environ['RELEVANCE_TEST_FAULT_RANK']}")

    cross_validation.evaluate = _fault

# train.py run as the main script, with sys.argv[0] left as this script (runpy would set it to train.py)
script = ROOT / "train.py"
exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__main__", "__file__": str(script)})
