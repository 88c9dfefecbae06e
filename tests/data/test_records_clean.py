from relevance.data.clean import clean_records, normalize_text
from relevance.data.records import Record, category_levels, category_prefix


def test_category_levels_keep_comma_space_inside_a_level():
    assert category_levels("food,grocery,flour, baking and cooking,decorations") == [
        "food",
        "grocery",
        "flour, baking and cooking",
        "decorations",
    ]
    assert category_levels("apparel accessories,hats & caps,baseball caps") == [
        "apparel accessories",
        "hats & caps",
        "baseball caps",
    ]
    path = "home & garden,kitchen, dining & bar,cookware,pots"
    assert category_prefix(path, 2) == "home & garden,kitchen, dining & bar"


def test_normalize_text_folds_width_space_and_case():
    assert normalize_text("  Ａpexel\u00a0 60X\tLens ") == "apexel 60x lens"
    assert normalize_text("Nighty", lowercase=False) == "Nighty"


def test_empty_queries_are_dropped_and_counted_or_kept():
    rows = [
        Record(1, "QC", "en", " baking ", "food", 1),
        Record(2, "QC", "en", " \t ", "food", 0),
        Record(3, "QC", "ko", "", "food", 1),
    ]
    kept, report = clean_records(rows)
    assert [r.id for r in kept] == [1] and kept[0].query == "baking"
    assert (report.kept, report.dropped_empty_query, report.dropped_ids) == (1, 2, [2, 3])
    all_rows, report = clean_records(rows, drop_empty_queries=False)
    assert len(all_rows) == 3 and report.dropped_empty_query == 2
