"""A random-initialised tiny decoder of a real architecture (Qwen3 or Gemma3 text) with a byte-level BPE
tokenizer trained in-process: the whole load -> LoRA -> train -> serve path in seconds, with no download.
Built deterministically from a seed, so a served model rebuilds exactly the base it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Gemma3TextConfig, PreTrainedTokenizerFast, Qwen3Config

from relevance.synthetic.lexicon import BRANDS, COLORS, concepts

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


def _corpus() -> list[str]:
    lines = []
    for concept in concepts():
        lines += [concept["path"], concept["noun"], *concept["attributes"], *concept["words"].values()]
    return lines + list(BRANDS) + list(COLORS) + ["query: category: title: relevant? yes no"]


def build_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def cached_tiny(cache: Path, kind: str, name: str, build: Callable[[], tuple]) -> Path:
    """`<cache>/<kind>/<name>`: the random tiny model and tokenizer that `build()` returns, saved once."""
    from relevance.atomic import build_folder

    def save(folder: Path) -> None:
        model, tokenizer = build()
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return build_folder(Path(cache) / kind / name, save)


def build_tiny(family: str, seed: int, hidden_size: int = 64, layers: int = 2):
    """(causal LM, tokenizer) of the given family with random weights fixed by `seed`."""
    tokenizer = build_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if family == "qwen3":
        config = Qwen3Config(**common, tie_word_embeddings=True)
    elif family == "gemma3":
        config = Gemma3TextConfig(**common, sliding_window=64)
    else:
        raise ValueError(f"tiny backbones exist for qwen3 and gemma3, not {family!r}")
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tokenizer


def build_tiny_seq2seq(seed: int, d_model: int = 32):
    """(random T5-style encoder-decoder, tokenizer): exercises the seq2seq translator path (MADLAD, NLLB) in tests."""
    from transformers import AutoModelForSeq2SeqLM, T5Config

    tokenizer = build_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=d_model * 2,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return AutoModelForSeq2SeqLM.from_config(config), tokenizer
