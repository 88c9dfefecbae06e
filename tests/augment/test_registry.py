"""Augmentations as a registry: each YAML file of conf/augmentation has its one registered class, and a new one
rewrites rows, adds training rows and refuses bad options without any other module knowing its name."""

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from relevance.augment import AUGMENTATIONS, rewrite_text
from relevance.augment.base import Augmentation, chosen
from relevance.data.records import Record
from relevance.data.training_data import DataSettings, prepare_data
from relevance.errors import ConfigError
from tests.conftest import ROOT


def test_every_augmentation_file_has_its_class():
    keys = {next(iter(yaml.safe_load(path.read_text()))) for path in (ROOT / "conf" / "augmentation").glob("*.yaml")}
    assert keys == set(AUGMENTATIONS)
    orders = [step.order for step in AUGMENTATIONS.values()]
    assert len(set(orders)) == len(orders)  # the order they apply in is never a tie


class Shout(Augmentation):
    """A new augmentation, as a user would add it: upper-case queries, and one extra label-0 row per row."""

    name, order, count_metric = "shout", 25, "rows_shouted"

    def rewrites(self, options):
        return True

    def rewrite(self, records, options, translations):
        return [r.with_text(r.query.upper(), r.target) for r in records]

    def adds_rows(self, options):
        return True

    def extra_rows(self, records, options, translations, cache, seed):
        rows = [Record(-(i + 1), r.task, r.language, r.query, options.target, 0) for i, r in enumerate(records)]
        return rows, np.arange(len(records))

    def check(self, options):
        if not options.target:
            raise ConfigError("augmentation.shout.target is empty; give a target text.")


def test_a_new_augmentation_is_one_registered_class(monkeypatch, tmp_path):
    monkeypatch.setitem(AUGMENTATIONS, "shout", Shout())
    options = OmegaConf.create(
        {
            "shout": {"target": "nothing,at all"},
            "tags": {"language": True, "hierarchy": False, "attributes": False, "brands": [], "colors": []},
        }
    )
    assert [step.name for step, _ in chosen(options)] == ["shout", "tags"]  # by order, not by listing
    records = [Record(1, "QC", "fr", "casquette", "apparel,hats", 1), Record(2, "QC", "es", "gorra", "food,bread", 0)]
    assert [r.query for r in rewrite_text(records, options)] == ["[LANG=fr] CASQUETTE", "[LANG=es] GORRA"]
    with pytest.raises(ConfigError, match="augmentation.shout.target"):
        Shout().check(OmegaConf.create({"target": ""}))

    from relevance.text.preprocess import Preprocessor

    data_file = tmp_path / "train_QC.txt"
    rows = [
        {
            "id": i,
            "task": "QC",
            "language": "en",
            "origin_query": f"query {i}",
            "category_path": f"c,{i % 3}",
            "label": i % 2,
        }
        for i in range(12)
    ]
    data_file.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    settings = DataSettings({"QC": data_file}, {"QC": tmp_path / "none.txt"}, 0, None, False, tmp_path, "random", 2)
    preprocessor = Preprocessor({"QC": "{query} {target}"}, False, True, OmegaConf.create({"shout": {"target": "x,y"}}))
    data, _, _, counts = prepare_data(settings, preprocessor)
    assert counts == {"rows_shouted": 12} and len(data.extra_inputs) == 12 and set(data.extra_labels) == {0}
    assert all(text.startswith("QUERY") for text in data.inputs)
