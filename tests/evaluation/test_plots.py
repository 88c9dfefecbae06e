"""The per-language plot says what it shows: seen languages first, rows per language, the threshold used, a
legend with only the groups present, and no bar for a language with one label."""

from relevance.evaluation import plots  # its import picks the Agg backend

THRESHOLD = "at the decision threshold 0.420"


def _axes(monkeypatch) -> dict:
    """Where the plot's axes will be, once drawn."""
    captured = {}
    original = plots.plt.subplots

    def spy(*args, **kwargs):
        fig, ax = original(*args, **kwargs)
        captured["ax"] = ax
        return fig, ax

    monkeypatch.setattr(plots.plt, "subplots", spy)
    return captured


def test_language_plot_orders_seen_first_states_threshold_and_rows(tmp_path, monkeypatch):
    captured = _axes(monkeypatch)
    rows = [
        {"language": "de", "f1": 0.7, "floor": 0.6, "rows": 30, "seen": False, "one_label": False},
        {"language": "en", "f1": 0.9, "floor": 0.8, "rows": 50, "seen": True, "one_label": False},
        {"language": "pl", "f1": float("nan"), "floor": 1.0, "rows": 9, "seen": False, "one_label": True},
    ]
    path = plots.language_plot(rows, "tiny QC: dev F1", THRESHOLD, tmp_path / "dev.png")
    ax = captured["ax"]
    assert path.stat().st_size > 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["en\nn=50", "de\nn=30", "pl\nn=9"]
    assert THRESHOLD in ax.get_title()
    assert [round(b.get_height(), 2) for b in ax.patches[:3]] == [0.9, 0.7, 0.0]
    assert "one label" in [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["seen in training", "unseen", "all-positive floor"]


def test_language_plot_without_unseen_languages_has_no_unseen_legend(tmp_path, monkeypatch):
    captured = _axes(monkeypatch)
    rows = [{"language": "en", "f1": 0.9, "floor": 0.8, "rows": 50, "seen": True, "one_label": False}]
    plots.language_plot(rows, "tiny QC: out-of-fold F1", THRESHOLD, tmp_path / "oof.png")
    assert [t.get_text() for t in captured["ax"].get_legend().get_texts()] == ["seen in training", "all-positive floor"]
