import collections

from relevance.data.reader import read_records
from relevance.data.records import ALL_LANGUAGES, category_levels
from relevance.synthetic.demo import DemoSpec, generate_demo
from relevance.synthetic.lexicon import concepts
from relevance.tasks import TASKS

SPEC = DemoSpec(train_rows=700, dev_rows=260, test_rows=130, seed=5)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = generate_demo(tmp_path / "a", SPEC)
    b = generate_demo(tmp_path / "b", SPEC)
    c = generate_demo(tmp_path / "c", DemoSpec(train_rows=700, dev_rows=260, test_rows=130, seed=6))
    for name in ("train_QC.txt", "dev_QI.txt", "test_QI.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "train_QC.txt").read_bytes() != (c / "train_QC.txt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no staging folder left


def test_languages_split_like_the_competition(tmp_path):
    folder = generate_demo(tmp_path / "d", SPEC)
    seen_anywhere = set()
    for task in ("QC", "QI"):
        train = read_records(folder / f"train_{task}.txt", task, require_label=True)
        dev = read_records(folder / f"dev_{task}.txt", task, require_label=True)
        test = read_records(folder / f"test_{task}.txt", task)
        assert {r.language for r in train} == set(TASKS[task].seen_languages)
        languages = set(TASKS[task].seen_languages + TASKS[task].unseen_languages)
        assert {r.language for r in dev} == {r.language for r in test} == languages
        assert all(r.label is None for r in test)
        assert [r.id for r in train] == list(range(1, len(train) + 1))
        seen_anywhere |= {r.language for r in dev}
    assert seen_anywhere == set(ALL_LANGUAGES) and "vn" in seen_anywhere


def test_balance_noise_and_hard_negatives(tmp_path):
    folder = generate_demo(tmp_path / "d", SPEC)
    qc = read_records(folder / "train_QC.txt", "QC", require_label=True)
    assert 0.6 < sum(r.label for r in qc) / len(qc) < 0.74
    assert any(", " in level for r in qc for level in category_levels(r.target))
    queries = collections.Counter(r.query for r in qc)
    assert max(queries.values()) > 3  # queries recur, as in real logs
    parents = {c["path"]: category_levels(c["path"])[:-1] for c in concepts()}
    word_to_path = {c["words"]["en"]: c["path"] for c in concepts()}
    sibling_negatives = [
        r
        for r in qc
        if r.label == 0
        and r.language == "en"
        and r.query in word_to_path
        and r.target in parents
        and parents[r.target] == parents[word_to_path[r.query]]
    ]
    assert len(sibling_negatives) >= 3
    qi = read_records(folder / "train_QI.txt", "QI", require_label=True)
    assert any(r.target.split()[0] in r.query for r in qi)  # brand in query and title
