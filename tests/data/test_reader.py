import json

import pytest

from relevance.data.reader import read_records
from relevance.errors import DataError


def write(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


QC = {
    "id": 1,
    "task": "QC",
    "language": "en",
    "origin_query": "baking",
    "category_path": "food,grocery,flour, baking and cooking,decorations",
    "label": 1,
}


def test_reads_competition_rows_as_published(tmp_path):
    path = write(
        tmp_path / "train_QI.txt",
        [
            {
                "id": 1,
                "task": "QI",
                "language": "vn",
                "origin_query": "nighty",
                "item_title": "2PCS Leepwear Female Pajamas Set Satin Home",
                "label": "1",
            },
            {
                "id": 2,
                "task": "QI",
                "language": "en",
                "origin_query": "Apexel 60x telephoto lens",
                "item_title": None,
                "label": 0,
            },
        ],
    )
    first, second = read_records(path, "QI", require_label=True)
    assert (first.language, first.label, first.target[:4]) == ("vn", 1, "2PCS")
    assert second.target == "" and second.label == 0  # null title kept, not dropped


def test_unlabelled_dev_rows_are_accepted(tmp_path):
    row = {k: v for k, v in QC.items() if k != "label"} | {"language": "ar", "origin_query": "%منتخب ايطالي"}
    (record,) = read_records(write(tmp_path / "dev_QC.txt", [row]), "QC")
    assert record.label is None and record.query == "%منتخب ايطالي"


@pytest.mark.parametrize(
    "rows, line, words",
    [
        ([QC, '{"id": 2, "task": "QC",'], 2, "the line ends before its object does"),
        ([QC, "{'id': 2}"], 2, "not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        (["[", "  " + json.dumps(QC) + ","], 1, "the file holds a JSON array; write one JSON object per line"),
        (["{", '  "id": 1,'], 1, "an object spread over several lines (pretty-printed JSON)"),
        (
            [{k: v for k, v in QC.items() if k != "category_path"} | {"task": "QI", "item_title": "flour 1kg"}],
            1,
            "this is a QI file (its rows have item_title, not category_path); give it as <split>_QI.txt",
        ),
        ([{k: v for k, v in QC.items() if k != "origin_query"}], 1, "missing field 'origin_query'"),
        ([QC | {"label": 2}], 1, "must be 0 or 1"),
        ([QC | {"label": "yes"}], 1, "must be 0 or 1"),
        ([QC | {"task": "QI"}], 1, "read as 'QC'"),
        ([QC, QC | {"origin_query": "flour"}], 2, "id 1 already appeared on line 1"),
        ([{k: v for k, v in QC.items() if k != "label"}], 1, "missing field 'label'"),
    ],
)
def test_bad_rows_name_file_line_and_problem(tmp_path, rows, line, words):
    path = write(tmp_path / "train_QC.txt", rows)
    with pytest.raises(DataError) as caught:
        read_records(path, "QC", require_label=True)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}: ") and words in message


def test_empty_and_missing_files_are_named(tmp_path):
    empty = tmp_path / "train_QC.txt"
    empty.write_text("\n")
    with pytest.raises(DataError, match="train_QC.txt: the file is empty"):
        read_records(empty, "QC")
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "nope.txt", "QC")


def test_non_utf8_line_is_named(tmp_path):
    path = tmp_path / "train_QC.txt"
    good = json.dumps(QC).encode()
    latin1 = good.replace(b"baking", b"caf\xe9").replace(b'"id": 1', b'"id": 2')
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + latin1 + b"\n")
    with pytest.raises(DataError, match=r"train_QC.txt, line 2: not UTF-8"):
        read_records(path, "QC")
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n")  # a byte-order mark is fine
    assert read_records(path, "QC")[0].query == "baking"


def test_a_gzip_file_is_named_as_one(tmp_path):
    import gzip

    path = tmp_path / "train_QC.txt"
    path.write_bytes(gzip.compress((json.dumps(QC) + "\n").encode()))
    with pytest.raises(DataError, match=r"train_QC.txt: this is a gzip archive; decompress it"):
        read_records(path, "QC")


def test_a_ten_megabyte_field_is_cut_before_tokenising_with_one_line(tmp_path, caplog):
    """Issue 29, item 3: a 10 MB query (or title) is cut at MAX_FIELD_CHARS as it is read, with one warning for
    the file naming the first such line; it used to grow one process to 6.9 GB until the kernel killed it."""
    from relevance.data.records import MAX_FIELD_CHARS

    rows = [
        {"id": 1, "task": "QC", "language": "en", "origin_query": "hat", "category_path": "a,b", "label": 1},
        {"id": 2, "task": "QC", "language": "en", "origin_query": "x" * 10_000_000, "category_path": "a", "label": 0},
        {"id": 3, "task": "QC", "language": "en", "origin_query": "cap", "category_path": "y" * 20_000, "label": 1},
    ]
    path = write(tmp_path / "train_QC.txt", rows)
    with caplog.at_level("WARNING"):
        records = read_records(path, "QC", require_label=True)
    assert [len(r.query) for r in records] == [3, MAX_FIELD_CHARS, 3]
    assert len(records[2].target) == MAX_FIELD_CHARS and records[1].query == "x" * MAX_FIELD_CHARS
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "2 row(s)" in warned[0] and "first on line 2" in warned[0]


def test_max_rows_keeps_a_seeded_uniform_sample_in_file_order_while_reading(tmp_path):
    """Issue 30, item 4: data.max_rows samples as the file streams by (every line still checked), so memory holds
    the sample, not the file."""
    path = write(tmp_path / "train_QC.txt", [QC | {"id": i, "origin_query": f"q{i}"} for i in range(2000)])
    sample = read_records(path, "QC", max_rows=200, seed=3)
    ids = [r.id for r in sample]
    assert len(ids) == 200 == len(set(ids)) and ids == sorted(ids)
    assert [r.id for r in read_records(path, "QC", max_rows=200, seed=3)] == ids  # same seed, same rows
    assert [r.id for r in read_records(path, "QC", max_rows=200, seed=4)] != ids
    assert 60 < sum(i >= 1000 for i in ids) < 140  # both halves of the file, about evenly (not the first 200)
    assert len(read_records(path, "QC", max_rows=5000)) == 2000  # a cap above the file keeps every row
    broken = write(tmp_path / "late.txt", [QC | {"id": i} for i in range(300)] + ["{not json"])
    with pytest.raises(DataError, match="line 301"):  # a mistake past the sample is still found
        read_records(broken, "QC", max_rows=10)
