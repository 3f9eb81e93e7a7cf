"""Does the map show what the model uses? Deletion and insertion curves (Petsiuk et al. 2018)
against smooth random maps, their areas per film and per group, and the gaps between them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from ..evaluate import _percentiles
from .model import Explainer, explainer
from .scores import _film_boot, random_maps


# ---------------------------------------------------------------------------------------------
# Faithfulness: deletion and insertion
# ---------------------------------------------------------------------------------------------

@dataclass
class Curves:
    """Deletion and insertion curves (B, steps + 1) of the class probability over `fractions`."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        """Area under each deletion curve (lower: the map found what the model needs)."""
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        """Area under each insertion curve (higher: the map's top pixels suffice)."""
        return np.trapezoid(self.insertion, self.fractions, axis=1)

    def select(self, films) -> Curves:
        """The curves of some films only (a boolean mask or indexes)."""
        return Curves(self.fractions, self.deletion[films], self.insertion[films])


def reference_images(x: np.ndarray, kind: str = "blur", sigma: float | None = None) -> np.ndarray:
    """What removed pixels are replaced with: a strong Gaussian blur of each image (`sigma` in
    pixels, default an eighth of the width) or each image's mean grey."""
    if kind == "blur":
        s = sigma if sigma is not None else x.shape[2] / 8
        return np.stack([gaussian_filter(im, (s, s, 0), mode="nearest") for im in x]).astype(np.float32)
    if kind == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
    raise ValueError(f"reference must be 'blur' or 'mean', got {kind!r}")


def deletion_insertion(model: keras.Model | Explainer, images, class_index, maps, *,
                       steps: int = 16, reference: str = "blur", batch_size: int = 256) -> Curves:
    """Deletion (remove the most salient pixels first, replaced by the reference image) and
    insertion (start from the reference and put the most salient pixels back) curves of the
    class probability, at `steps` + 1 equally spaced fractions of the pixels."""
    ex = explainer(model)
    x = ex.check_images(images)
    idx = ex.check_classes(class_index, len(x))
    maps = np.asarray(maps)
    if maps.shape != x.shape[:3]:
        raise ValueError(f"maps have shape {maps.shape} but the images are {x.shape[:3]}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ref = reference_images(x, reference)
    n_pix = x.shape[1] * x.shape[2]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    # rank[b, p] = position of pixel p in the order of decreasing saliency (stable on ties)
    order = np.argsort(-maps.reshape(len(x), -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_pix)[None].repeat(len(x), 0), axis=1)
    rank = rank.reshape(x.shape[:3])[..., None]
    dele, ins = np.zeros((len(x), steps + 1)), np.zeros((len(x), steps + 1))
    for k, f in enumerate(fractions):
        top = rank < round(f * n_pix)
        pd_ = ex.probabilities(np.where(top, ref, x), batch_size)
        pi_ = ex.probabilities(np.where(top, x, ref), batch_size)
        dele[:, k] = pd_[np.arange(len(x)), idx]
        ins[:, k] = pi_[np.arange(len(x)), idx]
    return Curves(fractions, dele, ins)


def faithfulness(model: keras.Model | Explainer, images, class_index, maps: Mapping[str, np.ndarray],
                 *, steps: int = 16, reference: str = "blur", n_random: int = 3, seed: int = 0,
                 cells: int | tuple[int, int] = 8) -> tuple[pd.DataFrame, dict[str, Curves]]:
    """Table of mean deletion AUC (lower is better) and insertion AUC (higher is better) per method,
    with a ``random map`` row (mean over `n_random` smooth random maps of `cells`, see
    `random_maps`: deleting their blobs leaves a plausible film, as deleting a CAM's does), and
    the curves."""
    ex = explainer(model)
    x = ex.check_images(images)
    curves = {name: deletion_insertion(ex, x, class_index, m, steps=steps, reference=reference)
              for name, m in maps.items()}
    rand = [deletion_insertion(ex, x, class_index, random_maps(x.shape[:3], seed + r, cells=cells),
                               steps=steps, reference=reference) for r in range(n_random)]
    curves["random map"] = Curves(rand[0].fractions, np.mean([c.deletion for c in rand], 0),
                                  np.mean([c.insertion for c in rand], 0))
    return faithfulness_table(curves), curves


def faithfulness_table(curves: Mapping[str, Curves], groups=None, name: str = "group") -> pd.DataFrame:
    """Mean deletion and insertion AUC per method (rows) from `faithfulness`'s curves: over all
    films, or per value of `groups` (one per film, e.g. the predicted class; index level `name`),
    so a split needs no second run of the curves."""
    def table(keep) -> pd.DataFrame:
        t = pd.DataFrame({m: {"deletion_auc": float(c.deletion_auc[keep].mean()),
                              "insertion_auc": float(c.insertion_auc[keep].mean())}
                          for m, c in curves.items()}).T
        t.index.name = "method"
        return t

    if groups is None:
        return table(slice(None))
    g = np.asarray(groups)
    return pd.concat({v: table(g == v) for v in sorted(pd.unique(g))}, names=[name])


def faithfulness_gaps(curves: Mapping[str, Curves], method: str = "gradcam", *, groups=None,
                      n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """How much better `method` did than the ``random map`` on the same films, with the `ci`
    bootstrap percentile interval that resamples `groups` (patients; None: films): rows
    ``deletion`` (random minus method: > 0 when removing the map's top pixels lowers the score
    faster) and ``insertion`` (method minus random: > 0 when putting them back first raises it
    faster); columns estimate, low, high, n_films."""
    m, r = curves[method], curves["random map"]
    gaps = {"deletion": r.deletion_auc - m.deletion_auc, "insertion": m.insertion_auc - r.insertion_auc}
    boot = _film_boot(gaps, groups, n_boot, seed)
    rows = {k: {"estimate": float(np.mean(v)) if len(v) else np.nan, **dict(zip(("low", "high"), _percentiles(boot[k], ci)))}
            for k, v in gaps.items()}
    return pd.DataFrame.from_dict(rows, orient="index").assign(n_films=len(m.deletion))
