import os
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


# Most tests check plumbing by training a random tiny model on a few rows, which need not learn; test_health checks
# that a run in which no fold learned fails by default.
PLUMBING = ["train.require_learning=false"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache per test session (tiny backbone, demo data), unless RELEVANCE_CACHE points at a warm one."""
    return Path(os.environ.get("RELEVANCE_CACHE") or tmp_path_factory.mktemp("cache"))


def compose_train(overrides: list[str], tmp_path: Path, cache_dir: Path):
    """The train config as `python train.py <overrides>` would see it, writing into tmp_path."""
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose(
            "train",
            overrides=[
                f"paths.root={tmp_path}",
                f"paths.cache={cache_dir}",
                "progress=false",
                f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
                *PLUMBING,
                *overrides,
            ],
        )
    return cfg


def compose_strategy(name: str):
    """The `strategy` config of `strategy=<name>`, as a run composes it (base file included)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose("train", overrides=[f"strategy={name}"]).strategy


def compose_predict(overrides: list[str], tmp_path: Path, cache_dir: Path):
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose(
            "predict",
            overrides=[
                f"paths.root={tmp_path}",
                f"paths.cache={cache_dir}",
                "progress=false",
                f"tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
                *overrides,
            ],
        )


def readme_commands() -> list[str]:
    """The README's bash blocks, one command per line (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


# id, English path, German, Spanish, French leaf-level translations of each level
CATEGORIES = {
    1: ["Apparel", "Bekleidung", "Ropa", "Vêtements"],
    2: ["Apparel > Hats", "Bekleidung > Hüte", "Ropa > Sombreros", "Vêtements > Chapeaux"],
    3: ["Apparel > Shoes", "Bekleidung > Schuhe", "Ropa > Zapatos", "Vêtements > Chaussures"],
    4: ["Apparel > Socks", "Bekleidung > Socken", "Ropa > Calcetines", "Vêtements > Chaussettes"],
    5: ["Apparel > Belts", "Bekleidung > Gürtel", "Ropa > Cinturones", "Vêtements > Ceintures"],
    6: ["Food", "Lebensmittel", "Comida", "Alimentation"],
    7: ["Food > Bread", "Lebensmittel > Brot", "Comida > Pan", "Alimentation > Pain"],
    8: ["Food > Cheese", "Lebensmittel > Käse", "Comida > Queso", "Alimentation > Fromage"],
    9: ["Food > Honey", "Lebensmittel > Honig", "Comida > Miel", "Alimentation > Miel"],
    10: ["Food > Flour", "Lebensmittel > Mehl", "Comida > Harina", "Alimentation > Farine"],
    11: ["Toys", "Spielzeug", "Juguetes", "Jouets"],
    12: ["Toys > Puzzles", "Spielzeug > Puzzles", "Juguetes > Rompecabezas", "Jouets > Puzzles"],
    13: ["Toys > Dolls", "Spielzeug > Puppen", "Juguetes > Muñecas", "Jouets > Poupées"],
    14: ["Toys > Kites", "Spielzeug > Drachen", "Juguetes > Cometas", "Jouets > Cerfs-volants"],
}
LOCALES = {"en-US": 0, "de-DE": 1, "es-ES": 2, "fr-FR": 3}
SPEC = dict(  # data.taxonomy.* for the handmade taxonomy
    train_languages=["en", "es", "fr"],
    eval_languages=["de"],
    train_rows=60,
    dev_rows_per_language=9,
    qi_rows=30,
    heldout_share=0.3,
)


@pytest.fixture(scope="session")
def taxonomy_dir(tmp_path_factory):
    """A handmade four-locale Google Product Taxonomy (the real files are not part of the repository)."""
    folder = tmp_path_factory.mktemp("taxonomy")
    for locale, column in LOCALES.items():
        lines = ["# Google_Product_Taxonomy_Version: 2015-02-19"]
        lines += [f"{category} - {names[column]}" for category, names in CATEGORIES.items()]
        (folder / f"taxonomy-with-ids.{locale}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_demo(
    rows: int, dev: int | None = None, test: int | None = None, folds: int | None = None, backbone: str | None = "tiny"
) -> list[str]:
    """The overrides of a small run most tests share: a backbone (the random tiny one unless told) on `rows`
    generated training rows per task, with the demo's dev and test rows and the folds when given."""
    return [
        *([f"backbone={backbone}"] if backbone else []),
        f"data.demo.train_rows={rows}",
        *([f"data.demo.dev_rows={dev}"] if dev is not None else []),
        *([f"data.demo.test_rows={test}"] if test is not None else []),
        *([f"split.n_folds={folds}"] if folds is not None else []),
    ]
