"""CAM methods as small classes, one registry, and the two public entry points `cam` and `cams`.

Grad-CAM, Grad-CAM++ and LayerCAM are one computation, ``relu(sum_c w_c * A_c)`` over the spatial
layer's activations A, and differ only in their weights w (`GradientCAM.weights`): they run on a
compiled, batched path that takes the gradient once for all of them. Score-CAM and SmoothGrad are
run by tf-keras-vis, which is their implementation (`ToolkitMethod`). A new method is one class
and one `register` line. tf-keras-vis' own Grad-CAM family is the test oracle of the compiled
path (`cxrnb.explain.oracle`).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from .model import Explainer, _expand, explainer, layer_output


class Method:
    """A CAM method: its registry `name` and whether it runs on the compiled gradient path."""

    name: str = ""
    compiled: bool = False


class GradientCAM(Method):
    """``relu(sum_c w_c(A, G, s) * A_c)``: A the layer's activations (B, h, w, C), G the gradient
    of the class score s (B,) with respect to them. Subclasses give only the weights."""

    compiled = True

    def weights(self, a: tf.Tensor, g: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def map(self, a: tf.Tensor, g: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        """The raw (B, h, w) map, before upsampling and scaling."""
        return tf.nn.relu(tf.reduce_sum(self.weights(a, g, s) * a, -1))


class GradCAM(GradientCAM):
    """Selvaraju et al. 2017: each channel weighted by its mean gradient."""

    name = "gradcam"

    def weights(self, a, g, s):
        return tf.reduce_mean(g, axis=(1, 2), keepdims=True)


class GradCAMPlusPlus(GradientCAM):
    """Chattopadhay et al. 2018, with exp(score) as tf-keras-vis computes it: positive gradients
    weighted per position by alpha, which favours several small regions of evidence."""

    name = "gradcam++"

    def weights(self, a, g, s):
        e = tf.exp(s)[:, None, None, None]
        d1 = e * g
        d2 = d1 * g
        d3 = d2 * g
        denom = 2.0 * d2 + d3 * tf.reduce_sum(a, axis=(1, 2), keepdims=True)
        alpha = d2 / (denom + tf.cast(d2 == 0.0, d2.dtype))
        norm = tf.reduce_sum(alpha, axis=(1, 2), keepdims=True)
        alpha = alpha / (norm + tf.cast(norm == 0.0, norm.dtype))
        return tf.reduce_sum(tf.nn.relu(d1) * alpha, axis=(1, 2), keepdims=True)


class LayerCAM(GradientCAM):
    """Jiang et al. 2021: each position weighted by its own positive gradient."""

    name = "layercam"

    def weights(self, a, g, s):
        return tf.nn.relu(g)


class ToolkitMethod(Method):
    """A method tf-keras-vis implements: `run(ex, x, idx, **options)` -> (B, H, W) in [0, 1]."""

    def run(self, ex: Explainer, x: np.ndarray, idx: np.ndarray, *, batch_size: int, max_n: int | None,
            smooth_samples: int, smooth_noise: float, seed: int) -> np.ndarray:
        raise NotImplementedError


class ScoreCAM(ToolkitMethod):
    """Wang et al. 2020 (Faster-Score-CAM when `max_n` channels are kept): one forward pass per
    channel of the layer and image, each channel's map scored by the class probability."""

    name = "scorecam"

    def run(self, ex, x, idx, *, batch_size, max_n, **_):
        with warnings.catch_warnings():  # tf-keras-vis imports a deprecated scipy namespace
            warnings.simplefilter("ignore", DeprecationWarning)
            from tf_keras_vis.scorecam import Scorecam
        one = np.arange(len(idx))  # tf-keras-vis applies softmax to the outputs itself
        raw = Scorecam(ex.softmax_model)(lambda p: p.numpy()[one, idx], x, max_N=max_n, batch_size=batch_size,
                                         **toolkit_layer(ex), expand_cam=False, normalize_cam=False)
        return _expand(np.asarray(raw), x.shape[1:3])


class SmoothGrad(ToolkitMethod):
    """Smilkov et al. 2017: input gradients averaged over `smooth_samples` noisy copies (noise sd
    `smooth_noise`; TensorFlow's global seed is set from `seed` so that it is repeatable)."""

    name = "smoothgrad"

    def run(self, ex, x, idx, *, smooth_samples, smooth_noise, seed, **_):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from tf_keras_vis.saliency import Saliency
        tf.random.set_seed(seed)
        return np.asarray(Saliency(ex.logit_model)(lambda z: ex.score(z, idx), x, smooth_samples=smooth_samples,
                                                   smooth_noise=smooth_noise))


class _Target(keras.layers.Layer):
    """Stands for the spatial layer in tf-keras-vis, which reads `.output`: gives the tensor in the
    explained model's graph (right for a nested backbone too)."""

    def __init__(self, tensor, name: str):
        super().__init__(name=name)
        self._tensor = tensor

    @property
    def output(self):
        return self._tensor


def toolkit_layer(ex: Explainer) -> dict:
    """tf-keras-vis' arguments that make it weigh `ex`'s spatial layer (`find_spatial_layer`)."""
    return dict(penultimate_layer=_Target(layer_output(ex.model, ex.layer), ex.layer.name),
                seek_penultimate_conv_layer=False)


#: Every method by name, in display order (`register` adds one).
REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to `REGISTRY` (and so to `METHODS`, `COMPILED` and `cam`)."""
    REGISTRY[method.name] = method
    return method


for _m in (GradCAM(), GradCAMPlusPlus(), LayerCAM(), ScoreCAM(), SmoothGrad()):
    register(_m)


def names(compiled: bool | None = None) -> tuple[str, ...]:
    """Registered method names (only the compiled ones, or the others, when asked)."""
    return tuple(k for k, m in REGISTRY.items() if compiled is None or m.compiled == compiled)


def _method(name: str) -> Method:
    if name not in REGISTRY:
        raise ValueError(f"unknown CAM method {name!r}; choose from {list(REGISTRY)}")
    return REGISTRY[name]


def compiled_maps(ex: Explainer, images, class_index, methods: Sequence[str],
                  batch_size: int = 64) -> dict[str, np.ndarray]:
    """Maps of gradient methods (one gradient pass per batch for all of them), {method: (B, H, W)}
    in [0, 1]; one `tf.function` per model and set of methods, cached on the explainer."""
    chosen = tuple(methods)
    bad = [m for m in chosen if not _method(m).compiled]
    if bad:
        raise ValueError(f"method(s) {bad} have no compiled path; compiled: {list(names(compiled=True))}")
    if chosen not in ex.compiled:
        def raw(x, idx):
            with tf.GradientTape() as tape:
                tape.watch(x)
                a, z = ex.layer_model(x, training=False)
                s = ex.score(z, idx)
            g = tape.gradient(s, a)
            return tuple(REGISTRY[m].map(a, g, s) for m in chosen)

        spec = [tf.TensorSpec((None, *ex.input_shape), tf.float32), tf.TensorSpec((None,), tf.int32)]
        ex.compiled[chosen] = tf.function(raw, input_signature=spec, reduce_retracing=True)
    x = ex.check_images(images)
    idx = ex.check_classes(class_index, len(x))
    parts: dict[str, list] = {m: [] for m in chosen}
    for i in range(0, len(x), batch_size):
        out = ex.compiled[chosen](tf.constant(x[i:i + batch_size]), tf.constant(idx[i:i + batch_size]))
        for m, r in zip(chosen, out):
            parts[m].append(np.asarray(r))
    return {m: _expand(np.concatenate(parts[m]) if parts[m] else np.zeros((0, 1, 1), np.float32), x.shape[1:3])
            for m in chosen}


def cam(model: keras.Model | Explainer, images, class_index, method: str = "gradcam",
        layer: str | keras.layers.Layer | None = None, *, batch_size: int = 64, smooth_samples: int = 20,
        smooth_noise: float = 0.2, max_n: int | None = None, seed: int = 0) -> np.ndarray:
    """Class activation maps (B, H, W) in [0, 1], upsampled to the input size.

    `images` are the model's float inputs (B, H, W, C) in [0, 1]; `class_index` an int or one per
    image. `method` is a registered name (`METHODS`): Grad-CAM, Grad-CAM++ and LayerCAM on the
    compiled path; Score-CAM (Faster-Score-CAM when `max_n` channels are kept) and SmoothGrad
    (`smooth_samples` noisy copies, noise sd `smooth_noise`, repeatable for a `seed`) through
    tf-keras-vis.
    """
    return cams(model, images, class_index, [method], layer, batch_size=batch_size, smooth_samples=smooth_samples,
                smooth_noise=smooth_noise, max_n=max_n, seed=seed)[method]


def cams(model: keras.Model | Explainer, images, class_index, methods: Sequence[str] | None = None,
         layer: str | keras.layers.Layer | None = None, *, batch_size: int = 64, smooth_samples: int = 20,
         smooth_noise: float = 0.2, max_n: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """{method: maps} for several methods (all registered ones by default); the compiled ones
    share one gradient pass."""
    methods = list(names() if methods is None else methods)
    for m in methods:
        _method(m)
    ex = explainer(model, layer)
    fast = [m for m in methods if REGISTRY[m].compiled]
    out = compiled_maps(ex, images, class_index, fast, batch_size) if fast else {}
    slow = [m for m in methods if m not in out]
    if slow:
        x = ex.check_images(images)
        idx = ex.check_classes(class_index, len(x))
        for m in slow:
            parts = [REGISTRY[m].run(ex, x[i:i + batch_size], idx[i:i + batch_size], batch_size=batch_size,
                                     max_n=max_n, smooth_samples=smooth_samples, smooth_noise=smooth_noise,
                                     seed=seed + i)
                     for i in range(0, len(x), batch_size)]
            out[m] = (np.concatenate([np.asarray(p, np.float32).reshape(-1, *x.shape[1:3]) for p in parts])
                      if parts else np.zeros((0, *x.shape[1:3]), np.float32))
    return {m: out[m] for m in methods}
