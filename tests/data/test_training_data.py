import json

from relevance import build
from tests.conftest import compose_train


def test_competition_folder_rows_are_cleaned_counted_and_subsampled(tmp_path, cache_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [
        {
            "id": i,
            "task": "QI",
            "language": "th" if i % 2 else "en",
            "origin_query": f"  Query {i} ",
            "item_title": None if i == 3 else f"Title {i}",
            "label": str(i % 2),
        }
        for i in range(1, 41)
    ]
    rows[4]["origin_query"] = "   "
    (folder / "train_QI.txt").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "dev_QI.txt").write_text(json.dumps({k: v for k, v in rows[0].items() if k != "label"}) + "\n")
    cfg = compose_train(["backbone=tiny", "task=qi", "data=competition", f"data.dir={folder}"], tmp_path, cache_dir)
    data, report, dev, extra = build.training_data(cfg, build.make_preprocessor(cfg))
    records = data.records
    assert extra == {} and len(data.extra_inputs) == 0
    assert len(records) == 39 and report.dropped_empty_query == 1
    assert records[0].query == "query 1" and next(r for r in records if r.id == 3).target == ""
    assert dev is None  # the competition's dev file has no labels: nothing to evaluate on

    cfg.data.max_rows = 10
    subset = build.training_data(cfg, build.make_preprocessor(cfg))[0].records
    assert 9 <= len(subset) <= 10 and len({r.id for r in subset}) == len(subset)  # sampled, then cleaned
    assert [r.id for r in subset] == sorted(r.id for r in subset)  # order kept
    again = build.training_data(cfg, build.make_preprocessor(cfg))[0].records
    assert [r.id for r in again] == [r.id for r in subset]  # same seed, same subset
