"""Translators behind one call, `translate(requests) -> translations`, with an on-disk cache.

A request is (text, source language, target language) in the competition's codes (`vn` for Vietnamese).
Three kinds, chosen by the `translator` config group: a translations file (JSON Lines), a seq2seq model (MADLAD-400,
NLLB) or a causal LM with a prompt (Seed-X, Qwen3, Gemma-3). Model output is cached in one sqlite file keyed by
the model and the request, so a sweep never translates the same text twice."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from relevance.data.records import LANGUAGE_NAMES
from relevance.data.translations_file import Request, read_translations
from relevance.errors import ConfigError, DataError, RelevanceError

log = logging.getLogger(__name__)


class TranslationCache:
    """sqlite table (model, source, target, text) -> translation; safe to share between sweep jobs."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS translations (model TEXT, source TEXT, target TEXT, text TEXT, "
            "translation TEXT, PRIMARY KEY (model, source, target, text))"
        )

    def get(self, model: str, requests: list[Request]) -> dict[Request, str]:
        found = {}
        for text, source, target in requests:
            row = self.db.execute(
                "SELECT translation FROM translations WHERE model=? AND source=? AND target=? AND text=?",
                (model, source, target, text),
            ).fetchone()
            if row:
                found[(text, source, target)] = row[0]
        return found

    def put(self, model: str, items: dict[Request, str]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?)",
                [(model, s, t, text, out) for (text, s, t), out in items.items()],
            )


@dataclass(frozen=True)
class TranslatorSettings:
    """One `translator` config file (conf/translator/*.yaml), typed: the run's and the bundle's translator."""

    name: str = "file"
    kind: str = "file"  # file | seq2seq | causal
    path: str | None = None  # kind=file: the JSON Lines translations file
    hub_id: str | None = None
    source: str | None = None  # hub | tiny (a random model of its kind, for tests)
    prompt: str = "{text}"
    codes: dict = field(default_factory=dict)  # competition code -> the model's code
    batch_size: int = 32
    max_new_tokens: int = 48
    forced_bos_code: bool = False  # NLLB: the target code forced as the first generated token

    @classmethod
    def from_dict(cls, values: dict | None) -> TranslatorSettings:
        """From the config group or a bundle's `translator` field (None: a file translator); unknown keys refused."""
        values = dict(values or {})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(
                f"translator.{unknown[0]} is not a translator setting; the keys are those of conf/translator/*.yaml."
            )
        values["codes"] = dict(values.get("codes") or {})
        return cls(**{k: v for k, v in values.items() if v is not None})


MODEL_TRANSLATORS: dict[str, type] = {}  # translator.kind -> class; "file" is read by Translations itself


def model_kind(cls):
    """Register a model translator under the `translator.kind` its config files carry."""
    MODEL_TRANSLATORS[cls.kind] = cls
    return cls


class ModelTranslator:
    """A model at the location `locate(settings)` gives (`relevance.weights.translator_location`: the hub id, or a tiny
    random model for tests), loaded on first use; greedy decoding, batched per language pair. A kind says which
    Auto class loads it and how its output is read."""

    kind = ""
    causal = False  # a causal LM continues the prompt: pad on the left, keep only the new tokens

    def __init__(self, settings: TranslatorSettings, locate: Callable):
        self.settings, self.locate = settings, locate
        self._model = None

    @property
    def key(self) -> str:
        """Changes whenever the output could: model, prompt, language codes, decoding length."""
        spec = json.dumps(
            {k: getattr(self.settings, k) for k in ("kind", "hub_id", "source", "prompt", "max_new_tokens")}
            | {"codes": self.settings.codes},
            sort_keys=True,
            default=str,
        )
        return f"{self.settings.name}:{hashlib.sha256(spec.encode()).hexdigest()[:16]}"

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        location = self.locate(self.settings)
        auto = AutoModelForCausalLM if self.causal else AutoModelForSeq2SeqLM
        from relevance.runtime import inference_device

        device = inference_device()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = auto.from_pretrained(location, dtype=dtype).to(device).eval()
        except OSError as error:
            raise RelevanceError(
                f"could not load translator {self.settings.name} ({location}): "
                f"{str(error).splitlines()[0]}; check translator.hub_id and your network, or use "
                f"translator=file with a translations file."
            ) from None
        if self.causal:
            tokenizer.padding_side = "left"  # generation continues from the last token of every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model = (tokenizer, model, device)

    def _code(self, language: str) -> str:
        return self.settings.codes.get(language, language)

    def _prompt(self, text: str, source: str, target: str) -> str:
        return self.settings.prompt.format(
            text=text,
            source_name=LANGUAGE_NAMES.get(source, source),
            target_name=LANGUAGE_NAMES.get(target, target),
            target_code=self._code(target),
        )

    def translate(self, requests: list[Request], progress: bool = False) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        if self._model is None:
            self._load()
        tokenizer, model, device = self._model
        out: dict[int, str] = {}
        pairs = sorted({(s, t) for _, s, t in requests})
        batches, size = [], self.settings.batch_size
        for source, target in pairs:
            rows = [i for i, (_, s, t) in enumerate(requests) if (s, t) == (source, target)]
            batches += [(source, target, rows[i : i + size]) for i in range(0, len(rows), size)]
        for source, target, rows in tqdm(batches, desc=f"translating ({self.settings.name})", disable=not progress):
            prompts = [self._prompt(requests[i][0], source, target) for i in rows]
            extra = {}
            if self.settings.forced_bos_code:  # NLLB: the source code on the tokenizer, the target as first token
                tokenizer.src_lang = self._code(source)
                extra["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(self._code(target))
            batch = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=256).to(device)
            with torch.inference_mode():
                generated = model.generate(
                    **batch,
                    max_new_tokens=self.settings.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    **extra,
                )
            if self.causal:
                generated = generated[:, batch["input_ids"].shape[1] :]
            for i, text in zip(rows, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                out[i] = " ".join(text.strip().splitlines()[:1]) if text.strip() else ""
        return [out[i] for i in range(len(requests))]


@model_kind
class Seq2SeqTranslator(ModelTranslator):
    kind = "seq2seq"  # MADLAD-400, NLLB


@model_kind
class CausalTranslator(ModelTranslator):
    kind = "causal"  # Seed-X, Qwen3, Gemma-3 with a prompt
    causal = True


@dataclass
class Translations:
    """What the pipeline calls: deduplicates, serves from the file or the cache, computes the rest, counts both."""

    settings: TranslatorSettings
    cache_dir: Path
    locate: Callable  # TranslatorSettings -> a location from_pretrained loads (relevance.weights.translator_location)
    lowercase: bool = True
    progress: bool = False
    computed: int = 0
    reused: int = 0
    _table: dict = field(default_factory=dict)
    _model: ModelTranslator | None = None
    _cache: TranslationCache | None = None

    def __call__(self, requests: list[Request]) -> dict[Request, str]:
        wanted = sorted(set(requests))
        if not wanted:
            return {}
        if self.settings.kind == "file":
            return self._from_file(wanted)
        if self._model is None:  # loaded once per run, however many calls (synthesis, concat, dev) need it
            self._model = MODEL_TRANSLATORS[self.settings.kind](self.settings, self.locate)
            self._cache = TranslationCache(self.cache_dir / "translations.sqlite")
        model, cache = self._model, self._cache
        found = cache.get(model.key, wanted)
        missing = [r for r in wanted if r not in found]
        if missing:
            log.info("translating %d texts with %s (%d already cached)", len(missing), self.settings.name, len(found))
            new = dict(zip(missing, model.translate(missing, self.progress)))
            cache.put(model.key, new)
            found.update(new)
        self.computed += len(missing)
        self.reused += len(wanted) - len(missing)
        return found

    def _from_file(self, wanted: list[Request]) -> dict[Request, str]:
        if not self.settings.path:
            raise ConfigError(
                "translator=file needs translator.path=<JSON Lines file of translations> (the demo "
                "data sets it itself); or choose a model, e.g. translator=madlad."
            )
        if not self._table:
            self._table = read_translations(self.settings.path, self.lowercase)
        missing = [r for r in wanted if r not in self._table]
        if missing:
            text, source, target = missing[0]
            raise DataError(
                self.settings.path,
                None,
                f"{len(missing)} of {len(wanted)} texts have no translation "
                f"(first: {text!r} {source}->{target}); add them to the file or "
                f"use a model translator such as translator=madlad.",
            )
        self.reused += len(wanted)
        return {r: self._table[r] for r in wanted}


def make_translations(
    translator: dict | None,
    cache: str | Path,
    lowercase: bool,
    locate: Callable,
    default_file: Path | None = None,
    progress=False,
) -> Translations:
    """The one way a run and a served model get their translator: `translator` as configured (None: a file
    translator), a file translator with no `path` reading `default_file` (generated data's own file); `locate`
    says where a model translator's weights are (`relevance.weights.translator_location`)."""
    settings = TranslatorSettings.from_dict(translator)
    if settings.kind == "file" and not settings.path and default_file:
        settings = replace(settings, path=str(default_file))
    return Translations(settings, Path(cache), locate, lowercase, progress)
