"""The lessons of notebook 02 (augmentation preview): look before you train, figures of what an
augmentation policy does to chest X-rays.

Every figure function takes numpy images (uint8 or float in 0..255, ``(H, W)`` or ``(H, W, 1)``)
and returns a `matplotlib.figure.Figure` (built without pyplot, like `cxrnb.plots`, so a notebook
shows it once, when it is the cell's value). Given a policy (or preset name) and a seed, a figure
is deterministic: the executor is built afresh with that seed and all draws come from one batch.
Given an executor object instead, its random state advances from call to call. `first_films` and
`film_masks` read the films and masks the figures show; `normalise` and `normalisation_table`
compare the normalisations the models use; `resolution_grid` shows one film at several sizes.
The policy and its executors are a library (`cxrnb.augment`); this module only shows them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..augment import EXECUTORS as _EXECUTORS
from ..augment import AugmentPolicy, CXRAugment, make_augmenter
from ..images import read_gray
from ..pipeline import load_images
from ..plots import DPI, FILM, LESION, LUNG, overlay_legend, photo

EXECUTORS = tuple(_EXECUTORS)  # ("keras", "opencv", "imgaug")


def _hw1(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected one image (H, W) or (H, W, C), got shape {a.shape}")
    if a.shape[-1] == 3:  # RGB preview of a gray film: keep one channel
        a = a[..., :1]
    return a.astype(np.float32)


def _executor(augmenter, seed: int, executor: str):
    if isinstance(augmenter, (str, AugmentPolicy)):
        return make_augmenter(augmenter, executor, seed=seed)  # ValueError names the executors
    if callable(augmenter):
        return augmenter
    raise TypeError(f"expected an AugmentPolicy, a preset name or an augmenter, got {type(augmenter).__name__}")


def draws(image, augmenter="default", n: int = 8, *, seed: int = 0, executor: str = "keras",
          mask=None):
    """`n` augmented copies of one image as a float32 (n, H, W, 1) array (and masks when given)."""
    x = np.repeat(_hw1(image)[None], n, axis=0)
    aug = _executor(augmenter, seed, executor)
    if mask is None:
        out = aug(x)
        return np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float32)
    m = np.repeat(np.asarray(mask).reshape(*x.shape[1:3], -1)[None], n, axis=0)
    if hasattr(aug, "augment_numpy"):  # ImgaugAugmenter, OpenCVAugmenter
        return aug.augment_numpy(x, m)
    if isinstance(aug, CXRAugment):
        xo, mo = aug.with_masks(x, m)
        return np.asarray(xo), np.asarray(mo)
    raise TypeError("masks need a CXRAugment, OpenCVAugmenter or ImgaugAugmenter (or a policy)")


def _show(ax, img, title: str | None = None, ylabel: str | None = None) -> None:
    ax.imshow(np.asarray(img).squeeze(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=9)


def _grid(n: int, cols: int, cell: float = FILM, title: str | None = None):
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cell * cols, cell * rows + (0.3 if title else 0)), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes[:n]


def _name(augmenter) -> str:
    if isinstance(augmenter, str):
        return f"preset {augmenter!r}"
    if isinstance(augmenter, AugmentPolicy):
        return "policy"
    return type(augmenter).__name__


def draws_grid(image, augmenter_or_policy="default", n: int = 16, seed: int = 0, executor: str = "keras",
               *, show_original: bool = True, cols: int | None = None) -> Figure:
    """The same source image under `n` draws (first panel: the original when `show_original`)."""
    out = draws(image, augmenter_or_policy, n, seed=seed, executor=executor)
    panels = [(_hw1(image), "original")] if show_original else []
    panels += [(o, f"draw {i + 1}") for i, o in enumerate(out)]
    cols = cols or min(8, math.ceil(math.sqrt(len(panels))))
    fig, axes = _grid(len(panels), cols, title=f"{_name(augmenter_or_policy)} via {executor}, seed {seed}")
    for ax, (img, t) in zip(axes, panels):
        _show(ax, img, t)
    return photo(fig)


def film_masks(row, size: int) -> np.ndarray | None:
    """The lung and lesion masks of one index row (a Series with ``root``, ``lung_mask`` and
    ``lesion_mask``) as (size, size, 2), read and resized as its film is (`cxrnb.images.read_gray`,
    so the outlines sit where the film's pixels are); None when the row has no masks."""
    if not isinstance(row.get("lung_mask"), str):
        return None
    return np.stack([read_gray(f"{row['root']}/{row[c]}", size, min_side=1)[0] for c in ("lung_mask", "lesion_mask")],
                    -1)


def first_films(rows, size: int) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray] | None]:
    """The first film (by path) of each class of an index, in class order, at `size`:
    ``{label: [film]}`` and ``{label: masks}`` (`film_masks`; None when the source has no
    masks), the inputs of `class_grid`."""
    firsts = rows.sort_values("path").groupby("label").head(1).sort_values("label")
    images = load_images(firsts, size, progress=False)
    by_class = {label: [img] for label, img in zip(firsts["label"], images)}
    masks = {row["label"]: m for _, row in firsts.iterrows() if (m := film_masks(row, size)) is not None}
    return by_class, masks or None


def class_grid(images_by_class: Mapping[str, Sequence[np.ndarray]], policy="default", seed: int = 0,
               *, n_aug: int = 5, executor: str = "opencv", masks_by_class: Mapping | None = None) -> Figure:
    """One row per class: the class's first image, then `n_aug` augmented draws of it.

    With `masks_by_class` (class -> (H, W, 2) lung and lesion masks of that first image) the
    outlines follow each draw, so one sees whether a finding survives augmentation."""
    classes = list(images_by_class)
    if not classes:
        raise ValueError("images_by_class is empty")
    cols = 1 + n_aug
    fig = Figure(figsize=(FILM * cols, (FILM + 0.1) * len(classes)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(len(classes), cols)).reshape(len(classes), cols)
    for r, cls in enumerate(classes):
        imgs = list(images_by_class[cls])
        if not imgs:
            raise ValueError(f"class {cls!r} has no images")
        m = None if masks_by_class is None else masks_by_class.get(cls)
        if m is None:
            out, outm = draws(imgs[0], policy, n_aug, seed=seed + r, executor=executor), [None] * n_aug
        else:
            out, outm = draws(imgs[0], policy, n_aug, seed=seed + r, executor=executor, mask=m)
        _overlay(axes[r, 0], _hw1(imgs[0]), m, "original" if r == 0 else None)
        axes[r, 0].set_ylabel(cls, fontsize=10)
        for c, (o, om) in enumerate(zip(out, outm), start=1):
            _overlay(axes[r, c], o, om, f"augmented {c}" if r == 0 else None)
    if masks_by_class is not None:
        overlay_legend(fig)
    return photo(fig)


def intensity_histograms(images_before, images_after, *, bins: int = 64) -> Figure:
    """Pixel-value histograms before and after augmentation, and per-image mean intensities."""
    before = np.asarray(images_before, np.float32)
    after = np.asarray(images_after, np.float32)
    fig = Figure(figsize=(9, 3.2), dpi=DPI, layout="constrained")
    a, b = fig.subplots(1, 2)
    edges = np.linspace(0, 255, bins + 1)
    for arr, label, color in ((before, "before", "#4c72b0"), (after, "after", "#dd8452")):
        a.hist(arr.ravel(), bins=edges, density=True, histtype="step", lw=1.5, label=label, color=color)
        means = arr.reshape(len(arr), -1).mean(axis=1) if arr.ndim >= 3 else arr.ravel()
        b.hist(means, bins=np.linspace(0, 255, 33), alpha=0.6, label=label, color=color)
    a.set_title("pixel values", fontsize=9)
    a.set_xlabel("intensity (0..255)")
    a.set_ylabel("density")
    a.legend(fontsize=8)
    b.set_title("mean intensity per image", fontsize=9)
    b.set_xlabel("mean (0..255)")
    b.set_ylabel("images")
    b.legend(fontsize=8)
    return fig


def compare_executors(image, policy="default", n: int = 6, seed: int = 0) -> Figure:
    """One row of `n` draws per executor (Keras in-graph, OpenCV, imgaug), all of the same policy."""
    fig = Figure(figsize=(FILM * n, (FILM + 0.15) * len(EXECUTORS)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(len(EXECUTORS), n)).reshape(len(EXECUTORS), n)
    for r, ex in enumerate(EXECUTORS):
        out = draws(image, policy, n, seed=seed, executor=ex)
        for c, o in enumerate(out):
            _show(axes[r, c], o, f"draw {c + 1}" if r == 0 else None, ylabel=ex if c == 0 else None)
    fig.suptitle(f"{_name(policy)}: one policy, {len(EXECUTORS)} executors, seed {seed}", fontsize=10)
    return photo(fig)


def _overlay(ax, image, mask, title=None) -> None:
    """The image with mask channel 0 outlined in `LUNG` colour and channel 1 in `LESION` colour."""
    _show(ax, image, title)
    if mask is None:
        return
    m = np.asarray(mask)
    m = m.reshape(*m.shape[:2], -1)
    colors = (LUNG, LESION)
    for k in range(min(m.shape[-1], len(colors))):
        if m[..., k].any():
            ax.contour(m[..., k] > 0, levels=[0.5], colors=colors[k % len(colors)], linewidths=1.0)


def mask_overlay(image, mask, *, title: str | None = None) -> Figure:
    """One image with its masks as outlines (channel 0 lung: cyan, channel 1 lesion: red)."""
    fig = Figure(figsize=(3, 3.3), dpi=DPI, layout="constrained")
    _overlay(fig.subplots(), image, mask, title)
    overlay_legend(fig, lesion=np.asarray(mask).reshape(*np.asarray(mask).shape[:2], -1).shape[-1] > 1)
    return photo(fig)


def mask_draws(image, mask, policy="default", n: int = 6, seed: int = 0, executor: str = "keras") -> Figure:
    """`n` augmented draws of an image with its mask contours: aligned masks hug the same anatomy."""
    imgs, masks = draws(image, policy, n, seed=seed, executor=executor, mask=mask)
    panels = [(_hw1(image), np.asarray(mask), "original")] + [(i, m, f"draw {k + 1}")
                                                              for k, (i, m) in enumerate(zip(imgs, masks))]
    fig, axes = _grid(len(panels), min(7, len(panels)), title=f"masks via {executor}, seed {seed}")
    for ax, (i, m, t) in zip(axes, panels):
        _overlay(ax, i, m, t)
    overlay_legend(fig, lesion=np.asarray(mask).reshape(*np.asarray(mask).shape[:2], -1).shape[-1] > 1)
    return photo(fig)


# --------------------------------------------------------------------------- labelled draws

def apply_params(image, *, rotation: float = 0.0, zoom: float = 1.0, brightness: float = 1.0,
                 gamma: float = 1.0, crop: float = 0.0, hflip: bool = False, vflip: bool = False) -> np.ndarray:
    """One image under exactly these parameters (float32 (H, W, 1), 0..255), to label a panel.

    Rotation in degrees about the centre, `zoom` > 1 magnifies, `crop` the fraction removed per
    side (then resized back), borders filled with black; then brightness x (x/255)^gamma."""
    import cv2

    x = _hw1(image)[..., 0]
    h, w = x.shape
    if crop:
        dy, dx = int(round(crop * h)), int(round(crop * w))
        x = cv2.resize(x[dy:h - dy, dx:w - dx], (w, h), interpolation=cv2.INTER_LINEAR)
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), rotation, zoom)
    x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if hflip:
        x = x[:, ::-1]
    if vflip:
        x = x[::-1]
    x = 255.0 * brightness * (np.clip(x, 0, 255) / 255.0) ** gamma
    return np.clip(x, 0, 255).astype(np.float32)[..., None]


def _label(p: Mapping) -> str:
    """A panel's title from its `sample_params` entry (only what differs from no change)."""
    crop = max(p["top"], p["bottom"], p["left"], p["right"])
    parts = [f"rot {p['rotation']:+.0f}°" if round(p["rotation"]) else "",
             f"scale {p['scale']:.2f}" if round(p["scale"], 2) != 1 else "",
             f"shift {p['shift_x']:+.0%} {p['shift_y']:+.0%}" if p["shift_x"] or p["shift_y"] else "",
             "flipped" if p["flip"] else "",
             f"bright ×{p['brightness']:.2f}" if round(p["brightness"], 2) != 1 else "",
             f"γ {p['gamma']:.2f}" if round(p["gamma"], 2) != 1 else "",
             f"crop ≤{crop:.0%}" if round(crop, 2) else ""]
    return "\n".join(q for q in parts if q) or "no change"


def sample_params(policy, n: int, seed: int = 0) -> list[dict]:
    """The parameters of `n` draws of a policy (or preset) exactly as the executors draw them
    for the per-call seed ``[seed, 0]`` (`cxrnb.augment.transforms.describe`): rotation in
    degrees, scale (> 1 zooms out), shift_x / shift_y (fractions of the side), flip, brightness,
    gamma and the fraction cropped from each side (top, bottom, left, right)."""
    import tensorflow as tf

    from ..augment.transforms import describe, draw_uniforms

    p = policy if isinstance(policy, AugmentPolicy) else AugmentPolicy.preset(policy)
    return describe(p, draw_uniforms(n, seed=tf.constant([seed, 0], tf.int64), own_seed=seed))


def preset_grid(image, presets: Sequence[str] = ("article002", "article004"), n: int = 5,
                seed: int = 0) -> Figure:
    """One row per preset: the original, then `n` draws of the preset by the OpenCV executor (the
    one training uses), each titled with the parameters it drew (`sample_params`, same seed), so
    one sees what a published setting does to a chest film."""
    import tensorflow as tf

    fig = Figure(figsize=(FILM * (n + 1), (FILM + 0.55) * len(presets)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(len(presets), n + 1)).reshape(len(presets), n + 1)
    x = np.repeat(_hw1(image)[None], n, axis=0)
    for r, name in enumerate(presets):
        _show(axes[r, 0], _hw1(image), "original", ylabel=name)
        out = make_augmenter(name, "opencv", seed=seed + r)(x, seed=tf.constant([seed + r, 0], tf.int64))
        for c, (img, params) in enumerate(zip(np.asarray(out), sample_params(name, n, seed + r)), start=1):
            _show(axes[r, c], img, _label(params))
    return photo(fig)


#: Augmentations that produce films no hospital makes, with the reason shown beside each.
UNSAFE = (
    ("vertical flip", dict(vflip=True), "never happens: patients are\nnot imaged upside down"),
    ("rotation 60°", dict(rotation=60), "beyond any real tilt;\nthe policy refuses > 45°"),
    ("horizontal flip", dict(hflip=True), "heart and gastric bubble on\nthe wrong side (looks like\n"
     "dextrocardia); L/R marker lies"),
)


def unsafe_grid(image) -> Figure:
    """The original beside each augmentation of `UNSAFE`, with its reason under the panel."""
    fig = Figure(figsize=(FILM * 1.25 * (1 + len(UNSAFE)), FILM + 1.1), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 1 + len(UNSAFE))
    _show(axes[0], _hw1(image), "original")
    axes[0].set_xlabel("heart on the image right\n(the patient's left)", fontsize=9)
    for ax, (name, params, why) in zip(axes[1:], UNSAFE):
        _show(ax, apply_params(image, **params), name)
        ax.set_xlabel(why, fontsize=9)
    return photo(fig)


# --------------------------------------------------------------------------- normalisation

NORMALISATIONS = ("/255", "min-max per image", "ImageNet (VGG16)")


def normalise(images, how: str) -> np.ndarray:
    """Images (N, H, W[, 1], 0..255) as a model would get them under one of `NORMALISATIONS`,
    computed by the layers the models themselves use (`cxrnb.models`), so the preview cannot
    drift from training.

    ``/255``: values 0..1, brightness differences kept; ``min-max per image`` (article 003,
    `MinMaxNormalize`): each image stretched to 0..1, so exposure differences vanish; ``ImageNet
    (VGG16)`` (article 004's pretrained VGG16, `ImageNetPreprocess`): the gray film repeated in 3
    channels, minus the ImageNet means."""
    from ..models import ImageNetPreprocess, MinMaxNormalize

    x = np.asarray(images, np.float32)
    if how not in NORMALISATIONS:
        raise ValueError(f"normalise: unknown normalisation {how!r}; choose from {list(NORMALISATIONS)}")
    if how == "/255":
        return x / 255.0
    g = x if x.ndim == 4 else x[..., None]
    if how == "min-max per image":
        return np.asarray(MinMaxNormalize()(g)).reshape(x.shape)
    return np.asarray(ImageNetPreprocess("vgg16")(np.repeat(g[..., :1], 3, axis=-1) / 255.0))


def normalisation_table(images):
    """Range and mean per normalisation, and how much two exposures differ afterwards."""
    import pandas as pd

    x = np.asarray(images, np.float32)
    rows = []
    for how in NORMALISATIONS:
        v = normalise(x, how)
        means = v.reshape(len(v), -1).mean(1)
        rows.append({"normalisation": how, "min": round(float(v.min()), 2), "max": round(float(v.max()), 2),
                     "mean": round(float(v.mean()), 2), "spread of image means (sd)": round(float(means.std()), 3)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- resolution

def resolution_grid(path, sizes: Sequence[int] = (64, 128, 224, 512), batch_size: int = 16) -> Figure:
    """One film file read at each side of `sizes` as the pipeline reads it (`cxrnb.images.read_gray`),
    each titled with what a float32 batch of `batch_size` such films takes in memory: what a
    finding keeps, and what it costs, at each resolution."""
    fig = photo(Figure(figsize=(FILM * len(sizes), FILM + 0.3), dpi=DPI, layout="constrained"))
    for ax, s in zip(fig.subplots(1, len(sizes)), sizes):
        img, _ = read_gray(path, s)
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{s} px\n{s * s * 4 * batch_size / 2**20:.1f} MiB per batch of {batch_size}", fontsize=9)
        ax.set_axis_off()
    return fig
