"""Sanity checks (Adebayo et al. 2018): cascading randomisation of the layers from the top, and a
model trained on shuffled labels, each beside a control map that ignores the model (edges).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

from .methods import REGISTRY, cam
from .model import Explainer, _inputs

#: fn(explainer, images, class_index) -> maps: what the sanity checks compare, per method.
MapFn = Callable[[Explainer, np.ndarray, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Sanity check: cascading model randomisation
# ---------------------------------------------------------------------------------------------

def copy_model(model: keras.Model) -> keras.Model:
    """An independent copy (same architecture and weights) that can be changed safely."""
    _inputs(model)
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _randomise(layer: keras.layers.Layer, seed: int) -> None:
    """Re-initialise a layer's trainable weights with its own initialisers (Glorot for kernels
    without one); weights with no initialiser and fewer than 2 dimensions are kept."""
    for i, v in enumerate(layer.trainable_weights):
        init = getattr(layer, f"{v.name}_initializer", None)
        if init is None and "kernel" in v.name:
            init = getattr(layer, "kernel_initializer", None)
        if init is None:
            if len(v.shape) < 2:
                continue
            init = keras.initializers.GlorotUniform()
        cfg = keras.initializers.serialize(init)
        fresh = keras.initializers.deserialize(cfg)
        if hasattr(fresh, "seed"):
            fresh.seed = seed * 1000 + i
        v.assign(fresh(v.shape, dtype=v.dtype))


EDGES = "edges (control)"  # the sanity checks' control, by name (`edge_map`)


def edge_map(ex: Explainer | None, images, class_index=None) -> np.ndarray:
    """The control a sanity check must fail: each film's own gradient magnitude (B, H, W), a map
    that ignores the model and its class (what a saliency method can degrade to: Adebayo et al.
    2018). Takes and ignores the explainer and class, like the `MapFn` of a method."""
    x = np.asarray(images, np.float32)
    gy, gx = np.gradient(x[..., 0] if x.ndim == 4 else x, axis=(1, 2))
    return np.hypot(gx, gy)


def _map_fns(methods: Sequence[str] | Mapping[str, MapFn], seed: int) -> dict[str, MapFn]:
    """{name: fn(explainer, images, class_index) -> maps} from `METHODS` names (and `EDGES`, the
    control) or such functions."""
    if isinstance(methods, Mapping):
        return dict(methods)
    bad = [m for m in methods if m not in REGISTRY and m != EDGES]
    if bad:
        raise ValueError(f"unknown CAM method {bad[0]!r}; choose from {list(REGISTRY)} or {EDGES!r}")
    return {m: edge_map if m == EDGES else (lambda ex, x, c, m=m: cam(ex, x, c, m, seed=seed)) for m in methods}


def rank_correlation(a, b) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps (B, H, W); NaN where either map is
    constant: its ranks are all tied, so the correlation is undefined (not 0, not a change)."""
    ra, rb = (rankdata(np.asarray(m, np.float64).reshape(len(m), -1), axis=1) for m in (a, b))
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def _similarity(ref: np.ndarray, new: np.ndarray) -> pd.DataFrame:
    """Per film: Spearman rank correlation (NaN: a constant map) and SSIM of two sets of maps."""
    ssim = [structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=1.0)
            for a, b in zip(ref, new)]
    return pd.DataFrame({"spearman": rank_correlation(ref, new), "ssim": ssim})


def _summary(films: pd.DataFrame) -> dict:
    """Mean Spearman over the films where it is defined, mean SSIM, and how many are undefined."""
    rho = films["spearman"].to_numpy()
    return {"spearman": float(np.nanmean(rho)) if np.isfinite(rho).any() else np.nan,
            "ssim": float(films["ssim"].mean()), "n_undefined": int(np.isnan(rho).sum())}


def _verdict(table: pd.DataFrame, n_images: int, threshold: float, changed: str, same: str,
             undefined: pd.Series | None = None) -> pd.DataFrame:
    """`passes` (True, False, or NA when undefined: by default when most films have a constant
    map) and its sentence; the rank correlation judged is `table["spearman"]`."""
    if undefined is None:
        undefined = table["n_undefined"] > n_images / 2
    passes = pd.Series(table["spearman"] < threshold, dtype="boolean").mask(undefined, pd.NA)
    text = np.where(passes.fillna(False), f"PASS: {changed}", f"FAIL: {same}")
    undef = "UNDEFINED: constant maps (" + table["n_undefined"].astype(str) + f" of {n_images} films)"
    return table.assign(passes=passes, verdict=np.where(undefined, undef, text))


def randomisation_check(model: keras.Model, images, class_index,
                        methods: Sequence[str] | Mapping[str, MapFn] = ("gradcam", "gradcam++"), *,
                        layer: str | None = None, threshold: float = 0.5, seed: int = 0
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adebayo et al. (2018) model-randomisation test with cascading randomisation from the top.

    On a copy of `model`, the layers with weights are re-initialised one after another from the
    output backwards; after each, every method's maps are compared with the trained model's by
    the mean Spearman rank correlation and the mean SSIM over the images. A film whose map is
    constant (before or after) has no rank correlation: it is counted in ``n_undefined`` and left
    out of the mean, never counted as a change. A method passes when, at some step of the cascade
    where most films' maps are defined, its rank correlation falls below `threshold` (the maps
    changed with the weights); it is UNDEFINED when it never did and most films' maps are constant
    once every layer is random (a change to a blank map is no evidence either way).
    `methods` are names from `METHODS` and `EDGES` (the film's edges: a control that ignores the
    weights and must fail) or {name: fn(explainer, images, class_index) -> maps}.

    Returns (the cascade: one row per step and method with ``randomised_to``, ``spearman``,
    ``ssim``, ``n_undefined``; the verdict per method: the last step's values, the lowest rank
    correlation of the defined steps, the first defined step below `threshold` and its layer,
    ``passes`` and ``verdict``).
    """
    fns = _map_fns(methods, seed)
    ex0 = Explainer(model, layer)
    x = ex0.check_images(images)
    idx = ex0.check_classes(class_index, len(x))
    ref = {m: np.asarray(f(ex0, x, idx)) for m, f in fns.items()}
    twin = copy_model(model)
    ex = Explainer(twin, ex0.layer.name)  # its compiled path reads the weights as they change
    rows = []
    cascade = [lay for lay in reversed(twin.layers) if lay.trainable_weights]
    for k, lay in enumerate(cascade):
        _randomise(lay, seed + k)
        for m, f in fns.items():
            rows.append({"method": m, "step": k + 1, "randomised_to": lay.name,
                         **_summary(_similarity(ref[m], np.asarray(f(ex, x, idx))))})
    sim = pd.DataFrame(rows)
    last = sim[sim["step"] == len(cascade)].set_index("method")[["spearman", "ssim", "n_undefined"]]
    defined = sim[sim["n_undefined"] <= len(x) / 2]
    lowest = defined.groupby("method")["spearman"].min().reindex(last.index)
    below = defined[defined["spearman"] < threshold].groupby("method").first().reindex(last.index)
    table = last.rename(columns={"spearman": "spearman_all_random", "ssim": "ssim_all_random"}).assign(
        spearman=lowest, first_step_below=below["step"].astype("Int64"), first_layer_below=below["randomised_to"])
    verdict = _verdict(table, len(x), threshold, "maps depend on the weights",
                       "maps do not change when the weights are randomised",
                       undefined=below["step"].isna() & (last["n_undefined"] > len(x) / 2))
    return sim, verdict.rename(columns={"spearman": "spearman_lowest"})


def data_randomisation_check(model: keras.Model, shuffled: keras.Model, images, class_index,
                             methods: Sequence[str] | Mapping[str, MapFn] = ("gradcam", "gradcam++"), *,
                             layer: str | None = None, threshold: float = 0.5, seed: int = 0
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adebayo et al. (2018) data-randomisation test: the maps of `model` (trained on the real
    labels) against those of `shuffled`, the same architecture trained by the caller on the same
    films with the labels shuffled, which can only have memorised. A method whose maps stay the
    same explains the architecture or the film, not what the labels taught: it fails.

    Both models' maps of `class_index` are compared film by film (Spearman rank correlation, NaN
    for a constant map; SSIM). `layer` (a name) is used in both; by default each model's last
    spatial layer, the same position for the same architecture (auto-generated names differ).
    A method passes when the mean rank correlation is below `threshold`; it is UNDEFINED when most
    films' maps are constant. Returns (per film and method: ``spearman``, ``ssim``; per method:
    ``spearman``, ``ssim``, ``n_undefined``, ``passes``, ``verdict``).
    """
    fns = _map_fns(methods, seed)
    ex0, ex1 = Explainer(model, layer), Explainer(shuffled, layer)
    if ex1.input_shape != ex0.input_shape or ex1.n_classes != ex0.n_classes:
        raise ValueError(f"shuffled model takes {ex1.input_shape} with {ex1.n_classes} classes but "
                         f"the model {ex0.input_shape} with {ex0.n_classes}: train the same architecture")
    x = ex0.check_images(images)
    idx = ex0.check_classes(class_index, len(x))
    films = pd.concat([_similarity(np.asarray(f(ex0, x, idx)), np.asarray(f(ex1, x, idx)))
                       .assign(method=m, film=np.arange(len(x))) for m, f in fns.items()], ignore_index=True)
    films = films[["method", "film", "spearman", "ssim"]]
    summary = pd.DataFrame.from_dict({m: _summary(g) for m, g in films.groupby("method", sort=False)},
                                     orient="index").rename_axis("method")
    return films, _verdict(summary, len(x), threshold, "maps change when the labels are shuffled",
                           "maps of a model trained on shuffled labels are the same")
