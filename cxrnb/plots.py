"""Figures for the notebooks. Every function takes an index (or arrays) and returns a Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: they are not registered with
a pyplot manager, so a notebook shows each exactly once (when it is the cell's value), and
nothing leaks memory across many calls. `save` writes one under the output folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .images import read_gray
from .index import SPLITS


def _count_bar(ax, series: pd.Series, title: str, order=None) -> None:
    s = series.fillna("(missing)").astype(str)
    if s.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        sns.countplot(y=s, ax=ax, order=order or s.value_counts().index, color="#4c72b0")
        for c in ax.containers:
            ax.bar_label(c, fontsize=8, padding=2)
    ax.set_title(title)
    ax.set_xlabel("images")
    ax.set_ylabel("")


def overview(index: pd.DataFrame) -> Figure:
    """Class balance, views, sex and age of an index (panels say 'not recorded' when absent)."""
    fig = Figure(figsize=(13, 3.0), layout="constrained")
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
            sns.histplot(data=index, x="age", hue="label", multiple="stack", bins=15, ax=ax)
            ax.set_title("age (years)")
    return fig


def image_sizes(index: pd.DataFrame) -> Figure:
    """Stored width x height per image (by label) and the count of file formats/modes."""
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    sns.scatterplot(data=index, x="width", y="height", hue="label", style="label", alpha=0.6, s=18, ax=a)
    a.set_title("stored image size (px)")
    fm = index["format"].astype(str) + " " + index["mode"].astype(str)
    _count_bar(b, fm, "format and mode")
    return fig


def _outline(ax, mask: np.ndarray, color: str) -> None:
    if mask.any():
        ax.contour(mask > 127, levels=[0.5], colors=color, linewidths=0.8)


def sample_grid(index: pd.DataFrame, *, n_per_class: int = 4, size: int = 128, seed: int = 0,
                masks: bool = True) -> Figure:
    """A few images per class (rows), with lung (cyan) and lesion (red) outlines when known."""
    classes = sorted(index["label"].unique())
    fig = Figure(figsize=(1.7 * n_per_class, 1.8 * len(classes)), layout="constrained")
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
            ax.set_title(f"{cls}\n{row['patient_id']}", fontsize=8)
    return fig


def split_overview(index: pd.DataFrame) -> Figure:
    """Images per split and label (left) and images per patient (right)."""
    order = [s for s in SPLITS if s in set(index["split"])]
    fig = Figure(figsize=(10, 3.0), layout="constrained")
    a, b = fig.subplots(1, 2)
    sns.countplot(data=index, x="split", hue="label", order=order, ax=a)
    a.set_title("images per split and label")
    per_patient = index.groupby("patient_id").size()
    sns.histplot(per_patient, discrete=True, ax=b)
    b.set_title(f"images per patient ({(per_patient > 1).sum()} of {len(per_patient)} have several)")
    b.set_xlabel("images")
    b.set_ylabel("patients")
    return fig


def batch_grid(images, labels, classes, *, n: int = 16, cols: int = 8) -> Figure:
    """The first `n` images of a pipeline batch (values in [0, 1]) titled with their labels.

    `labels` may be class ids, one-hot rows or binary floats, as the pipeline yields them.
    """
    x = np.asarray(images)[:n]
    y = np.asarray(labels)[:n]
    ids = y.argmax(-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(len(y)).round().astype(int)
    rows = -(-len(x) // cols)
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, img, i in zip(axes, x, ids):
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(classes[int(i)], fontsize=8)
    return fig


def save(fig: Figure, path: str | Path, *, dpi: int = 80) -> Path:
    """Write `fig` as PNG (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# =============================================================================================
# Explanation figures (class activation maps over films)
# =============================================================================================

def _film(ax, image, cam=None, *, lung=None, lesion=None, alpha: float = 0.45, title: str = ""):
    """One film in grey with its CAM over it (jet, [0, 1], same pixel grid) and mask outlines."""
    img = np.asarray(image, dtype=np.float32)
    img = img[..., 0] if img.ndim == 3 else img
    hi = 255.0 if img.max() > 1.0 else 1.0
    ax.imshow(img, cmap="gray", vmin=0, vmax=hi, interpolation="nearest")
    im = None
    if cam is not None:
        cam = np.asarray(cam)
        if cam.shape != img.shape:
            raise ValueError(f"CAM of shape {cam.shape} does not match the image {img.shape}")
        im = ax.imshow(cam, cmap="jet", vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
    for m, color in ((lung, "cyan"), (lesion, "red")):
        if m is not None:
            m = np.asarray(m)
            if m.shape != img.shape:
                raise ValueError(f"mask of shape {m.shape} does not match the image {img.shape}")
            _outline(ax, m if m.max() > 1 else m * 255, color)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return im


def cam_overlay(image, cam, *, lung=None, lesion=None, title: str = "") -> Figure:
    """A film with its CAM as a heatmap and a colour bar; lung outlined cyan, lesion red."""
    fig = Figure(figsize=(3.6, 3.0), layout="constrained")
    ax = fig.subplots()
    im = _film(ax, image, cam, lung=lung, lesion=lesion, title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="CAM (0-1)")
    return fig


def cam_methods(images, maps: dict, *, lungs=None, lesions=None, titles=None) -> Figure:
    """Rows of films (first column plain), one column per method (`maps`: {method: (B, H, W)})."""
    images = np.asarray(images)
    names = list(maps)
    fig = Figure(figsize=(1.8 * (len(names) + 1) + 0.6, 1.8 * len(images)), layout="constrained")
    axes = fig.subplots(len(images), len(names) + 1, squeeze=False)
    im = None
    for r in range(len(images)):
        lung = None if lungs is None else lungs[r]
        lesion = None if lesions is None else lesions[r]
        _film(axes[r, 0], images[r], lung=lung, lesion=lesion,
              title=titles[r] if titles is not None else "film")
        for c, name in enumerate(names, start=1):
            im = _film(axes[r, c], images[r], maps[name][r], lung=lung, lesion=lesion,
                       title=name if r == 0 else "")
    if im is not None:
        fig.colorbar(im, ax=axes, fraction=0.02, label="CAM (0-1)")
    return fig


def cam_grid(images, maps, labels, predictions, classes, *, n_per_class: int = 4,
             lungs=None, lesions=None) -> Figure:
    """Per true class (rows), up to `n_per_class` correct then as many wrong predictions, each with
    its CAM; titles give true -> predicted, marked ok or WRONG."""
    labels = np.asarray(labels, dtype=object)
    predictions = np.asarray(predictions, dtype=object)
    fig = Figure(figsize=(1.7 * 2 * n_per_class + 0.6, 1.9 * len(classes)), layout="constrained")
    axes = fig.subplots(len(classes), 2 * n_per_class, squeeze=False)
    im = None
    for r, cls in enumerate(classes):
        ok = np.flatnonzero((labels == cls) & (predictions == cls))[:n_per_class]
        bad = np.flatnonzero((labels == cls) & (predictions != cls))[:n_per_class]
        for c in range(2 * n_per_class):
            ax = axes[r, c]
            ax.set_axis_off()
            pick = ok if c < n_per_class else bad
            j = c if c < n_per_class else c - n_per_class
            if j >= len(pick):
                continue
            i = pick[j]
            tag = "ok" if c < n_per_class else "WRONG"
            im = _film(ax, images[i], maps[i], lung=None if lungs is None else lungs[i],
                       lesion=None if lesions is None else lesions[i],
                       title=f"{cls} -> {predictions[i]} ({tag})")
    if im is not None:
        fig.colorbar(im, ax=axes, fraction=0.02, label="CAM (0-1)")
    return fig


def faithfulness_curves(curves: dict) -> Figure:
    """Mean deletion and insertion curves per method (`cxrnb.explain.faithfulness`'s curves)."""
    fig = Figure(figsize=(8, 3), layout="constrained")
    a, b = fig.subplots(1, 2)
    for name, c in curves.items():
        style = "--" if name == "random map" else "-"
        a.plot(c.fractions, c.deletion.mean(0), style, label=f"{name} ({c.deletion_auc.mean():.2f})")
        b.plot(c.fractions, c.insertion.mean(0), style, label=f"{name} ({c.insertion_auc.mean():.2f})")
    for ax, t in ((a, "deletion (lower is better)"), (b, "insertion (higher is better)")):
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("class probability")
        ax.set_title(t)
        ax.legend(fontsize=7)
    return fig
