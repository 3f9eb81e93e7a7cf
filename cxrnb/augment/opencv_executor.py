"""The OpenCV executor: the Keras executor's draws and arrays, applied by ``cv2.LUT`` and ``cv2.warpAffine``.

The per-image lookup tables and matrices come from `transforms.batch_transforms` (TensorFlow ops,
in the graph); ``tf.numpy_function`` hands them with the batch to `apply_transforms`, which only
applies them, one image at a time (OpenCV releases the GIL, so parallel tf.data calls overlap).
It calls Python: for a TPU graph or a SavedModel, use the Keras executor.
"""
from __future__ import annotations

from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from .policy import VALUE_RANGE, AugmentPolicy, as_policy
from .transforms import batch_transforms

__all__ = ["OpenCVAugmenter", "opencv_augmenter", "apply_transforms"]

#: Mask dtypes cv2.warpAffine takes as they are (others go through float64; bool through uint8).
_CV_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)}


def apply_transforms(images: np.ndarray, lut: np.ndarray | None, matrices: np.ndarray | None,
                     masks: np.ndarray | None = None):
    """Per image: ``cv2.LUT`` with ``lut[i]`` (floats rounded to 0..255 integers first), then one
    ``cv2.warpAffine`` with ``matrices[i]`` (bilinear for images, nearest for masks, 0 outside).

    images (B, H, W, C) uint8 or float; returns float32 images clipped to 0..255, and masks
    (B, H, W, K) with their dtype and values kept when given."""
    import cv2

    b, h, w, c = images.shape
    out = np.empty((b, h, w, c), np.float32)
    if lut is None and matrices is None:
        out[...] = images
    else:
        if lut is not None:  # the lookup table indexes 8-bit values
            src = images if images.dtype == np.uint8 else np.clip(np.rint(images), 0, 255).astype(np.uint8)
        else:
            src = images.astype(np.float32, copy=False)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        for i in range(b):
            dst = out[i, ..., 0] if c == 1 else out[i]  # written in place: no copy per image
            x = np.ascontiguousarray(src[i])
            if matrices is None:
                cv2.LUT(x, lut[i], dst=dst)
                continue
            x = x if lut is None else cv2.LUT(x, lut[i])
            cv2.warpAffine(x, matrices[i], (w, h), dst=dst, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
    np.clip(out, *VALUE_RANGE, out=out)
    if masks is None:
        return out
    m_out = masks.copy()
    if matrices is not None:
        work = masks.astype(np.uint8) if masks.dtype == bool else \
            masks if masks.dtype in _CV_DTYPES else masks.astype(np.float64)
        nearest = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        for i in range(b):
            y = cv2.warpAffine(np.ascontiguousarray(work[i]), matrices[i], (w, h), flags=nearest,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            m_out[i] = y.reshape(masks.shape[1:]).astype(masks.dtype)
    return out, m_out


class OpenCVAugmenter:
    """The OpenCV executor: ``aug(images, seed=None)`` and ``aug.with_masks(images, masks, seed=None)``
    on (B, H, W, C) uint8 or float 0..255 tensors (in tf.data too), ``aug.augment_numpy(images,
    masks=None, seed=None)`` on arrays. Returns float32 0..255; masks keep their dtype and values.

    Draws are the Keras executor's (`transforms.draw_uniforms`): with a per-batch ``seed`` they
    depend on it and ``self.seed`` alone (a parallel map is reproducible); without, on the
    executor's seed state, advanced call after call. The same seed gives the Keras executor's
    pixels up to the warps' rounding."""

    def __init__(self, policy: AugmentPolicy | Mapping | str = "default", seed: int | None = 0):
        self.policy = as_policy(policy)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _run(self, images, masks=None, seed=None):
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            images = tf.cast(images, tf.float32)
        single = images.shape.rank == 3
        if single:
            images = images[None]
            masks = None if masks is None else masks[None]
        if images.shape.rank != 4:
            raise ValueError(f"expected images (B, H, W, C) or one (H, W, C), got shape {images.shape}")
        if self.policy.is_identity:
            x = tf.cast(images, tf.float32)
        else:
            lut, matrices = batch_transforms(self.policy, images, seed=seed, own_seed=self.seed,
                                             generator=self.generator)
            parts = [t for t in (lut, matrices, masks) if t is not None]
            has = (lut is not None, matrices is not None, masks is not None)

            def apply(x, *arrays):
                it = iter(arrays)
                lut_, mats_, masks_ = (next(it) if h else None for h in has)
                return apply_transforms(x, lut_, mats_, masks_)

            out = tf.numpy_function(apply, [images, *parts],
                                    tf.float32 if masks is None else [tf.float32, masks.dtype],
                                    stateful=False, name="opencv_augment")
            x, masks = (out, None) if masks is None else out
            masks = None if masks is None else tf.ensure_shape(masks, parts[-1].shape)
        x = tf.ensure_shape(x, images.shape)
        return (x[0], None if masks is None else masks[0]) if single else (x, masks)

    def __call__(self, images, seed=None):
        """Augment a batch tensor; `seed`: optional int (2,) tensor, e.g. ``tf.stack([epoch_or_0, step])``,
        that (with ``self.seed``) alone fixes this call's draws."""
        return self._run(images, seed=seed)[0]

    def with_masks(self, images, masks, seed=None):
        """(images, masks) tensors with the same geometric transform (masks: nearest, values kept)."""
        return self._run(images, tf.convert_to_tensor(masks), seed=seed)

    def augment_numpy(self, images, masks=None, seed=None):
        """float32 images (and masks, same dtype, same geometric transform) as numpy arrays."""
        x, m = self._run(np.asarray(images), None if masks is None else tf.convert_to_tensor(masks), seed)
        return x.numpy() if masks is None else (x.numpy(), m.numpy())

    def __repr__(self) -> str:
        return f"OpenCVAugmenter({self.policy!r}, seed={self.seed})"


def opencv_augmenter(policy: AugmentPolicy | Mapping | str = "default", *, seed: int | None = 0) -> OpenCVAugmenter:
    """The OpenCV executor of `policy` (see `OpenCVAugmenter`): the Keras executor's draws and
    arithmetic, faster on CPU (benchmarks/augment.py); `cxrnb.pipeline`'s default. Keep
    `keras_augmenter` for graphs that must not call Python (TPU, SavedModel)."""
    return OpenCVAugmenter(policy, seed=seed)
