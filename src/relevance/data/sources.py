"""Which file holds a task's train/dev/test rows: the user's competition folder, the generated demo, or the set
built from the Google Product Taxonomy files."""

from __future__ import annotations

from pathlib import Path

from relevance.errors import ConfigError, DataError
from relevance.synthetic.demo import TRANSLATIONS_FILE, DemoSpec, generate_demo
from relevance.synthetic.taxonomy import TaxonomySpec, generate_taxonomy
from relevance.tasks import TASKS

FILE_SPLITS = ("train", "dev", "test", "dev_user")  # dev_user: data=taxonomy's users'-queries view
DEMO_READS_NO_FOLDER = (
    "data=demo generates its own rows and reads no folder; for your files give data=competition data.dir=<folder> "
    "(or data=taxonomy data.dir=<taxonomy files>)."
)


def demo_folder(data_cfg, cache: str | Path) -> Path:
    """The synthetic demo, generated once into the cache; a folder given to it (`+data.dir=`) is refused, or the
    run would train on the demo while the user believes it reads their files."""
    if data_cfg.get("dir"):
        raise ConfigError(f"data.dir={data_cfg.dir}: {DEMO_READS_NO_FOLDER}")
    spec = DemoSpec(**data_cfg.demo)
    return generate_demo(Path(cache) / "demo" / spec.folder_name(), spec)


def taxonomy_folder(data_cfg, cache: str | Path) -> Path:
    """The set built from the Google Product Taxonomy files in data.dir, once into the cache."""
    if not data_cfg.get("dir"):
        raise ConfigError(
            "data=taxonomy needs data.dir=<folder holding taxonomy-with-ids.<locale>.txt> (the "
            "Google Product Taxonomy files), or RELEVANCE_TAXONOMY_DIR set to it."
        )
    spec = TaxonomySpec(**data_cfg.taxonomy)
    return generate_taxonomy(Path(data_cfg.dir), Path(cache) / "taxonomy" / spec.folder_name(), spec)


def competition_folder(data_cfg, cache: str | Path) -> Path:
    """The user's folder of competition files, as it is."""
    if not data_cfg.get("dir"):
        raise ConfigError(
            "data=competition needs data.dir=<folder holding train_QC.txt, dev_QC.txt, ...>; or use data=demo."
        )
    folder = Path(data_cfg.dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"data.dir={data_cfg.dir} is not a folder; point it at the folder with the competition files."
        )
    return folder


def check_folder_early(data_cfg, task_codes: list[str], overrides: list[str]) -> None:
    """In a second, before the libraries that training needs are imported (half a minute and 600 MB on 2 cores): a
    folder given to a data source that reads none (`+data.dir=`, which Hydra suggests for data=demo), and a user's
    folder that is not one or lacks a training file."""
    if any(override.startswith("+data.dir=") for override in overrides):
        raise ConfigError(
            f"+data.dir: {DEMO_READS_NO_FOLDER}"
            if data_cfg.name == "demo"
            else (f"+data.dir: data={data_cfg.name} reads no folder (its config has no data.dir).")
        )
    if data_cfg.get("generated"):
        return
    folder = competition_folder(data_cfg, "")
    for code in task_codes:
        path = folder / TASKS[code].file_name("train")
        if not path.is_file():
            raise DataError(path, None, "file not found; set data.dir to the folder holding train_QC.txt etc.")


def data_folder(data_cfg, cache: str | Path) -> Path:
    """The folder a data config's `folder` function (`_target_`) gives; the user's own folder when it names none."""
    if not data_cfg.get("folder"):
        return competition_folder(data_cfg, cache)
    from hydra.utils import instantiate

    return instantiate(data_cfg.folder, _partial_=True, _execution_whitelist_=("relevance.data.*",))(data_cfg, cache)


def data_file(data_cfg, cache: str | Path, task: str, which: str) -> Path:
    """`<folder>/<which>_<TASK>.txt`, the competition's naming (which: train, dev or test)."""
    if which not in FILE_SPLITS:
        raise ConfigError(f"file={which!r} is not a data file; use one of {', '.join(FILE_SPLITS)}.")
    return data_folder(data_cfg, cache) / TASKS[task.upper()].file_name(which)


def generated(data_cfg) -> bool:
    """Data the harness writes itself (demo, taxonomy), with its own translations file."""
    return bool(data_cfg.get("generated"))


def own_translations(data_cfg, cache: str | Path) -> Path | None:
    """The generated data's own translations file (what translator=file reads by default); None for other data."""
    return data_folder(data_cfg, cache) / TRANSLATIONS_FILE if generated(data_cfg) else None
