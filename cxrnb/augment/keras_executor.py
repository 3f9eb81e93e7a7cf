"""The Keras executor: `CXRAugment`, a Keras layer that runs a policy inside the tf.data graph.

It applies `transforms.sample_transforms`' lookup table with one gather and its matrix with one
bilinear warp per batch, all TensorFlow ops: no Python call, so it also fits a TPU graph or a
SavedModel, where the OpenCV executor cannot go.
"""
from __future__ import annotations

from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from .policy import VALUE_RANGE, AugmentPolicy, as_policy
from .transforms import batch_transforms

__all__ = ["CXRAugment", "keras_augmenter"]


def apply_lut(images: tf.Tensor, lut: tf.Tensor) -> tf.Tensor:
    """Image i's 8-bit values looked up in ``lut[i]`` (B, 256): integer inputs as they are, floats
    rounded and clipped to 0..255 first (as the imgaug executor's uint8 conversion does)."""
    if images.dtype == tf.uint8:
        idx = tf.cast(images, tf.int32)
    elif images.dtype.is_integer:
        idx = tf.clip_by_value(tf.cast(images, tf.int32), 0, 255)
    else:
        idx = tf.cast(tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0.0, 255.0), tf.int32)
    b = tf.shape(lut)[0]
    offset = tf.reshape(tf.range(b) * 256, [-1, 1, 1, 1])  # one flat table: image i starts at 256 * i
    return tf.gather(tf.reshape(tf.cast(lut, tf.float32), [-1]), idx + offset)


def warp(images: tf.Tensor, matrix: tf.Tensor, interpolation: str) -> tf.Tensor:
    """Each image warped by its (2, 3) output-to-input `matrix`; 0 outside the image."""
    flat = tf.concat([tf.reshape(matrix, (-1, 6)), tf.zeros((tf.shape(matrix)[0], 2), matrix.dtype)], axis=1)
    return keras.ops.image.affine_transform(images, flat, interpolation=interpolation,
                                            fill_mode="constant", fill_value=0)


@keras.saving.register_keras_serializable(package="cxrnb")
class CXRAugment(keras.layers.Layer):
    """The Keras executor of an `AugmentPolicy`: ``layer(images)``, ``layer.with_masks(images, masks)``.

    Takes (B, H, W, C) uint8 or float 0..255 batches (or one (H, W, C) image) and returns float32
    0..255: the intensity lookup table on the 8-bit input values, then one warp, then a clip.
    Masks get the same warp with nearest interpolation and keep their dtype and values.

    Draws: given a per-batch ``seed`` (an int (2,) tensor) they depend on it and ``self.seed``
    alone, so a parallel tf.data map is reproducible (what `cxrnb.pipeline.make_dataset` does);
    without, on the layer's seed state, advanced call after call. ``training`` defaults to True
    (the layer is meant for the training branch of a pipeline); inside a model, Keras passes
    training=False at inference and the layer is the identity.
    """

    def __init__(self, policy: AugmentPolicy | Mapping | str = "default", seed: int | None = 0,
                 interpolation: str = "bilinear", **kwargs):
        if not kwargs.pop("fused", True):  # configs saved before the layer chain was removed
            raise ValueError("fused=False (the chain of Keras' own layers) was removed; "
                             "CXRAugment is always the fused lookup table + one warp")
        super().__init__(**kwargs)
        self.policy = as_policy(policy)
        self.seed = seed
        self.interpolation = interpolation
        self.generator = keras.random.SeedGenerator(seed)

    def _apply(self, images, masks=None, training=True, seed=None):
        images = tf.convert_to_tensor(images)
        single = images.shape.rank == 3
        if single:
            images = images[None]
            masks = None if masks is None else tf.convert_to_tensor(masks)[None]
        if not training or self.policy.is_identity:
            x = tf.cast(images, tf.float32)
        else:
            lut, matrix = batch_transforms(self.policy, images, seed=seed, own_seed=self.seed,
                                           generator=self.generator)
            x = tf.cast(images, tf.float32) if lut is None else apply_lut(images, lut)
            if matrix is not None:
                x = warp(x, matrix, self.interpolation)
                if masks is not None:
                    m = warp(tf.cast(masks, tf.float32), matrix, "nearest")
                    masks = tf.cast(tf.round(m), masks.dtype)
            x = tf.clip_by_value(x, *VALUE_RANGE)
        return (x[0], None if masks is None else masks[0]) if single else (x, masks)

    def build(self, input_shape=None):
        self.built = True

    def call(self, images, training=True, seed=None):
        """`seed`: optional int (2,) tensor, e.g. ``tf.stack([epoch, step])``: draws then depend on
        it (and ``self.seed``) alone, not on call order."""
        return self._apply(images, None, training=training, seed=seed)[0]

    def with_masks(self, images, masks, training=True, seed=None):
        """(images, masks) with the same geometric transform; masks (B, H, W, K), any dtype, use
        nearest interpolation and skip the intensity change."""
        return self._apply(images, tf.convert_to_tensor(masks), training=training, seed=seed)

    def augment_numpy(self, images, masks=None, seed=None):
        """`call` / `with_masks` on numpy arrays, returning numpy arrays."""
        x, m = self._apply(np.asarray(images), None if masks is None else tf.convert_to_tensor(masks),
                           seed=seed)
        return x.numpy() if masks is None else (x.numpy(), m.numpy())

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "policy": self.policy.to_dict(), "seed": self.seed,
                "interpolation": self.interpolation}

    def __repr__(self) -> str:
        return f"CXRAugment({self.policy!r}, seed={self.seed})"


def keras_augmenter(policy: AugmentPolicy | Mapping | str = "default", *, seed: int | None = 0,
                    interpolation: str = "bilinear") -> CXRAugment:
    """The Keras executor of `policy` (see `CXRAugment`).

    `cxrnb.pipeline.make_dataset` runs it for you (in parallel, reproducibly). By hand, inside
    ``tf.data``: ``ds.map(lambda x, y: (aug(x), y))`` draws from the layer's seed state, which is
    reproducible only one batch at a time (``num_parallel_calls=None``): concurrent calls race for
    it. For a parallel *and* reproducible map, pass a per-batch seed:
    ``ds.enumerate().map(lambda i, x: aug(x, seed=tf.stack([epoch_or_0, i])), AUTOTUNE)``."""
    return CXRAugment(policy, seed=seed, interpolation=interpolation)
