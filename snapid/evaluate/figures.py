"""Matplotlib figures for the evaluation report, each returned as an <img> with a base64 PNG.

Figures are built on Agg canvases (no pyplot global state); label text goes through the data
report's helpers, so '$' is not read as mathtext and CJK class names use an installed CJK font.
"""

from __future__ import annotations

from matplotlib.ticker import MaxNLocator

from snapid.reporting import class_label, figure, mpl_text, png

MAX_HEATMAP_CLASSES = 40       # beyond this a heatmap is unreadable: the report lists the top confused pairs
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#eeca3b")


def _values(epochs: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(e["epoch"], e[key]) for e in epochs if e.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def training_curves(series: dict[str, list[dict]]) -> str:
    """Loss, validation top-1 / macro-F1 and learning rate per epoch; one colour per run when overlaid."""
    fig = figure(10, 3.0)
    loss_ax, score_ax, lr_ax = fig.subplots(1, 3)
    overlay = len(series) > 1
    for i, (name, epochs) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        label = mpl_text(name, 24)
        for key, style, what in (("train_loss", "-", "train"), ("val_loss", "--", "val")):
            x, y = _values(epochs, key)
            loss_ax.plot(x, y, style, color=colour, label=f"{label} {what}" if overlay else what)
        for key, style, what in (("top1", "-", "top-1"), ("macro_f1", ":", "macro-F1")):
            x, y = _values(epochs, key)
            score_ax.plot(x, y, style, color=colour, label=f"{label} {what}" if overlay else what)
        x, y = _values(epochs, "lr")
        if y:
            lr_ax.plot(x, y, color=colour, label=label)
    loss_ax.set_title("loss", fontsize=10)
    score_ax.set_title("validation", fontsize=10)
    lr_ax.set_title("learning rate", fontsize=10)
    if any(v > 0 for line in lr_ax.get_lines() for v in line.get_ydata()):
        lr_ax.set_yscale("log")
    for ax in (loss_ax, score_ax, lr_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_lines():
            ax.legend(fontsize=6)
    return png(fig)


def reliability(before: list[dict], after: list[dict], *, ece_before: float | None, ece_after: float | None) -> str:
    """Reliability diagrams: accuracy against confidence per bin, before and after temperature scaling."""
    fig = figure(8, 3.4)
    for ax, bins, title, ece in zip(fig.subplots(1, 2), (before, after), ("uncalibrated", "calibrated"),
                                    (ece_before, ece_after), strict=True):
        used = [b for b in bins if b.get("count")]
        ax.plot([0, 1], [0, 1], ":", color="#888", label="perfect")
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in used], [b["accuracy"] for b in used],
               width=[b["hi"] - b["lo"] for b in used], edgecolor="#224", color="#4c78a8", alpha=0.8, label="accuracy")
        ax.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], "o", color="#e45756", ms=3,
                label="bin mean")
        suffix = "" if ece is None else f" · ECE {ece:.4f}"
        ax.set_title(f"{title}{suffix}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    return png(fig)


def coverage_curve(points: list[dict], *, threshold: float | None) -> str:
    """Accuracy and coverage as the confidence threshold rises, with the chosen threshold marked."""
    fig = figure(6, 3.2)
    ax = fig.add_subplot()
    xs = [p["threshold"] for p in points]
    ax.plot(xs, [p["coverage"] for p in points], color="#4c78a8", label="coverage (answered)")
    ax.plot(xs, [p["accuracy"] if p["accuracy"] is not None else float("nan") for p in points], color="#54a24b",
            label="accuracy of answered")
    if threshold:
        ax.axvline(threshold, color="#e45756", linestyle="--", label=f"chosen threshold {threshold:.2f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence threshold", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower left")
    return png(fig)


def confusion_heatmap(normalized: list[list[float]], classes: list[dict]) -> str:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    n = len(classes)
    side = min(11.0, 2.5 + 0.28 * n)
    fig = figure(side, side * 0.85)
    ax = fig.add_subplot()
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    names = [class_label(c["name"], c["id"], 18) for c in classes]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    if n <= 15:
        for i, row in enumerate(normalized):
            for j, value in enumerate(row):
                if value >= 0.005:
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if value > 0.6 else "#1d232b")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return png(fig)
