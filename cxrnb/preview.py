"""Look before you train: figures of what an augmentation policy does to chest X-rays.

Every function takes numpy images (uint8 or float in 0..255, ``(H, W)`` or ``(H, W, 1)``) and
returns a `matplotlib.figure.Figure` (built without pyplot, like `cxrnb.plots`, so a notebook shows
it once, when it is the cell's value). Given a policy (or preset name) and a seed, a figure is
deterministic: the executor is built afresh with that seed and all draws come from one batch.
Given an executor object instead, its random state advances from call to call.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .augment import EXECUTORS as _EXECUTORS
from .augment import AugmentPolicy, CXRAugment, make_augmenter

DPI = 80
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


def _grid(n: int, cols: int, cell: float = 1.6, title: str | None = None):
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
    return fig


def class_grid(images_by_class: Mapping[str, Sequence[np.ndarray]], policy="default", seed: int = 0,
               *, n_aug: int = 5, executor: str = "keras") -> Figure:
    """One row per class: the class's first image, then `n_aug` augmented draws of it."""
    classes = list(images_by_class)
    if not classes:
        raise ValueError("images_by_class is empty")
    cols = 1 + n_aug
    fig = Figure(figsize=(1.6 * cols, 1.65 * len(classes)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(len(classes), cols)).reshape(len(classes), cols)
    for r, cls in enumerate(classes):
        imgs = list(images_by_class[cls])
        if not imgs:
            raise ValueError(f"class {cls!r} has no images")
        out = draws(imgs[0], policy, n_aug, seed=seed + r, executor=executor)
        _show(axes[r, 0], _hw1(imgs[0]), "original" if r == 0 else None, ylabel=cls)
        for c, o in enumerate(out, start=1):
            _show(axes[r, c], o, f"augmented {c}" if r == 0 else None)
    return fig


def intensity_histograms(images_before, images_after, *, bins: int = 64) -> Figure:
    """Pixel-value histograms before and after augmentation, and per-image mean intensities."""
    before = np.asarray(images_before, np.float32)
    after = np.asarray(images_after, np.float32)
    fig = Figure(figsize=(8, 2.8), dpi=DPI, layout="constrained")
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
    fig = Figure(figsize=(1.6 * n, 1.75 * len(EXECUTORS)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(len(EXECUTORS), n)).reshape(len(EXECUTORS), n)
    for r, ex in enumerate(EXECUTORS):
        out = draws(image, policy, n, seed=seed, executor=ex)
        for c, o in enumerate(out):
            _show(axes[r, c], o, f"draw {c + 1}" if r == 0 else None, ylabel=ex if c == 0 else None)
    fig.suptitle(f"{_name(policy)}: one policy, {len(EXECUTORS)} executors, seed {seed}", fontsize=10)
    return fig


def _overlay(ax, image, mask, title=None) -> None:
    _show(ax, image, title)
    m = np.asarray(mask)
    m = m.reshape(*m.shape[:2], -1)
    colors = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00")
    for k in range(m.shape[-1]):
        if m[..., k].any():
            ax.contour(m[..., k] > 0, levels=[0.5], colors=colors[k % len(colors)], linewidths=1.0)


def mask_overlay(image, mask, *, title: str | None = None) -> Figure:
    """One image with its mask(s) drawn as contours (channel k of `mask` in its own colour)."""
    fig = Figure(figsize=(3, 3), dpi=DPI, layout="constrained")
    _overlay(fig.subplots(), image, mask, title)
    return fig


def mask_draws(image, mask, policy="default", n: int = 6, seed: int = 0, executor: str = "keras") -> Figure:
    """`n` augmented draws of an image with its mask contours: aligned masks hug the same anatomy."""
    imgs, masks = draws(image, policy, n, seed=seed, executor=executor, mask=mask)
    panels = [(_hw1(image), np.asarray(mask), "original")] + [(i, m, f"draw {k + 1}")
                                                              for k, (i, m) in enumerate(zip(imgs, masks))]
    fig, axes = _grid(len(panels), min(7, len(panels)), title=f"masks via {executor}, seed {seed}")
    for ax, (i, m, t) in zip(axes, panels):
        _overlay(ax, i, m, t)
    return fig
