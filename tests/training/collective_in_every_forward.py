"""`train.py` with a collective in every scoring forward, on every rank: a stand-in for ZeRO-3, whose every forward
gathers the weights' shards from all ranks (DeepSpeed needs a CUDA GPU, so it cannot run here). A rank with one
batch fewer than the others then leaves them waiting in that collective forever."""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from relevance.model.module import RelevanceModule  # noqa: E402

_predict_step = RelevanceModule.predict_step


def _gathering_predict_step(self, batch, batch_idx):
    torch.distributed.all_reduce(torch.ones(1))  # as ZeRO-3's parameter gather before the forward
    return _predict_step(self, batch, batch_idx)


RelevanceModule.predict_step = _gathering_predict_step

# train.py run as the main script, with sys.argv[0] left as this script (Lightning re-runs it for the other ranks)
script = ROOT / "train.py"
exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__main__", "__file__": str(script)})
