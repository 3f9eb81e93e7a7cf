"""The model side of every explanation: the logit, the one spatial-layer rule, the `Explainer`.

Scores are always taken on the *logit*: after a saturated softmax/sigmoid the gradient vanishes
and the maps go blank. For one sigmoid unit the logit is the positive class's score and its
negative is the negative class's. `find_spatial_layer` is the one rule for which layer a CAM
weighs; `_expand` the one way a map is brought to the input's size.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf
from scipy.ndimage import zoom

from ..models import output_activation, probabilities

_EPS = 1e-7  # keras.backend.epsilon(), as tf-keras-vis normalises


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
    """(logit tensor, activation name of the model's output, `cxrnb.models.output_activation`):
    the score before softmax/sigmoid."""
    out = model.outputs[0]
    last = out._keras_history[0]
    name = output_activation(model)
    if name == "linear":
        return out, name
    if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
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
# Explainer: the sub-models
# ---------------------------------------------------------------------------------------------

class Explainer:
    """A model prepared for explanation: its spatial layer and its logit (the methods' compiled paths are cached in `compiled`).

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
        self.compiled: dict = {}  # methods tuple -> tf.function (`methods.compiled_maps`)

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
        """Class probabilities (B, n_classes) of float images, as every cxrnb prediction is made
        (`cxrnb.models.probabilities`: the model's own output; (1 - p, p) for one sigmoid unit)."""
        return probabilities(self.model, self.check_images(images), batch_size)

    # -- compiled path --------------------------------------------------------------------


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
