"""The two pictures a person looks at first: F1 across thresholds, and F1 per language (seen vs unseen)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402


def threshold_plot(thresholds, f1, best, floor: float, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(thresholds, f1, color="tab:blue", label="out-of-fold F1")
    ax.axhline(floor, color="grey", linestyle="--", label=f"all-positive floor {floor:.3f}")
    ax.axvline(0.5, color="tab:orange", linestyle=":", label="threshold 0.5")
    ax.scatter(
        [best.threshold], [best.f1], color="tab:red", zorder=3, label=f"best {best.f1:.3f} at {best.threshold:.3f}"
    )
    ax.set(xlabel="decision threshold", ylabel="positive-class F1", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def language_plot(rows: list[dict], title: str, threshold: str, path: Path) -> Path:
    """F1 per language at the stated `threshold`, seen languages first, each labelled with its row count; a
    language whose rows carry one label gets no bar (its F1 would only restate a floor of 0 or 1)."""
    rows = sorted(rows, key=lambda r: (not r["seen"], r["language"]))
    fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(rows) + 2), 4))
    names = [f"{r['language']}\nn={r['rows']}" for r in rows]
    colors = ["tab:blue" if r["seen"] else "tab:red" for r in rows]
    ax.bar(names, [0.0 if r.get("one_label") else r["f1"] for r in rows], color=colors)
    ax.scatter(names, [r["floor"] for r in rows], color="black", marker="_", s=300, zorder=3)
    for name, row in zip(names, rows):
        if row.get("one_label"):
            ax.text(name, 0.02, "one label", rotation=90, ha="center", va="bottom", fontsize=7)
    handles = [Patch(color="tab:blue", label="seen in training")] if any(r["seen"] for r in rows) else []
    handles += [Patch(color="tab:red", label="unseen")] if not all(r["seen"] for r in rows) else []
    handles.append(Line2D([], [], color="black", label="all-positive floor"))
    ax.set(ylabel="F1", title=f"{title}\n{threshold}", ylim=(0, 1.18), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.legend(handles=handles, fontsize=8, loc="upper center", ncol=len(handles))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
