"""The report's figures, as PNG files: one function per figure, each taking plain tables and a path.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot), so importing this module neither
changes the global backend nor needs a display. Metric values in [0, 1] are drawn as percentages / points.

    >>> accuracy_vs_fraction(cell_table(rows), Path("figures/accuracy_vs_fraction.png"))
"""
from __future__ import annotations

import math
import zlib
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from audio2image.report.stats import METRICS, cell_table, gain_range, metric_name, metric_range

DPI = 120
# Okabe and Ito's colour-blind-safe palette, for the pretrained inits in the experiment's order; random is grey
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
BASELINE_COLOR = "#7a7a7a"
_ASSIGNED: dict[str, str] = {}  # this report's inits -> their colours (use_palette)
LINESTYLES = ["-", "--", ":", "-."]
HATCHES = ["", "//", "..", "xx"]  # bars tell freezes apart as lines do by style


def metric_label(metric: str) -> str:
    """'test top-1 accuracy (%)' for an axis; unknown columns fall back to their name."""
    unit = METRICS.get(metric, ("", "x 100"))[1]
    return f"{metric_name(metric)} ({unit})"


# --- transfer results ----------------------------------------------------------------------------------------------

def accuracy_vs_fraction(cells: list[dict], path: Path) -> Path:
    """Mean metric vs fraction (log x), one line per init (and freeze), 95% CI band or bars, seeds as dots.

    A series gets a shaded band when every point has 3+ seeds; otherwise error bars, since with 2 seeds the
    t-interval is so wide that a band would hide the other lines.
    """
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    kinds = set()
    for p in _series_points(cells):
        ax.plot(p.x, p.mean, p.style, color=p.color, marker="o", lw=2, label=p.label, zorder=2)
        if min(c["n"] for c in p.group) >= 3:
            ax.fill_between(p.x, p.low, p.high, color=p.color, alpha=0.18, lw=0)
            kinds.add("band")
        else:
            ax.errorbar(p.x, p.mean, yerr=_yerr(p.mean, p.low, p.high), fmt="none", ecolor=p.color, capsize=4,
                        lw=1.2)
            kinds.add("bars")
        for xi, c in zip(p.x, p.group):  # seeds just right of their mean, so the mean marker does not hide them
            ax.scatter([xi * 1.06] * c["n"], 100 * np.array(c["values"]), s=16, color=p.color, alpha=0.6, lw=0,
                       zorder=3)
    metric = cells[0]["metric"] if cells else "test_top1"
    _fraction_axis(ax, [c["fraction"] for c in cells])
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_name(metric).capitalize()} vs amount of training data")
    _clip_percent(ax)
    extra = [Line2D([], [], color="gray", marker="o", ls="", alpha=0.6, ms=4, label="single seed")]
    if "band" in kinds:
        extra.append(Patch(color="gray", alpha=0.2, label="95% CI of the mean"))
    if "bars" in kinds:
        extra.append(Line2D([], [], color="gray", marker="|", ls="", ms=10,
                            label="95% CI of the mean" + (" (< 3 seeds)" if "band" in kinds else "")))
    _legend(ax, extra)
    return _save(fig, path)


def gain_vs_fraction(gains: list[dict], path: Path) -> Path:
    """Paired difference init - baseline in points vs fraction, 95% CI bars, filled markers where Holm p < 0.05."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    ax.axhline(0, color="black", lw=0.8)
    for p in _series_points(gains):
        ax.errorbar(p.x, p.mean, yerr=_yerr(p.mean, p.low, p.high), fmt=p.style, color=p.color, capsize=4, lw=1.5,
                    label=f"{p.label} - {p.group[0]['baseline']}")
        sig = np.array([g["significant"] for g in p.group])
        ax.scatter(p.x[~sig], p.mean[~sig], s=40, facecolor="white", edgecolor=p.color, zorder=3, lw=1.5)
        ax.scatter(p.x[sig], p.mean[sig], s=70, color=p.color, edgecolor="black", zorder=3, marker="D")
    baseline = gains[0]["baseline"] if gains else "random"
    metric = gains[0]["metric"] if gains else "test_top1"
    _fraction_axis(ax, [g["fraction"] for g in gains])
    ax.set_ylabel(f"difference in {metric_name(metric)}\n(points, init - {baseline})")
    ax.set_title(f"Gain over the {baseline} init, paired by seed")
    extra = [Line2D([], [], color="gray", marker="D", mec="black", ls="", label="significant (Holm p < 0.05)"),
             Line2D([], [], color="gray", marker="o", mfc="white", ls="", label="not significant"),
             Line2D([], [], color="gray", marker="|", ls="", ms=10, label="95% CI (t, paired)")]
    _legend(ax, extra)
    return _save(fig, path)


def validation_curves(curves: list[dict], path: Path, metric: str = "val_top1") -> Path:
    """Validation metric per epoch: one panel per fraction, one line per init (mean over seeds, thin per seed).

    `curves`: one dict per run with fraction, init, freeze, seed, epochs (list) and values (list, in [0, 1]).
    """
    fractions = sorted({c["fraction"] for c in curves})
    cols = min(3, max(1, len(fractions)))
    rows = max(1, math.ceil(len(fractions) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    for ax, fraction in zip(axes, fractions):
        runs = [c for c in curves if c["fraction"] == fraction]
        for (init, freeze), group in _series(runs).items():
            color, style = _style(init, freeze, curves)
            for run in group:
                ax.plot(run["epochs"], 100 * np.asarray(run["values"], float), style, color=color, lw=0.7,
                        alpha=0.35)
            epochs, mean = _mean_curve(group)
            ax.plot(epochs, 100 * mean, style, color=color, lw=2, label=_label(init, freeze, curves))
        ax.set_title(f"{100 * fraction:g}% of the training data")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(fractions):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel(metric_label(metric))
    if fractions:
        handles, labels = axes[0].get_legend_handles_labels()
        handles.append(Line2D([], [], color="gray", lw=0.7, alpha=0.5))
        labels.append("single seed (thick: mean)")
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), frameon=False)
    fig.suptitle(f"{metric_name(metric).capitalize()} during transfer training")
    return _save(fig, path, tight=False)


def seed_style_bars(rows: list[dict], path: Path, metric: str = "test_top1") -> Path:
    """The seed experiment's bar chart done right: grouped bars per fraction, mean ± 1 sd over seeds, values shown."""
    cells = [c for c in cell_table(rows, metric) if c["n"] > 0]
    fractions = sorted({c["fraction"] for c in cells})
    keys = list(_series(cells))
    most = max((c["n"] for c in cells), default=0)
    width = 0.8 / max(1, len(keys))
    bars = len(fractions) * max(1, len(keys))
    fig = Figure(figsize=(min(14.0, max(6.5, 0.5 * bars + 2)), 5.2), layout="constrained")
    ax = fig.add_subplot()
    for k, (init, freeze) in enumerate(keys):
        color, style = _style(init, freeze, cells)
        hatch = HATCHES[LINESTYLES.index(style)]
        for j, fraction in enumerate(fractions):
            cell = next((c for c in cells if (c["fraction"], c["init"], c["freeze"]) == (fraction, init, freeze)),
                        None)
            if cell is None:
                continue
            x = j + (k - (len(keys) - 1) / 2) * width
            _bar(ax, cell, x, width, color, hatch, _label(init, freeze, cells), note=cell["n"] < most)
    ax.set_xticks(range(len(fractions)), [f"{100 * f:g}%" for f in fractions])
    ax.set_xlabel("fraction of the training split")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_name(metric).capitalize()} per fraction and init (mean ± 1 sd over seeds)")
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    # below the axes: inside, it would cover the value labels above the tallest bars
    _legend(ax, [Line2D([], [], marker="o", mfc="white", mec="black", ls="", ms=5, label="single seed")],
            dedupe=True, below=True)
    return _save(fig, path)


def _bar(ax, cell: dict, x: float, width: float, color: str, hatch: str, label: str, note: bool) -> None:
    """One bar: mean ± 1 sd, its seeds as hollow dots beside the error bar, the value (and n if short) on top."""
    mean = 100 * cell["mean"]
    std = 100 * cell["std"] if math.isfinite(cell["std"]) else 0.0
    ax.bar(x, mean, width * 0.92, yerr=std, color=color, alpha=0.85, hatch=hatch, edgecolor="white", label=label,
           error_kw={"ecolor": "#333333", "lw": 1, "capsize": 3})
    ax.scatter([x + width * 0.2] * cell["n"], 100 * np.array(cell["values"]), s=18, facecolor="white",
               edgecolor="black", lw=0.8, zorder=3)
    text = f"{mean:.1f}" + (f"\nn={cell['n']}" if note else "")  # a bar from fewer seeds says so
    ax.annotate(text, (x, mean + std), textcoords="offset points", xytext=(0, 3), ha="center", va="bottom",
                fontsize=8)


# --- pretraining and filters ---------------------------------------------------------------------------------------

def pretrain_curves(metrics: list[dict], path: Path, best_epoch: int | None = None) -> Path:
    """Pretraining loss (train, validation) and the validation metrics the lines hold (ROC-AUC / PR-AUC, top-1)."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    epochs = [m["epoch"] for m in metrics]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        left.plot(epochs, _column(metrics, key), marker="o", ms=3, label=label)
    shown = [k for k in ("val_roc_auc", "val_pr_auc", "val_top1", "val_top5") if any(k in m for m in metrics)]
    for key in shown:
        right.plot(epochs, _column(metrics, key), marker="o", ms=3, label=metric_name(key))
    tagging = "val_roc_auc" in shown
    left.set_ylabel("binary cross-entropy (per tag, nats)" if tagging else "cross-entropy (nats)")
    right.set_ylabel("area under curve, macro (0-1)" if tagging else "accuracy (0-1)")
    left.set_title("Pretraining loss")
    right.set_title("Pretraining validation metrics")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if best_epoch:
            ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.legend(frameon=False)
    return _save(fig, path, tight=False)


FILTERS_SHOWN = 64  # the first ones, of a layer with more (a ViT-Tiny's patch embedding has 192)


def first_layer_filters(filters: dict[str, np.ndarray], path: Path, layer: str = "conv1") -> Path:
    """Each model's first-layer filters ([out, in, h, w]; the first FILTERS_SHOWN) as a square grid of RGB tiles,
    side by side.

    Each filter is min-max scaled on its own, so the tiles show shape and colour, not magnitude.
    """
    names = list(filters)
    fig = Figure(figsize=(3.6 * max(1, len(names)), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(names)), squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        weight = np.asarray(filters[name], dtype=float)
        ax.imshow(filter_grid(weight[:FILTERS_SHOWN]), interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        shown = f"the first {FILTERS_SHOWN} of {weight.shape[0]}" if weight.shape[0] > FILTERS_SHOWN else \
            f"{weight.shape[0]}"
        ax.set_xlabel(f"{shown} filters, {weight.shape[2]} x {weight.shape[3]} px each")
    fig.suptitle(f"First-layer ({layer}) filters, each min-max scaled to RGB")
    return _save(fig, path, tight=False)


def filter_grid(weight: np.ndarray, pad: int = 1) -> np.ndarray:
    """[out, in, h, w] weights -> one [H, W, 3] image in [0, 1], tiles in a near-square grid on a white ground."""
    out, channels, h, w = weight.shape
    rgb = weight[:, :3] if channels >= 3 else np.repeat(weight[:, :1], 3, axis=1)  # grey tiles for 1-channel input
    low = rgb.min(axis=(1, 2, 3), keepdims=True)
    span = rgb.max(axis=(1, 2, 3), keepdims=True) - low
    rgb = (rgb - low) / np.where(span > 0, span, 1.0)
    cols = math.ceil(math.sqrt(out))
    rows = math.ceil(out / cols)
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3))
    for i in range(out):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = rgb[i].transpose(1, 2, 0)
    return grid


# --- helpers -------------------------------------------------------------------------------------------------------

def _series(items) -> dict:
    """{(init, freeze): [items]} in first-seen order."""
    out = defaultdict(list)
    for item in items:
        out[(item["init"], item.get("freeze", "none"))].append(item)
    return dict(out)


class SeriesPoints(NamedTuple):
    """One init's (and freeze's) points on a per-fraction figure, in percentage points."""
    group: list[dict]  # its cells (or gains) that have at least one seed
    label: str
    color: str
    style: str
    x: np.ndarray  # fractions, dodged so that series do not overlap
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _series_points(items: list[dict]):
    """SeriesPoints for each series of `items` (cells or gains: fraction, n, mean, ci_low, ci_high) with data."""
    series = _series(items)
    for i, ((init, freeze), group) in enumerate(series.items()):
        group = [item for item in group if item["n"] > 0]
        if not group:
            continue
        x = np.array([item["fraction"] for item in group]) * _dodge(i, len(series))
        mean, low, high = (np.array([100 * item[k] for item in group]) for k in ("mean", "ci_low", "ci_high"))
        low, high = _clipped(low, high, group[0])
        yield SeriesPoints(group, _label(init, freeze, items), *_style(init, freeze, items), x, mean, low, high)


def _clipped(low: np.ndarray, high: np.ndarray, item: dict) -> tuple[np.ndarray, np.ndarray]:
    """Interval ends (x 100) within the metric's range, or a difference's (a gain has a baseline), as the tables
    show them (text.bounded): a band never reaches past 100% or below 0."""
    bounds = (gain_range if "baseline" in item else metric_range)(item.get("metric", ""))
    return np.clip(low, 100 * bounds[0], 100 * bounds[1]), np.clip(high, 100 * bounds[0], 100 * bounds[1])


def use_palette(inits: list[str]) -> None:
    """Give each init of the report being made a colour of its own, the same in every figure: random grey, the
    others PALETTE's colours in their order (up to eight are told apart)."""
    _ASSIGNED.clear()
    others = [init for init in inits if init.split(":", 1)[0] != "random"]
    _ASSIGNED.update({init: PALETTE[k % len(PALETTE)] for k, init in enumerate(others)})


def init_color(init: str):
    """An init's colour: random's grey, else its colour in this report (use_palette), else one by name."""
    if init.split(":", 1)[0] == "random":
        return BASELINE_COLOR
    return _ASSIGNED.get(init) or PALETTE[zlib.crc32(init.encode()) % len(PALETTE)]


def _style(init: str, freeze: str, items) -> tuple[str, str]:
    """A fixed colour per init and a line style per freeze (solid for the first / only one)."""
    freezes = list(dict.fromkeys(i.get("freeze", "none") for i in items))
    return init_color(init), LINESTYLES[freezes.index(freeze) % len(LINESTYLES)]


def _label(init: str, freeze: str, items) -> str:
    several = len({i.get("freeze", "none") for i in items}) > 1
    return f"{init} init, freeze {freeze}" if several else f"{init} init"


def _dodge(i: int, count: int) -> float:
    """A small multiplicative shift on the log axis so overlapping markers and bars stay apart."""
    return 10 ** ((i - (count - 1) / 2) * 0.012)


def _yerr(mean, low, high) -> np.ndarray:
    """Asymmetric errorbar extents; nan (n < 2) becomes 0, i.e. no bar."""
    return np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)


def _fraction_axis(ax, fractions) -> None:
    grid = sorted(set(fractions))
    ax.set_xscale("log")
    ax.set_xticks(grid, [f"{100 * f:g}%" for f in grid])
    ax.minorticks_off()
    if grid:
        ax.set_xlim(grid[0] / 1.25, grid[-1] * 1.25)
    ax.set_xlabel("fraction of the training split used (log scale)")
    ax.grid(alpha=0.3)


def _clip_percent(ax) -> None:
    """Keep the y-axis inside 0-100%: wide small-n intervals must not stretch it past what is possible."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))


def _legend(ax, extra, dedupe: bool = False, below: bool = False) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if dedupe:
        unique = dict(zip(labels, handles))
        labels, handles = list(unique), list(unique.values())
    handles, labels = handles + extra, labels + [h.get_label() for h in extra]
    if below:  # needs a figure with layout="constrained"
        ax.figure.legend(handles, labels, frameon=False, fontsize=9, loc="outside lower center",
                         ncols=min(4, len(labels)))
    else:
        ax.legend(handles, labels, frameon=False, fontsize=9, loc="best")


def _mean_curve(runs) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs at each epoch, over the runs that reached that epoch (runs may have stopped early)."""
    by_epoch = defaultdict(list)
    for run in runs:
        for epoch, value in zip(run["epochs"], run["values"]):
            if value is not None and math.isfinite(value):
                by_epoch[epoch].append(value)
    epochs = np.array(sorted(by_epoch))
    return epochs, np.array([np.mean(by_epoch[e]) for e in epochs])


def _column(metrics, key) -> np.ndarray:
    return np.array([m.get(key, math.nan) if m.get(key) is not None else math.nan for m in metrics], dtype=float)


def _save(fig: Figure, path: Path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None, facecolor="white")
    return path
