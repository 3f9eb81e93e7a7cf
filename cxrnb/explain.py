"""Class activation maps that never go blank, scored against masks, for faithfulness and sanity.

`cam` computes Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM and SmoothGrad through tf-keras-vis for
any single-output Keras 3 model (Functional or Sequential; softmax, sigmoid or linear output;
several classes or one sigmoid unit). Scores are always taken on the *logit*: after a saturated
softmax/sigmoid the gradient vanishes and the maps go blank. For one sigmoid unit the logit is the
positive class's score and its negative is the negative class's. The gradient CAMs also have a
compiled path (one `tf.function` per model and layer over a whole batch) that gives the same maps
as tf-keras-vis, many times faster; the scores below use it.

Measurements: `localisation` (share of CAM energy inside the lungs / lesion, pointing game),
`faithfulness` (deletion and insertion curves and their areas), `randomisation_check` and
`data_randomisation_check` (Adebayo et al. 2018: cascading randomisation of the layers from the
top; a model trained on shuffled labels), each with a baseline (smooth random maps, or the trained
model's own maps) beside the methods. A constant map has no rank correlation: "undefined", never a
pass.
"""
from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy.ndimage import gaussian_filter, zoom
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

from .evaluate import _percentiles

#: Every method `cam` knows, in display order.
METHODS = ("gradcam", "gradcam++", "layercam", "scorecam", "smoothgrad")
#: Methods with a compiled batched path (same maps as tf-keras-vis).
COMPILED = ("gradcam", "gradcam++", "layercam")
_EPS = 1e-7  # keras.backend.epsilon(), as tf-keras-vis normalises

MapFn = Callable[["Explainer", np.ndarray, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------
# The model's logit and its last spatial layer
# ---------------------------------------------------------------------------------------------

class _PreActivation(keras.layers.Layer):
    """The output layer's computation without its activation, on the same (live) weights."""

    def __init__(self, inner: keras.layers.Layer, **kwargs):
        super().__init__(name=f"{inner.name}_logit", **kwargs)
        self.inner = inner

    def call(self, x):
        act = self.inner.activation
        self.inner.activation = keras.activations.linear
        try:
            return self.inner.call(x)
        finally:
            self.inner.activation = act


class _Target(keras.layers.Layer):
    """Stands for the spatial layer in tf-keras-vis, which reads `.output`: gives the tensor in the
    explained model's graph (right for a nested backbone too)."""

    def __init__(self, tensor, name: str):
        super().__init__(name=name)
        self._tensor = tensor

    @property
    def output(self):
        return self._tensor


def _inputs(model: keras.Model) -> list:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError) as e:
        inputs = None
        cause = e
    if not inputs:
        raise ValueError(f"model {model.name!r} has no defined input: build a Sequential model with "
                         f"keras.Input(shape) as first layer or call it on a batch first") from (
            cause if inputs is None else None)
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} must have one input and one output, has "
                         f"{len(inputs)} and {len(model.outputs)}")
    return inputs


def _logit_tensor(model: keras.Model):
    """(logit tensor, activation name of the model's output): the score before softmax/sigmoid."""
    out = model.outputs[0]
    last = out._keras_history[0]
    if isinstance(last, keras.layers.Softmax):
        return last.input, "softmax"
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", "linear") if act is not None else "linear"
    if name == "linear":
        return out, "linear"
    if isinstance(last, keras.layers.Activation):
        return last.input, name
    return _PreActivation(last)(last.input), name


def layer_output(model: keras.Model, layer: keras.layers.Layer):
    """The symbolic output of `layer` in `model`'s graph. For a nested model (a backbone used as a
    layer) `layer.output` is its own inner tensor, not connected to `model`'s input: take the
    output of its call inside `model` instead."""
    graph = getattr(model, "_functional", None) or model  # a Sequential keeps its graph there
    nodes = getattr(graph, "_nodes_by_depth", None) or {}
    mine = {id(n) for ns in nodes.values() for n in ns}
    for node in getattr(layer, "_inbound_nodes", []):
        if (not mine or id(node) in mine) and len(node.output_tensors) == 1:
            return node.output_tensors[0]
    return layer.output


_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
_PASS_THROUGH = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout,
                 keras.layers.SpatialDropout2D, keras.layers.ZeroPadding2D)


def _shape(model: keras.Model, layer: keras.layers.Layer) -> tuple:
    """`layer`'s output shape in `model`; () for a layer called more than once (no single output)."""
    try:
        return tuple(layer_output(model, layer).shape)
    except (AttributeError, ValueError):
        return ()


def _spatial(shape: tuple) -> bool:
    """Whether an output `shape` is a map a CAM can weigh: (batch, H, W, C) with H x W >= 2."""
    return len(shape) == 4 and (shape[1] or 2) * (shape[2] or 2) >= 2


def _convolves(layer: keras.layers.Layer) -> bool:
    """A convolution, or a nested model (a backbone used as one layer) that holds one."""
    if isinstance(layer, _CONVOLUTIONS):
        return True
    return isinstance(layer, keras.Model) and any(_convolves(sub) for sub in layer.layers)


def find_spatial_layer(model: keras.Model, layer: str | keras.layers.Layer | None = None
                       ) -> keras.layers.Layer:
    """The layer whose (batch, height, width, channels) output the CAMs weigh: `layer` (a name or
    layer, checked to be spatial) or, by default, the last top-level layer after a convolution
    with a 4-D output that is not pooling, padding or dropout; refused when its map is 1 x 1.

    The one rule for every model and every CAM: pooling, padding and dropout add no spatial
    detail to the map before them (a 3 x 3 average pooling can even leave a 1 x 1 map), so
    ``vgg16`` -> ``block5_conv3``, ``densenet121`` -> ``relu``, ``resnet18`` ->
    ``stage4_block2_out``, ``compact`` -> ``block4_relu``. A 1 x 1 map has no "where": rather
    than explain an earlier layer unasked, the error says so. A nested backbone (a Model used as a
    layer, as in models built outside `cxrnb.models`) counts as one layer: its output is taken.
    """
    _inputs(model)
    if layer is not None:
        if isinstance(layer, str):
            names = [lay.name for lay in model.layers]
            if layer not in names:
                raise ValueError(f"model {model.name!r} has no layer {layer!r}; layers: {names}")
            layer = model.get_layer(layer)
        if not _spatial(_shape(model, layer)):
            raise ValueError(f"layer {layer.name!r} is not spatial (convolutional): output shape "
                             f"{_shape(model, layer)}; a CAM needs a (batch, height, width, channels) "
                             f"output of at least 2 cells")
        return layer
    found, seen_conv = None, False
    for lay in model.layers:
        if isinstance(lay, keras.layers.InputLayer):
            continue
        seen_conv = seen_conv or _convolves(lay)
        if seen_conv and not isinstance(lay, _PASS_THROUGH) and len(_shape(model, lay)) == 4:
            found = lay
    if found is None:
        raise ValueError(f"model {model.name!r} has no spatial layer (no convolution with a (batch, height, "
                         f"width, channels) output): CAMs need a convolutional model")
    if not _spatial(_shape(model, found)):
        raise ValueError(f"model {model.name!r}: its last convolutional layer {found.name!r} leaves a "
                         f"{_shape(model, found)[1:3]} map at input {_inputs(model)[0].shape[1:3]}, "
                         f"which has no 'where': train at a larger input size, or name an earlier layer")
    return found


# ---------------------------------------------------------------------------------------------
# Explainer: the sub-models and the compiled path
# ---------------------------------------------------------------------------------------------

class Explainer:
    """A model prepared for explanation: its spatial layer, its logit and the compiled CAM path.

    `logit_model` maps images to logits (B, K); `layer_model` to (activations, logits). Both share
    the model's layers and weights. `n_classes` is K, or 2 for a single sigmoid unit.
    """

    def __init__(self, model: keras.Model, layer: str | keras.layers.Layer | None = None):
        inputs = _inputs(model)
        self.model = model
        self.layer = find_spatial_layer(model, layer)
        logits, self.activation = _logit_tensor(model)
        if len(logits.shape) != 2:
            raise ValueError(f"model {model.name!r} output must be (batch, classes), got {tuple(logits.shape)}")
        self.n_outputs = int(logits.shape[-1])
        self.n_classes = 2 if self.n_outputs == 1 else self.n_outputs
        self.input_shape = tuple(inputs[0].shape[1:])
        self.logit_model = keras.Model(inputs, logits)  # list inputs, as tf-keras-vis calls it
        self.layer_model = keras.Model(inputs[0], [layer_output(model, self.layer), logits])
        if self.n_outputs == 1:  # [0, z]: softmax of it is (1 - sigmoid(z), sigmoid(z))
            two = keras.layers.Concatenate()([keras.ops.zeros_like(logits), logits])
            self.softmax_model = keras.Model(inputs, two)
        else:
            self.softmax_model = keras.Model(inputs, logits)
        predict = self.softmax_model.predict  # Score-CAM calls predict: no progress bar
        self.softmax_model.predict = lambda *a, **k: predict(*a, **{**k, "verbose": 0})
        spec = [tf.TensorSpec((None, *self.input_shape), tf.float32), tf.TensorSpec((None,), tf.int32)]
        self._raw = tf.function(self._raw_cams, input_signature=spec, reduce_retracing=True)

    # -- inputs ---------------------------------------------------------------------------
    def check_images(self, images) -> np.ndarray:
        """`images` as float32 (B, H, W, C) matching the model input, or a clear error."""
        x = np.asarray(images)
        if x.dtype.kind not in "f":
            raise ValueError(f"images must be floats in [0, 1] (model inputs), got dtype {x.dtype}; "
                             f"divide uint8 images by 255")
        if x.ndim == 3 and len(self.input_shape) == 3 and self.input_shape[-1] == 1:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"images must be (batch, height, width, channels), got shape {x.shape}")
        h, w, c = self.input_shape
        if (h is not None and x.shape[1] != h) or (w is not None and x.shape[2] != w):
            raise ValueError(f"images are {x.shape[1]}x{x.shape[2]} but model {self.model.name!r} "
                             f"expects {h}x{w}")
        if c is not None and x.shape[3] != c:
            raise ValueError(f"images have {x.shape[3]} channel(s) but model {self.model.name!r} "
                             f"expects {c}")
        return x.astype(np.float32, copy=False)

    def check_classes(self, class_index, n: int) -> np.ndarray:
        """One class index per image (an int is broadcast), each in range, as int32 (B,)."""
        idx = np.broadcast_to(np.asarray(class_index), (n,)) if np.ndim(class_index) == 0 \
            else np.asarray(class_index)
        if idx.shape != (n,) or idx.dtype.kind not in "iu":
            raise ValueError(f"class_index must be an int or {n} ints, got {class_index!r}")
        bad = idx[(idx < 0) | (idx >= self.n_classes)]
        if bad.size:
            raise ValueError(f"class index {int(bad[0])} out of range: model {self.model.name!r} has "
                             f"{self.n_classes} classes (0..{self.n_classes - 1})")
        return idx.astype(np.int32)

    # -- scores ---------------------------------------------------------------------------
    def score(self, logits, idx):
        """The logit of class `idx` per image; for one sigmoid unit, +z (class 1) or -z (class 0)."""
        if self.n_outputs == 1:
            return logits[:, 0] * tf.cast(2 * idx - 1, logits.dtype)
        return tf.gather(logits, idx, axis=1, batch_dims=1)

    def logits(self, images, batch_size: int = 256) -> np.ndarray:
        """Logits (B, K) of float images."""
        x = self.check_images(images)
        return np.concatenate([np.asarray(self.logit_model([x[i:i + batch_size]], training=False))
                               for i in range(0, len(x), batch_size)] or [np.zeros((0, self.n_outputs))])

    def probabilities(self, images, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (B, n_classes): softmax of the logits, or (1 - p, p) for one sigmoid unit."""
        z = self.logits(images, batch_size)
        if self.n_outputs == 1:
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1 - p, p], axis=1)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # -- compiled path --------------------------------------------------------------------
    def _raw_cams(self, x, idx):
        with tf.GradientTape() as tape:
            tape.watch(x)
            a, z = self.layer_model(x, training=False)
            s = self.score(z, idx)
        g = tape.gradient(s, a)
        gradcam = tf.nn.relu(tf.reduce_sum(a * tf.reduce_mean(g, axis=(1, 2), keepdims=True), -1))
        layercam = tf.nn.relu(tf.reduce_sum(a * tf.nn.relu(g), -1))
        # Grad-CAM++ (Chattopadhay et al. 2018) with exp(score) as tf-keras-vis computes it.
        e = tf.exp(s)[:, None, None, None]
        d1 = e * g
        d2 = d1 * g
        d3 = d2 * g
        denom = 2.0 * d2 + d3 * tf.reduce_sum(a, axis=(1, 2), keepdims=True)
        alpha = d2 / (denom + tf.cast(d2 == 0.0, d2.dtype))
        norm = tf.reduce_sum(alpha, axis=(1, 2), keepdims=True)
        alpha = alpha / (norm + tf.cast(norm == 0.0, norm.dtype))
        w = tf.reduce_sum(tf.nn.relu(d1) * alpha, axis=(1, 2), keepdims=True)
        gradcampp = tf.nn.relu(tf.reduce_sum(w * a, -1))
        return gradcam, gradcampp, layercam

    def compiled_cams(self, images, class_index, methods: Sequence[str] = COMPILED,
                      batch_size: int = 64) -> dict[str, np.ndarray]:
        """Maps of several compiled methods at once (one gradient pass), {method: (B, H, W)} in [0, 1]."""
        bad = [m for m in methods if m not in COMPILED]
        if bad:
            raise ValueError(f"method(s) {bad} have no compiled path; compiled: {list(COMPILED)}")
        x = self.check_images(images)
        idx = self.check_classes(class_index, len(x))
        parts: dict[str, list] = {m: [] for m in COMPILED}
        for i in range(0, len(x), batch_size):
            for m, r in zip(COMPILED, self._raw(tf.constant(x[i:i + batch_size]), tf.constant(idx[i:i + batch_size]))):
                parts[m].append(np.asarray(r))
        return {m: _expand(np.concatenate(parts[m]), x.shape[1:3]) for m in methods}


def _expand(raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Upsample (B, h, w) maps to the input size (bilinear, half-pixel centres) and scale each to
    [0, 1]; both paths (compiled and tf-keras-vis) go through it, so they give the same maps.

    A cell of the layer's grid summarises a patch of the input, so its value belongs at the patch's
    centre, as cv2.resize, PIL (keras.io's Grad-CAM recipe) and tf.image.resize place it. SciPy's
    default zoom, which tf-keras-vis uses, aligns the corners instead and stretches the map outward
    by up to half a cell: on an 8 x 8 grid over 64 px, the last cell's value landed on pixel 63
    instead of 59.5, moving peaks off lesions near the lung edges (``grid_mode=True``)."""
    if raw.shape[0] == 0:
        return np.zeros((0, *hw), np.float32)
    up = zoom(raw, (1, hw[0] / raw.shape[1], hw[1] / raw.shape[2]), order=1, grid_mode=True, mode="nearest")
    return _normalise(up)


def _normalise(m: np.ndarray) -> np.ndarray:
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    return ((m - lo) / (hi - lo + _EPS)).astype(np.float32)


_CACHE: OrderedDict = OrderedDict()


def explainer(model: keras.Model, layer: str | keras.layers.Layer | None = None) -> Explainer:
    """An `Explainer` for (model, layer), reused across calls (a few recent models are kept)."""
    if isinstance(model, Explainer):
        return model
    key = (id(model), layer if isinstance(layer, (str, type(None))) else id(layer))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is model:
        _CACHE.move_to_end(key)
        return hit[1]
    ex = Explainer(model, layer)
    _CACHE[key] = (weakref.ref(model), ex)
    while len(_CACHE) > 4:
        _CACHE.popitem(last=False)
    return ex


# ---------------------------------------------------------------------------------------------
# cam: the public entry point
# ---------------------------------------------------------------------------------------------

def cam(model: keras.Model | Explainer, images, class_index, method: str = "gradcam",
        layer: str | keras.layers.Layer | None = None, *, compiled: bool = True,
        batch_size: int = 64, smooth_samples: int = 20, smooth_noise: float = 0.2,
        max_n: int | None = None, seed: int = 0) -> np.ndarray:
    """Class activation maps (B, H, W) in [0, 1], upsampled to the input size.

    `images` are the model's float inputs (B, H, W, C) in [0, 1]; `class_index` an int or one per
    image. `method` is one of `METHODS`; Grad-CAM, Grad-CAM++ and LayerCAM use the compiled path
    unless `compiled=False` (then tf-keras-vis; the maps are the same). Score-CAM (Faster-Score-CAM
    when `max_n` channels are kept) costs one forward pass per channel of the layer and image.
    SmoothGrad averages `smooth_samples` input gradients under noise of sd `smooth_noise`
    (tf's global seed is set to `seed` so that it is repeatable).
    """
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {list(METHODS)}")
    ex = explainer(model, layer)
    if compiled and method in COMPILED:
        return ex.compiled_cams(images, class_index, [method], batch_size)[method]
    x = ex.check_images(images)
    idx = ex.check_classes(class_index, len(x))
    with warnings.catch_warnings():  # tf-keras-vis imports a deprecated scipy namespace
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

    out = []
    for i in range(0, len(x), batch_size):
        xb, ib = x[i:i + batch_size], idx[i:i + batch_size]
        kw = dict(penultimate_layer=_Target(layer_output(ex.model, ex.layer), ex.layer.name),
                  seek_penultimate_conv_layer=False)
        raw = dict(expand_cam=False, normalize_cam=False)  # upsampled by `_expand`, as compiled maps are
        if method == "scorecam":  # tf-keras-vis applies softmax to the outputs itself
            one = np.arange(len(ib))
            m = _expand(np.asarray(Scorecam(ex.softmax_model)(lambda p: p.numpy()[one, ib], xb, max_N=max_n,
                                                              batch_size=batch_size, **kw, **raw)), x.shape[1:3])
        elif method == "smoothgrad":
            tf.random.set_seed(seed + i)
            m = Saliency(ex.logit_model)(lambda z: ex.score(z, ib), xb, smooth_samples=smooth_samples,
                                         smooth_noise=smooth_noise)
        else:
            cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam}[method]
            m = _expand(np.asarray(cls(ex.logit_model)(lambda z: ex.score(z, ib), xb, **kw, **raw)), x.shape[1:3])
        out.append(np.asarray(m, np.float32).reshape(len(xb), *x.shape[1:3]))
    return np.concatenate(out) if out else np.zeros((0, *x.shape[1:3]), np.float32)


def cams(model: keras.Model | Explainer, images, class_index, methods: Sequence[str] = METHODS,
         layer: str | None = None, **kwargs) -> dict[str, np.ndarray]:
    """{method: maps} for several methods; the compiled ones share one gradient pass."""
    ex = explainer(model, layer)
    fast = [m for m in methods if m in COMPILED] if kwargs.get("compiled", True) else []
    out = ex.compiled_cams(images, class_index, fast, kwargs.get("batch_size", 64)) if fast else {}
    for m in methods:
        if m not in out:
            out[m] = cam(ex, images, class_index, m, **kwargs)
    return {m: out[m] for m in methods}


# ---------------------------------------------------------------------------------------------
# Localisation against masks
# ---------------------------------------------------------------------------------------------

def _masks(masks, maps: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != maps.shape:
        raise ValueError(f"{what} masks have shape {m.shape} but the maps are {maps.shape}: "
                         f"resize the masks to the model input size")
    return m > 0


def energy_share(maps, masks) -> np.ndarray:
    """Per image, the share of the map's total (non-negative) energy that falls inside the mask."""
    maps = np.asarray(maps, np.float64)
    inside = _masks(masks, maps, "")
    total = maps.sum(axis=(1, 2))
    return np.where(total > 0, (maps * inside).sum(axis=(1, 2)) / np.maximum(total, 1e-300), np.nan)


def pointing_game(maps, masks) -> np.ndarray:
    """Per image, whether the map's peak (first maximum in row-major order) lies inside the mask."""
    maps = np.asarray(maps)
    inside = _masks(masks, maps, "")
    shape = (len(maps), int(np.prod(maps.shape[1:])))  # not -1: no films is no hits, not an error
    return inside.reshape(shape)[np.arange(len(maps)), maps.reshape(shape).argmax(axis=1)]


def random_maps(shape: tuple[int, int, int], seed: int = 0, *, cells: int | tuple[int, int] = 8
                ) -> np.ndarray:
    """Smooth random maps (B, H, W) in [0, 1]: the baseline an explanation must beat.

    Uniform noise on a grid of `cells` (an int for a square grid, or (rows, columns)) is upsampled
    bilinearly to the film and scaled to [0, 1], as a CAM is from its layer's grid. Deleting or
    inserting such blobs leaves a plausible film, where i.i.d. pixel noise gives a speckled one
    unlike any training film. `cells` = (H, W) gives that i.i.d. pixel noise (each cell a pixel).
    The expected share of a random map's energy on a mask is about the mask's area share.
    """
    n, h, w = shape
    gh, gw = (cells, cells) if np.ndim(cells) == 0 else cells
    if not (1 <= gh <= h and 1 <= gw <= w) or gh * gw < 2:
        raise ValueError(f"cells must be a grid of 2 to {h}x{w} cells, got {cells!r}")
    return _expand(np.random.default_rng(seed).random((n, gh, gw), dtype=np.float32), (h, w))


def _film_boot(values: Mapping[str, np.ndarray], groups, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap resamples (n_boot,) of the mean of each per-film array in `values` (NaN films left
    out), drawing whole `groups` (patients; None: each film alone) with replacement. The same
    groups and seed draw the same resamples, so the rows of a table are paired."""
    n = len(next(iter(values.values())))
    codes = np.arange(n) if groups is None else pd.factorize(np.asarray(groups))[0]
    k = int(codes.max()) + 1 if n else 0
    if k == 0:
        return {name: np.full(n_boot, np.nan) for name in values}
    draws = np.random.default_rng(seed).integers(0, k, (n_boot, k)) + k * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k).astype(float)
    out = {}
    for name, v in values.items():
        ok = np.isfinite(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (counts @ np.bincount(codes[ok], weights=v[ok], minlength=k)) / (
                counts @ np.bincount(codes[ok], minlength=k))
    return out


def localisation(maps: Mapping[str, np.ndarray], lung_masks=None, lesion_masks=None, *,
                 n_random: int = 20, seed: int = 0, cells: int | tuple[int, int] = 8, groups=None,
                 n_boot: int = 1000, ci: float = 0.95) -> pd.DataFrame:
    """Localisation table, one row per method plus ``random map``: mean share of CAM energy inside
    the lungs (``lung_energy``) and inside the lesion (``lesion_energy``), the lesion's share of the
    film's area (``lesion_area``), their ratio (``lesion_energy_ratio``: 1 for a map that ignores
    the lesion, 3 for one that puts three times the lesion's area share on it) and the pointing-game
    hit rate (peak inside the lesion).

    The maps must be those of the *finding* class (e.g. ``explain.cams(model, x, finding_index)``
    with the true class of each film with a lesion), not of the predicted class: on a film the
    model gets wrong the predicted class's map need not look at the finding at all.
    Lesion columns average over images with a non-empty lesion mask only (``n_lesion``); a constant
    (e.g. all-zero) map has no energy share and no peak, so it is left out of them. The random
    row averages `n_random` smooth random maps per image (`random_maps` with `cells`), measured
    like the methods (its expectation is about the mask's area share: a ratio of about 1).
    With `n_boot` > 0 every score gets ``_low`` / ``_high`` columns: the `ci` bootstrap percentile
    interval over films, or over patients when `groups` gives each film's patient.
    """
    if not maps:
        raise ValueError("maps is empty: give {method: (B, H, W) maps}")
    first = np.asarray(next(iter(maps.values())))
    lung = None if lung_masks is None else _masks(lung_masks, first, "lung")
    lesion = None if lesion_masks is None else _masks(lesion_masks, first, "lesion")
    has = lesion.any(axis=(1, 2)) if lesion is not None else np.zeros(len(first), bool)
    groups = None if groups is None else np.asarray(groups)
    if groups is not None and groups.shape != (len(first),):
        raise ValueError(f"groups must give one patient per film ({len(first)}), got shape {groups.shape}")
    rand = [random_maps(first.shape, seed + r, cells=cells) for r in range(n_random)]
    parts = [("lung", np.ones(len(first), bool), lung), ("lesion", has, lesion)]

    def row(ms: list[np.ndarray]) -> dict:
        """Scores of maps `ms` (draws of one kind, averaged per film) with their intervals."""
        r: dict = {}
        for what, films, mask in parts:
            if mask is None:
                continue
            mk, ms_ = mask[films], [m[films] for m in ms]
            with warnings.catch_warnings():  # a map with no energy has no share: NaN, left out
                warnings.simplefilter("ignore", RuntimeWarning)
                per_film = {f"{what}_energy": np.nanmean([energy_share(m, mk) for m in ms_], 0)}
                if what == "lesion":
                    per_film["lesion_area"] = mk.mean(axis=(1, 2))
                    per_film["pointing_game"] = np.nanmean([np.where(np.ptp(m, axis=(1, 2)) > 0,
                                                                     pointing_game(m, mk), np.nan)
                                                            for m in ms_], 0)
                est = {k: float(np.nanmean(v)) for k, v in per_film.items()}
            boot = _film_boot(per_film, None if groups is None else groups[films], n_boot, seed)
            if what == "lesion":
                est["lesion_energy_ratio"] = est["lesion_energy"] / est["lesion_area"]
                boot["lesion_energy_ratio"] = boot["lesion_energy"] / boot.pop("lesion_area")
            for k, v in est.items():
                r[k] = v
                if k in boot:
                    r[f"{k}_low"], r[f"{k}_high"] = _percentiles(boot[k], ci)
        return r

    rows = {}
    for name, m in maps.items():
        m = np.asarray(m)
        if m.shape != first.shape:
            raise ValueError(f"maps of {name!r} have shape {m.shape}, the first method's {first.shape}")
        rows[name] = row([m])
    rows["random map"] = row(rand)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    table["n_images"] = len(first)
    table["n_lesion"] = int(has.sum())
    return table


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
    bad = [m for m in methods if m not in METHODS and m != EDGES]
    if bad:
        raise ValueError(f"unknown CAM method {bad[0]!r}; choose from {list(METHODS)} or {EDGES!r}")
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
