"""Issue 29, item 2: a bundle is checked when it loads; a damaged, edited or incomplete one is refused in one
sentence naming the field (or folder) and the file, before any weight loads."""

import json

import pytest
from omegaconf import OmegaConf

from relevance.data.records import Record
from relevance.errors import RelevanceError
from relevance.serving.bundle import BUNDLE_FILE, BUNDLE_VERSION, ModelBundle
from relevance.text.preprocess import Preprocessor


@pytest.fixture
def saved(tmp_path):
    """A two-fold bundle with adapter files (bytes standing in for weights: nothing here loads them)."""
    for fold in ("fold_0", "fold_1"):
        weights = tmp_path / "adapters" / fold
        weights.mkdir(parents=True)
        (weights / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
        (weights / "adapter_model.safetensors").write_bytes(fold.encode() * 100)
    ModelBundle(
        task="QC",
        backbone={"name": "tiny", "hub_id": "org/base"},
        head={"name": "classifier"},
        preprocessor=Preprocessor(
            {"QC": "{query} {target}"}, encoder=False, lowercase=True, augmentation=None
        ).to_dict(),
        max_length=64,
        eval_batch_size=8,
        folds=["fold_0", "fold_1"],
        thresholds={"QC": 0.4},
        language_thresholds={"QC": {"en": 0.5}},
        positive_rates={"QC": 0.6},
    ).save(tmp_path)
    return tmp_path


def _edit(folder, **changes):
    """Change top-level fields, and the preprocessor's own with `preprocessor={...}` (merged into it)."""
    path = folder / BUNDLE_FILE
    values = json.loads(path.read_text())
    if isinstance(changes.get("preprocessor"), dict):
        changes["preprocessor"] = values["preprocessor"] | changes["preprocessor"]
    path.write_text(json.dumps(values | changes))


def test_a_bundle_as_saved_loads_with_the_digest_of_each_fold(saved):
    bundle = ModelBundle.load(saved)
    assert set(bundle.digests) == {"fold_0", "fold_1"} and len(set(bundle.digests.values())) == 2
    assert bundle.decision_thresholds("refit") == {"QC": 0.4}  # no refit thresholds: the folds'


def test_a_foreign_version_or_a_missing_field_gets_one_sentence(saved):
    values = json.loads((saved / BUNDLE_FILE).read_text())
    for version, fix in ((1, "retrain it"), (BUNDLE_VERSION + 1, "upgrade relevance")):
        _edit(saved, version=version)
        with pytest.raises(RelevanceError, match=f"version {version} model bundle .* {fix}"):
            ModelBundle.load(saved)
    (saved / BUNDLE_FILE).write_text(json.dumps({k: v for k, v in values.items() if k != "thresholds"}))
    with pytest.raises(RelevanceError, match="missing thresholds"):
        ModelBundle.load(saved)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"thresholds": {"QC": 5.0}}, "`thresholds` holds {'QC': 5.0}, outside [0, 1]"),
        ({"language_thresholds": {"QC": {"en": -0.1}}}, "`language_thresholds.QC` holds {'en': -0.1}"),
        ({"positive_rates": {"QC": 1.5}}, "`positive_rates` holds {'QC': 1.5}"),
        ({"thresholds": {"QI": 0.4}}, "`thresholds` covers ['QI'], not ['QC']"),
        ({"max_length": "64"}, "`max_length` is '64', not <class 'int'>"),
        ({"max_length": 0}, "`max_length` is under 1"),
        ({"preprocessor": {"encoder": "no"}}, "`preprocessor.encoder` is 'no', not <class 'bool'>"),
        ({"preprocessor": {"templates": {"QC": 3}}}, "`preprocessor.templates` is {'QC': 3}, not dict[str, str]"),
        ({"preprocessor": {"lowercase": True, "stemming": True}}, "`preprocessor` has an unknown `stemming`"),
        ({"preprocessor": "lowercase"}, "`preprocessor` is 'lowercase', not <class 'dict'>"),
        ({"preprocessor": {"category_order": "random"}}, "`preprocessor.category_order` is not root_first or"),
        ({"folds": "fold_0"}, "`folds` is 'fold_0', not list[str]"),
        ({"folds": []}, "`folds` lists no fold"),
        ({"task": "XX"}, "`task` 'XX' is not QC, QI or JOINT"),
        ({"preprocessor": {"templates": {"QX": "{query}"}}}, "`preprocessor.templates` names the tasks ['QX']"),
        ({"unseen_threshold": "median"}, "`unseen_threshold` is not shared or matched_rate"),
        ({"refit": 3}, "`refit` is 3"),
        ({"head": {"prompt": "x"}}, "`head` has no name"),
        ({"precision": "int4"}, "`precision` is not fp32 or int8"),
        ({"precision": "int8"}, "`precision_check` is empty for int8"),
    ],
)
def test_an_edited_field_is_refused_naming_the_field_and_the_file(saved, changes, words):
    _edit(saved, **changes)
    with pytest.raises(RelevanceError) as caught:
        ModelBundle.load(saved)
    said = str(caught.value)
    assert words in said and str(saved / BUNDLE_FILE) in said and "\n" not in said


def test_a_truncated_description_is_called_damaged(saved):
    path = saved / BUNDLE_FILE
    path.write_text(path.read_text()[:200])
    with pytest.raises(RelevanceError, match=f"{path} is damaged"):
        ModelBundle.load(saved)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RelevanceError, match="is damaged"):
        ModelBundle.load(saved)
    path.write_text("[1, 2]")
    with pytest.raises(RelevanceError, match="is damaged"):
        ModelBundle.load(saved)


def test_a_missing_fold_a_changed_weight_file_and_another_base_are_refused(saved):
    weights = saved / "adapters" / "fold_1" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # a copy cut short
    with pytest.raises(RelevanceError, match="fold_1 does not hold the weights that were logged"):
        ModelBundle.load(saved)
    for path in weights.parent.iterdir():
        path.unlink()
    weights.parent.rmdir()
    with pytest.raises(RelevanceError, match="lists `fold_1` but .*fold_1 is missing; copy the whole model folder"):
        ModelBundle.load(saved)
    _edit(saved, folds=["fold_0"], backbone={"name": "tiny", "hub_id": "org/other"})
    with pytest.raises(RelevanceError, match="trained on 'org/base' but .* names the base 'org/other'"):
        ModelBundle.load(saved)


def test_a_bundle_logged_before_digests_loads_with_a_warning(saved, caplog):
    _edit(saved, digests={})
    assert ModelBundle.load(saved).folds == ["fold_0", "fold_1"]
    assert "records no digests" in caplog.text


def test_a_preprocessor_lacking_a_setting_is_refused_by_its_name(saved):
    path = saved / BUNDLE_FILE
    values = json.loads(path.read_text())
    del values["preprocessor"]["translator"]
    path.write_text(json.dumps(values))
    with pytest.raises(RelevanceError, match=r"`preprocessor` lacks `translator`; the file was edited or damaged"):
        ModelBundle.load(saved)


ROWS = [
    Record(id=1, task="QC", language="fr", query="  Casquette  Rouge ", target="Apparel,Hats,Caps", label=1),
    Record(id=2, task="QC", language="de", query="Yogamatte", target="Sports,Yoga,Mats", label=0),
]


def test_a_preprocessor_saved_in_a_bundle_writes_every_input_as_the_one_that_trained():
    """Rewrites (tags), cleaning and the path order all survive the bundle's JSON: the served model formats a
    row exactly as training did."""
    trained = Preprocessor(
        {"QC": "q: {query} | c: {target} ({language})"},
        encoder=False,
        lowercase=True,
        augmentation=OmegaConf.merge(OmegaConf.load("conf/augmentation/tags.yaml"), {"tags": {"hierarchy": False}}),
        category_order="leaf_first",
        translator={"name": "file", "kind": "file", "path": None},
    )
    saved = json.loads(json.dumps(trained.to_dict()))
    served = Preprocessor.from_dict(saved)
    assert served.inputs(ROWS) == trained.inputs(ROWS)
    assert served.inputs(ROWS)[0] == "q: [LANG=fr] casquette rouge | c: caps < hats < apparel (fr)"
    assert served.to_dict() == trained.to_dict()


def test_a_version_2_bundle_reads_its_six_loose_settings_as_the_preprocessor(saved):
    """Bundles logged before version 3 kept the preprocessor's settings as top-level fields (and, before
    clean.category_order, none for the order): they load, and format rows as they did."""
    path = saved / BUNDLE_FILE
    values = json.loads(path.read_text())
    loose = values.pop("preprocessor")
    del loose["category_order"]
    path.write_text(json.dumps(values | loose | {"version": 2}))
    bundle = ModelBundle.load(saved)
    assert bundle.version == BUNDLE_VERSION == 3 and bundle.tasks == ["QC"]
    assert bundle.preprocessor == loose | {"category_order": "root_first"}
    assert Preprocessor.from_dict(bundle.preprocessor).inputs(ROWS)[1] == "yogamatte sports,yoga,mats"
