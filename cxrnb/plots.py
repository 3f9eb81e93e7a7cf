"""Figures for the notebooks. Every function takes an index (or arrays) and returns a Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: they are not registered with
a pyplot manager, so a notebook shows each exactly once (when it is the cell's value), and
nothing leaks memory across many calls. `save` writes one under the output folder. Projector
rules: `DPI` dots per inch, about 200 px per film in grids, counts on integer ticks, a legend
for the overlay colours (`LUNG`, `LESION`), bar labels inside the axes; `photo` marks X-ray
grids, which notebooks show as JPEG (charts as PNG).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .images import read_gray
from .index import SPLITS


#: Dots per inch of every figure: readable on a projector.
DPI = 100
#: Inches per film in image grids (about 200 px at `DPI`).
FILM = 2.0
#: The one overlay colour convention of the series: lung outline cyan, lesion outline red.
LUNG, LESION = "cyan", "red"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``: a count with its noun in the right number."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def photo(fig: Figure) -> Figure:
    """Mark `fig` as a photographic grid (X-ray films): shown as JPEG to keep notebooks small."""
    fig._cxrnb_photo = True
    return fig


def is_photo(fig: Figure) -> bool:
    """Whether `photo` marked the figure (else it is a chart, shown as PNG)."""
    return bool(getattr(fig, "_cxrnb_photo", False))


def overlay_legend(fig: Figure, *, lesion: bool = True) -> None:
    """The legend of the outline colours, below the figure."""
    handles = [Line2D([], [], color=LUNG, lw=2, label="lung outline")]
    if lesion:
        handles.append(Line2D([], [], color=LESION, lw=2, label="lesion outline"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def _count_bar(ax, series: pd.Series, title: str, order=None) -> None:
    s = series.fillna("(missing)").astype(str)
    if s.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        sns.countplot(y=s, ax=ax, order=order or s.value_counts().index, color="#4c72b0")
        for c in ax.containers:
            ax.bar_label(c, fontsize=8, padding=2)
        ax.margins(x=0.18)  # room for the bar labels: none is clipped
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel("images")
    ax.set_ylabel("")


def overview(index: pd.DataFrame) -> Figure:
    """Class balance, views, sex and age of an index (panels say 'not recorded' when absent)."""
    fig = Figure(figsize=(13, 3.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 4)
    _count_bar(axes[0], index["label"], "label", order=sorted(index["label"].unique()))
    _count_bar(axes[1], index["view"], "view")
    for ax, col in ((axes[2], "sex"), (axes[3], "age")):
        if col not in index or index[col].isna().all():
            ax.text(0.5, 0.5, f"{col}: not recorded\nin this source", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
        elif col == "sex":
            _count_bar(ax, index["sex"], "sex")
        else:
            few = index["age"].nunique() <= 15  # e.g. paediatric ages 1-5: one bar per year
            sns.histplot(data=index, x="age", hue="label", multiple="stack", ax=ax,
                         **({"discrete": True} if few else {"bins": 15}))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("images")
            ax.set_title("age (years)")
    return fig


def image_sizes(index: pd.DataFrame) -> Figure:
    """Stored width x height per image (by label) and the count of file formats/modes."""
    fig = Figure(figsize=(10, 3.4), dpi=DPI, layout="constrained")
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    sns.scatterplot(data=index, x="width", y="height", hue="label", style="label", alpha=0.6, s=18, ax=a)
    n = len(index[["width", "height"]].drop_duplicates())
    a.set_title(f"stored image size (px): {plural(n, 'distinct size')}")
    fm = index["format"].astype(str) + " " + index["mode"].astype(str)
    _count_bar(b, fm, "format and mode")
    return fig


def _outline(ax, mask: np.ndarray, color: str) -> None:
    if mask.any():
        ax.contour(mask > 127, levels=[0.5], colors=color, linewidths=1.2)


def sample_grid(index: pd.DataFrame, *, n_per_class: int = 4, size: int = 200, seed: int = 0,
                masks: bool = True) -> Figure:
    """A few images per class (rows), with lung (cyan) and lesion (red) outlines when known."""
    classes = sorted(index["label"].unique())
    fig = Figure(figsize=(FILM * n_per_class, (FILM + 0.25) * len(classes) + 0.3), dpi=DPI,
                 layout="constrained")
    axes = fig.subplots(len(classes), n_per_class, squeeze=False)
    has_masks = masks and {"lung_mask", "lesion_mask"} <= set(index.columns)
    for r, cls in enumerate(classes):
        rows = index[index["label"] == cls]
        rows = rows.sample(min(n_per_class, len(rows)), random_state=seed) if len(rows) else rows
        for c in range(n_per_class):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(rows):
                continue
            row = rows.iloc[c]
            root = Path(str(row["root"]))
            img, _ = read_gray(root / str(row["path"]), size)
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            if has_masks:
                for col, color in (("lung_mask", "cyan"), ("lesion_mask", "red")):
                    if isinstance(row[col], str):
                        m, _ = read_gray(root / row[col], size, min_side=1)
                        _outline(ax, m, color)
            ax.set_title(f"{cls}\n{row['patient_id']}", fontsize=9)
    if has_masks:
        overlay_legend(fig)
    return photo(fig)


def split_overview(index: pd.DataFrame) -> Figure:
    """Images per split and label (left) and images per patient (right)."""
    order = [s for s in SPLITS if s in set(index["split"])]
    fig = Figure(figsize=(10, 3.2), dpi=DPI, layout="constrained")
    a, b = fig.subplots(1, 2)
    sns.countplot(data=index, x="split", hue="label", order=order, ax=a)
    a.yaxis.set_major_locator(MaxNLocator(integer=True))
    a.set_title("images per split and label")
    per_patient = index.groupby("patient_id").size()
    sns.histplot(per_patient, discrete=True, ax=b)
    b.set_title(f"images per patient ({(per_patient > 1).sum()} of {len(per_patient)} have several)")
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.yaxis.set_major_locator(MaxNLocator(integer=True))
    b.set_xlabel("images")
    b.set_ylabel("patients")
    return fig


def batch_grid(images, labels, classes, *, n: int = 16, cols: int = 8, title: str | None = None) -> Figure:
    """The first `n` images of a pipeline batch (values in [0, 1]) titled with their labels.

    `labels` may be class ids, one-hot rows or binary floats, as the pipeline yields them.
    """
    x = np.asarray(images)[:n]
    y = np.asarray(labels)[:n]
    ids = y.argmax(-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(len(y)).round().astype(int)
    rows = -(-len(x) // cols)
    fig = Figure(figsize=(FILM * 0.8 * cols, FILM * 0.9 * rows + (0.3 if title else 0)), dpi=DPI,
                 layout="constrained")
    if title:
        fig.suptitle(title)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, img, i in zip(axes, x, ids):
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(classes[int(i)], fontsize=9)
    return photo(fig)


def source_vs_label(index: pd.DataFrame, by: str = "source") -> tuple[pd.DataFrame, float]:
    """How well `by` alone (the source collection, by default) predicts the label.

    Returns the crosstab of `by` against label and the accuracy of answering each image with
    the majority label of its `by` group: 1.0 means a model can score perfectly by recognising
    where a film comes from, without looking at any disease."""
    table = pd.crosstab(index[by].fillna("(missing)"), index["label"])
    accuracy = float(table.max(axis=1).sum() / table.to_numpy().sum()) if len(table) else float("nan")
    return table, accuracy


def save(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write `fig` as PNG (folders created, nothing clipped) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
