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
from .index import SPLITS, plural  # plural: also imported from here by the notebooks


#: Dots per inch of every figure: readable on a projector.
DPI = 100
#: Inches per film in image grids (about 200 px at `DPI`).
FILM = 2.0
#: The one overlay colour convention of the series: lung outline cyan, lesion outline red.
LUNG, LESION = "cyan", "red"


def photo(fig: Figure) -> Figure:
    """Mark `fig` as a photographic grid (X-ray films): shown as JPEG to keep notebooks small."""
    fig._cxrnb_photo = True
    return fig


def is_photo(fig: Figure) -> bool:
    """Whether `photo` marked the figure (else it is a chart, shown as PNG)."""
    return bool(getattr(fig, "_cxrnb_photo", False))


def _flat_pixels(pixels: np.ndarray, min_std: float, min_colours: int) -> bool:
    """Whether RGB(A) or grey `pixels` (0-255) are (nearly) one colour: standard deviation of the
    values at most `min_std` or fewer than `min_colours` distinct colours. Alpha is composited
    over white, as a notebook shows a PNG."""
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] in (2, 4):  # grey/RGB + alpha, over a white page
        alpha = a[..., -1:] / 255.0
        a = a[..., :-1] * alpha + 255.0 * (1 - alpha)
    if a.size == 0 or a.std() <= min_std:
        return True
    q = np.clip(a.round(), 0, 255).astype(np.uint32)
    packed = sum(q[..., i] << (8 * i) for i in range(q.shape[-1]))  # one int per colour
    return bool(len(np.unique(packed)) < min_colours)


def is_blank(fig_or_pixels, *, min_std: float = 2.0, min_colours: int = 8) -> bool:
    """Whether a figure, or a rendered image's pixels (e.g. a notebook's PNG output decoded with
    PIL), shows (nearly) nothing: one colour or almost no variation.

    A Figure is rasterised and blank when the whole figure is flat, or when any axes that holds an
    image (a film, a CAM, a confusion matrix) is flat inside its frame: a grid whose films came out
    uniform is blank even if its titles are drawn. Thresholds are on 0-255 pixel values.
    """
    if not isinstance(fig_or_pixels, Figure):
        return _flat_pixels(fig_or_pixels, min_std, min_colours)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = fig_or_pixels
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    if _flat_pixels(rgba, min_std, min_colours):
        return True
    height = rgba.shape[0]
    for ax in fig.axes:
        if not ax.images:
            continue
        box = ax.get_window_extent()  # display pixels, origin bottom left; 2 px in: no spines
        rows = slice(max(int(height - box.y1) + 2, 0), int(height - box.y0) - 2)
        cols = slice(max(int(box.x0) + 2, 0), int(box.x1) - 2)
        if _flat_pixels(rgba[rows, cols], min_std, min_colours):
            return True
    return False


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


def box_overlay(index: pd.DataFrame, *, n: int = 8, cols: int = 4, size: int = 256, seed: int = 0) -> Figure:
    """Films with their radiologists' boxes drawn in red (RSNA Pneumonia: the ``boxes`` column).

    Films with boxes come first (up to `n`, drawn at random with `seed`), then films without,
    so a grid shows what a positive looks like next to a negative. Boxes are scaled from the
    stored image (``width``/``height``) to `size`, as `cxrnb.radiology.box_mask` does for masks.
    """
    from matplotlib.patches import Rectangle

    from .radiology import parse_boxes

    if "boxes" not in index:
        raise ValueError("index has no 'boxes' column: only a box-carrying source (rsna-pneumonia) has boxes")
    has = index["boxes"].map(lambda b: len(parse_boxes(b)) > 0)
    pos, neg = index[has], index[~has]
    k = min(n, len(pos))
    rows = pd.concat([pos.sample(k, random_state=seed), neg.sample(min(n - k, len(neg)), random_state=seed)])
    r = max(1, -(-len(rows) // cols))
    fig = Figure(figsize=(FILM * cols, (FILM + 0.25) * r), dpi=DPI, layout="constrained")
    axes = fig.subplots(r, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (_, row) in zip(axes, rows.iterrows()):
        img, info = read_gray(Path(str(row["root"])) / str(row["path"]), size)
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        sx, sy = size / info.width, size / info.height
        bx = parse_boxes(row["boxes"])
        for x, y, w, h in bx:
            ax.add_patch(Rectangle((x * sx, y * sy), w * sx, h * sy, fill=False, edgecolor="red", linewidth=1.5))
        ax.set_title(f"{row['label']} ({row.get('view') or '?'})\n{plural(len(bx), 'box', 'boxes')}", fontsize=9)
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


# ============================================================================= evaluation figures
# Figures for `cxrnb.evaluate` results: confusion matrix, ROC/PR curves, calibration, learning
# curves and a grid of test predictions. Same conventions as above: each returns a Figure.

from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from .evaluate import Evaluation, calibration, check_inputs  # noqa: E402


def confusion_matrix(ev: Evaluation) -> Figure:
    """Confusion matrix of an `Evaluation`: counts and row percentages (recall on the diagonal)."""
    cm = np.asarray(ev.confusion, dtype=float)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(ev.classes)
    fig = Figure(figsize=(1.2 * k + 2.2, 1.0 * k + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{100 * share[i, j]:.0f} %", ha="center", va="center",
                    fontsize=9, color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), ev.classes)
    ax.set_yticks(range(k), ev.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {ev.accuracy:.3f} (majority {ev.majority_baseline:.3f})", fontsize=10)
    return fig


def _one_vs_rest(y: np.ndarray, p: np.ndarray, classes: list[str]):
    """(name, binary labels, scores) per curve: the positive class for K = 2, every class otherwise."""
    for c in ([1] if p.shape[1] == 2 else range(p.shape[1])):
        if 0 < (y == c).sum() < len(y):
            yield classes[c], y == c, p[:, c]


def roc_pr_curves(y_true, proba, classes) -> Figure:
    """ROC (left) and precision-recall (right) curves, one-vs-rest for several classes.

    Legends carry the AUC / average precision; the chance diagonal and each class's prevalence
    (the precision of guessing) are drawn dashed. A class absent from y_true gets no curve.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    classes = [str(c) for c in classes]
    y, p, _ = check_inputs(y_true, proba, classes)
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="chance")
    for i, (name, yc, s) in enumerate(_one_vs_rest(y, p, classes)):
        color = f"C{i}"
        fpr, tpr, _ = roc_curve(yc, s)
        a.plot(fpr, tpr, color=color, lw=1.5, label=f"{name} (AUC {roc_auc_score(yc, s):.3f})")
        prec, rec, _ = precision_recall_curve(yc, s)
        b.plot(rec, prec, color=color, lw=1.5, drawstyle="steps-post",
               label=f"{name} (AP {average_precision_score(yc, s):.3f}; prevalence {yc.mean():.2f})")
        b.axhline(yc.mean(), color=color, ls="--", lw=1)  # the precision of guessing
    a.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)",
          title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    b.set(xlabel="recall (sensitivity)", ylabel="precision", title="precision-recall", xlim=(0, 1),
          ylim=(0, 1.02))
    for ax in (a, b):
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower left" if ax is b else "lower right")
    return fig


def calibration_curve(y_true, proba, *, n_bins: int = 10) -> Figure:
    """Reliability diagram (with the diagonal) above a histogram of the predicted probabilities."""
    cal = calibration(y_true, proba, n_bins=n_bins)
    p = np.asarray(proba, dtype=float)
    conf = p[:, 1] if p.shape[1] == 2 else p.max(1)
    fig = Figure(figsize=(4.2, 5.0), layout="constrained")
    a, b = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfectly calibrated")
    a.plot(cal.table["mean_predicted"], cal.table["observed"], marker="o", lw=1.5,
           label=f"model (Brier {cal.brier:.3f}, ECE {cal.ece:.3f})")
    a.set(ylabel="observed frequency", title=f"calibration: {cal.what}", xlim=(0, 1), ylim=(0, 1))
    a.legend(fontsize=8, loc="upper left")
    b.hist(conf, bins=np.linspace(0, 1, n_bins + 1), color="#4c72b0")
    b.set(xlabel="predicted probability", ylabel="images")
    return fig


def learning_curves(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, train vs val, from a Keras CSVLogger ``history.csv``.

    Epochs are shown 1-based (as Keras prints them; CSVLogger stores them from 0). A dotted line
    marks the epoch with the lowest validation loss, the one a best-checkpoint callback keeps
    (with deferred re-weighting, among the weighted epochs; the plain ones are shaded).
    """
    if "loss" not in history.columns:
        raise ValueError(f"history has no 'loss' column (columns: {list(history.columns)}); "
                         "expected a Keras CSVLogger history.csv")
    acc = next((c for c in history.columns if "acc" in c and not c.startswith("val_")), None)
    epoch = (history["epoch"] if "epoch" in history else pd.Series(range(len(history)))).to_numpy() + 1
    keys = ["loss"] + ([acc] if acc else [])
    fig = Figure(figsize=(4.2 * len(keys), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    from .train import best_epoch

    best = best_epoch(history) if "val_loss" in history else None
    plain = int((~history["weighted"].astype(bool)).sum()) if "weighted" in history and history["weighted"].any() else 0
    for ax, key in zip(axes, keys):
        if plain:
            ax.axvspan(0.5, plain + 0.5, color="0.92", label="no class weights yet")
        ax.plot(epoch, history[key], marker="o", ms=3, label="train")
        if f"val_{key}" in history:
            ax.plot(epoch, history[f"val_{key}"], marker="o", ms=3, label="val")
        if best is not None:
            ax.axvline(best, color="gray", ls=":", lw=1, label=f"best val loss (epoch {best})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", title=key)
        ax.legend(fontsize=8)
    return fig


def prediction_grid(images, y_true, proba, classes, *, n: int = 16, cols: int = 8,
                    threshold: float | None = None) -> Figure:
    """The first `n` test films with true label, predicted label and its probability; wrong in red.

    ``images``: (N, H, W) or (N, H, W, 1), values in [0, 1] (pipeline batches) or uint8.
    ``threshold`` (binary): predict the positive class when p >= threshold, as `evaluate` does.
    """
    classes = [str(c) for c in classes]
    y, p, _ = check_inputs(y_true, proba, classes)
    x = np.asarray(images)
    if len(x) != len(y):
        raise ValueError(f"length mismatch: images has {len(x)} rows, y_true has {len(y)}")
    x, y, p = x[:n], y[:n], p[:n]
    vmax = 255 if x.dtype == np.uint8 else 1
    rows = -(-len(x) // cols)
    fig = Figure(figsize=(1.4 * cols, 1.75 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    if threshold is not None and p.shape[1] != 2:
        raise ValueError(f"threshold applies to binary tasks only; this task has {p.shape[1]} classes")
    pred = p.argmax(1) if threshold is None else (p[:, 1] >= threshold).astype(int)
    for ax, img, t, pr, k in zip(axes, x, y, p, pred):
        ax.imshow(img.reshape(img.shape[:2]), cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"true {classes[t]}\npred {classes[k]} {pr[k]:.2f}", fontsize=7,
                     color="black" if k == t else "red")
        if k != t:
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_color("red")
                sp.set_linewidth(2)
    return fig


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


def _class_names(values, classes) -> np.ndarray:
    """`values` as class names: integer indexes are looked up in `classes`, names kept as they are."""
    v = np.asarray(values)
    if v.dtype.kind in "iu":
        bad = v[(v < 0) | (v >= len(classes))]
        if bad.size:
            raise ValueError(f"class index {int(bad[0])} out of range for the {len(classes)} "
                             f"classes {list(classes)}")
        return np.asarray([str(classes[i]) for i in v], dtype=object)
    return v.astype(str).astype(object)


def cam_grid(images, maps, labels, predictions, classes, *, n_per_class: int = 4,
             lungs=None, lesions=None) -> Figure:
    """Per true class (rows), up to `n_per_class` correct then as many wrong predictions, each with
    its CAM; titles give true -> predicted, marked ok or WRONG.

    `labels` and `predictions` are class indexes into `classes` (as a model's argmax gives them)
    or class names; both kinds are compared by name.
    """
    labels, predictions = _class_names(labels, classes), _class_names(predictions, classes)
    fig = Figure(figsize=(1.7 * 2 * n_per_class + 0.6, 1.9 * len(classes)), layout="constrained")
    axes = fig.subplots(len(classes), 2 * n_per_class, squeeze=False)
    im = None
    for r, cls in enumerate(map(str, classes)):
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
