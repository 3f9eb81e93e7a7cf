"""The per-image random parameters of a policy, written once for the Keras and OpenCV executors.

Per image, `draw_uniforms` draws `N_UNIFORMS` numbers in [0, 1) and `sample_transforms` turns
them into a 256-entry intensity lookup table (brightness, then gamma) and one 2x3 affine matrix
(crop, rotation, zoom, shift, flip). Both are TensorFlow ops, so they run inside the tf.data
graph; the Keras executor applies them with TF ops (a gather, one projective warp), the OpenCV
executor receives the same arrays through ``tf.numpy_function`` and only calls ``cv2.LUT`` and
``cv2.warpAffine``. Same seed, same draws, the same pixels up to the warps' rounding.
"""
from __future__ import annotations

import functools
import math

import keras
import numpy as np
import tensorflow as tf

from .policy import AugmentPolicy

__all__ = ["N_UNIFORMS", "draw_uniforms", "transform_params", "describe", "sample_transforms", "batch_transforms"]

#: Uniforms per image, in this order: brightness, gamma, crop top, bottom, left, right, angle,
#: scale, shift x, shift y, flip.
N_UNIFORMS = 11


def draw_uniforms(n, *, seed=None, own_seed: int | None = None,
                  generator: keras.random.SeedGenerator | None = None) -> tf.Tensor:
    """(n, `N_UNIFORMS`) float32 uniforms in [0, 1).

    With `seed` (an int (2,) tensor, e.g. the pipeline's per-batch ``[epoch_or_0, step]``) the draw
    is stateless: it depends on `seed` and the executor's `own_seed` alone, whatever order parallel
    tf.data calls run in. Without, it comes from `generator`, advanced call after call
    (reproducible only one call at a time)."""
    shape = (n, N_UNIFORMS)
    if seed is None:
        if generator is None:
            raise ValueError("draw_uniforms needs a per-batch seed or a SeedGenerator")
        return keras.random.uniform(shape, seed=generator)
    key = tf.cast(seed, tf.int64)
    if own_seed is not None:
        key = tf.random.experimental.stateless_fold_in(key, int(own_seed))
    return tf.random.stateless_uniform(shape, key)


def transform_params(policy: AugmentPolicy, u) -> dict[str, tf.Tensor]:
    """The per-image parameters (B,) of `policy` from uniforms `u` (B, `N_UNIFORMS`): the one
    place that maps draws to values, read by `sample_transforms` (the executors) and by
    `describe` (labels of previewed draws). brightness factor ~ U(brightness), gamma ~ U(gamma);
    top, bottom, left, right: fraction of the side cropped ~ U(0, crop); angle in radians ~
    U(-rotation, rotation); scale ~ U(1 - zoom, 1 + zoom) (> 1 zooms out); shift_x, shift_y:
    fractions of W and H ~ U(-shift, shift); flip: 1.0 with probability 0.5 when allowed."""
    p = policy
    u = tf.cast(u, tf.float32)
    (b0, b1), (g0, g1) = p.brightness, p.gamma
    q = {"brightness": b0 + (b1 - b0) * u[:, 0], "gamma": g0 + (g1 - g0) * u[:, 1]}
    q.update(zip(("top", "bottom", "left", "right"), (u[:, 2 + i] * p.crop for i in range(4))))
    q["angle"] = (2.0 * u[:, 6] - 1.0) * math.radians(p.rotation)
    q["scale"] = 1.0 + (2.0 * u[:, 7] - 1.0) * p.zoom
    q["shift_x"], q["shift_y"] = (2.0 * u[:, 8] - 1.0) * p.shift, (2.0 * u[:, 9] - 1.0) * p.shift
    q["flip"] = tf.cast(u[:, 10] < 0.5, tf.float32) if p.horizontal_flip else tf.zeros_like(u[:, 10])
    return q


def describe(policy: AugmentPolicy, u) -> list[dict[str, float]]:
    """`transform_params` of each image as plain numbers, rotation in degrees: what a panel
    of a preview was drawn with, from the uniforms the executor drew for it."""
    q = {k: v.numpy() for k, v in transform_params(policy, u).items()}
    q["rotation"] = np.degrees(q.pop("angle"))
    return [{k: float(v[i]) for k, v in q.items()} for i in range(len(q["scale"]))]


def sample_transforms(policy: AugmentPolicy, u, height, width) -> tuple[tf.Tensor | None, tf.Tensor | None]:
    """Per-image ``(lut, matrix)`` of `policy` from uniforms `u` (B, `N_UNIFORMS`).

    lut: (B, 256) float32, ``255 * (clip(f * v, 0, 255) / 255) ** g`` for the 8-bit value v, with
    the brightness factor f ~ U(brightness) and the gamma g ~ U(gamma) (imgaug's ``Multiply`` then
    ``GammaContrast``); ``lut[:, 0] == 0``, so a black fill stays black. None when the policy
    changes no intensity.

    matrix: (B, 2, 3) float32 mapping each output pixel (x, y, 1) to the input point it samples
    (``cv2.WARP_INVERSE_MAP`` convention; Keras' ``affine_transform`` takes the same six numbers).
    Composed, right to left: flip with probability 0.5 (when allowed), shift ~ U(-shift, shift) of
    W and H, scale ~ U(1 - zoom, 1 + zoom) (> 1 zooms out), angle ~ U(-rotation, rotation) about the
    centre, then a crop of U(0, crop) per side resized back. None when nothing moves."""
    p = policy
    q = transform_params(policy, u)
    lut = None
    if p.intensity:
        v = tf.range(256, dtype=tf.float32)[None]
        lut = tf.pow(tf.clip_by_value(v * q["brightness"][:, None], 0.0, 255.0) / 255.0, q["gamma"][:, None]) * 255.0
    if not p.geometric:
        return lut, None
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    top, bottom, left, right, angle, scale = (q[k] for k in ("top", "bottom", "left", "right", "angle", "scale"))
    tx, ty = q["shift_x"] * w, q["shift_y"] * h
    one, zero = tf.ones_like(angle), tf.zeros_like(angle)
    flip = q["flip"]
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0

    def m3(a, b, c, d, e, f):  # rows (a b c), (d e f), (0 0 1) -> (B, 3, 3)
        return tf.reshape(tf.stack([a, b, c, d, e, f, zero, zero, one], axis=1), (-1, 3, 3))

    cos, sin = tf.cos(angle), tf.sin(angle)
    m = (m3(1.0 - left - right, zero, left * w, zero, 1.0 - top - bottom, top * h)
         @ m3(cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
         @ m3(scale, zero, cx * (1.0 - scale), zero, scale, cy * (1.0 - scale))
         @ m3(one, zero, -tx, zero, one, -ty)
         @ m3(1.0 - 2.0 * flip, zero, flip * (w - 1.0), zero, one, zero))
    return lut, m[:, :2]


def batch_transforms(policy: AugmentPolicy, images: tf.Tensor, *, seed=None, own_seed: int | None = None,
                     generator: keras.random.SeedGenerator | None = None):
    """`sample_transforms` for a (B, H, W, C) batch: one `draw_uniforms` per call.

    With a per-batch `seed` the draws and the maths are one compiled function per (policy,
    own_seed), traced once per process (`_seeded_transforms`): every dataset built with the same
    policy reuses it instead of tracing its hundred-odd ops again. The stateful path (no seed)
    reads the executor's `generator` and is traced where it is called."""
    shape = tf.shape(images)
    if seed is None:
        u = draw_uniforms(shape[0], seed=seed, own_seed=own_seed, generator=generator)
        return sample_transforms(policy, u, shape[1], shape[2])
    return _seeded_transforms(policy, own_seed)(shape, tf.cast(seed, tf.int64))


@functools.lru_cache(maxsize=64)
def _seeded_transforms(policy: AugmentPolicy, own_seed: int | None):
    """The compiled ``(images shape, seed) -> (lut, matrix)`` of `policy` (see `batch_transforms`)."""

    @tf.function(reduce_retracing=True)
    def transforms(shape, seed):
        u = draw_uniforms(shape[0], seed=seed, own_seed=own_seed)
        return sample_transforms(policy, u, shape[1], shape[2])

    return transforms
