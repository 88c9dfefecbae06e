"""Users' queries from category names: the taxonomy benchmark's second view (issue 31, item 5).

The taxonomy's queries are clean category names ("Handschuhe"); shoppers type several words with brands,
attributes, sizes, typos and words of another language ("nordvik handshuhe schwarz xl"). `user_query` rewrites a
category-name query into such a query, deterministically (seeded by the query itself, so every candidate row of one
query gets the same rewrite), from what the taxonomy knows of it: its name, its parent's name in the same language
and attribute words of that language. The candidate and the label stay, so the two views of a dev set are the same
pairs and differ only in how the query is written.

Each rewrite, drawn independently per query:
- a brand (made-up names, Latin script: a Japanese query becomes mixed-script), half the queries;
- one attribute of the query's language (colour, audience, size words, material), most queries; a second, some;
- a size or quantity ("xl", "42", "500 ml"), a quarter;
- the parent category's name in the query's language, a third ("Handschuhe Bekleidungsaccessoires");
- an English attribute in a non-English query (code switching), a quarter;
- a typo in the category name (a dropped, doubled or swapped letter in a word of 5+ letters; not in Japanese), a
  third.
"""

from __future__ import annotations

import hashlib
import random

from relevance.data.records import Record

ATTRIBUTES = {  # colour, audience, size, price, material: words shoppers add, per language
    "en": ["black", "red", "blue", "white", "for kids", "men's", "women's", "cheap", "large", "small", "waterproof"],
    "es": ["negro", "rojo", "azul", "blanco", "para niños", "hombre", "mujer", "barato", "grande", "pequeño", "madera"],
    "fr": ["noir", "rouge", "bleu", "blanc", "enfant", "homme", "femme", "pas cher", "grand", "petit", "en bois"],
    "ja": ["黒", "赤", "青", "白", "子供用", "メンズ", "レディース", "安い", "大きい", "小さい", "防水"],
    "pt": ["preto", "vermelho", "azul", "branco", "infantil", "masculino", "feminino", "barato", "grande", "pequeno"],
    "de": ["schwarz", "rot", "blau", "weiß", "für kinder", "herren", "damen", "günstig", "groß", "klein", "holz"],
    "it": ["nero", "rosso", "blu", "bianco", "per bambini", "uomo", "donna", "economico", "grande", "piccolo"],
    "pl": ["czarny", "czerwony", "niebieski", "biały", "dla dzieci", "męskie", "damskie", "tanie", "duży", "mały"],
}
BRANDS = ["nordvik", "kazumi", "lumio", "brixa", "solenne", "tamaro", "velko", "orsa"]  # made up
SIZES = ["xl", "m", "42", "38", "2 m", "500 ml", "1 kg", "2 pcs", "set 3", "2024"]


def _rng(language: str, query: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{language}\0{query}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(word) - 2)
    kind = rng.choice(("drop", "double", "swap"))
    if kind == "drop":
        return word[:at] + word[at + 1 :]
    if kind == "double":
        return word[: at + 1] + word[at] + word[at + 1 :]
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


def user_query(query: str, language: str, parent: str | None, seed: int = 0) -> str:
    """The category-name `query` written as a shopper might type it (`parent`: its parent category's name in the
    same language, or None)."""
    rng = _rng(language, query, seed)
    words = query.split()
    if language != "ja" and rng.random() < 1 / 3:
        long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if long:
            i = rng.choice(long)
            words[i] = _typo(words[i], rng)
    name = " ".join(words)
    before, after = [], []
    if rng.random() < 0.5:
        before.append(rng.choice(BRANDS))
    own = ATTRIBUTES.get(language, ATTRIBUTES["en"])
    for share in (0.8, 0.3):
        if rng.random() < share:
            (after if rng.random() < 0.6 else before).append(rng.choice(own))
    if language != "en" and rng.random() < 0.25:
        after.append(rng.choice(ATTRIBUTES["en"]))
    if rng.random() < 0.25:
        after.append(rng.choice(SIZES))
    if parent and rng.random() < 1 / 3:
        after.insert(0, parent)
    return " ".join([*before, name, *after])


def user_view(records: list[Record], parents: dict[tuple[str, str], str | None], seed: int = 0) -> list[Record]:
    """The same rows with each query rewritten by `user_query` (`parents`: (language, query) -> parent name)."""
    return [
        Record(
            r.id,
            r.task,
            r.language,
            user_query(r.query, r.language, parents.get((r.language, r.query)), seed),
            r.target,
            r.label,
        )
        for r in records
    ]
