"""The imgaug executor: the policy as an imgaug ``Sequential`` (the tool of article 004), run
through ``tf.numpy_function``. Its own random stream and interpolation: the same distributions
as the Keras and OpenCV executors, not the same draws.

The `imgaug` package comes from the ``pyimgaug`` fork; it needs NumPy < 2.4 (pinned in
pyproject.toml, guarded by tests/test_augment.py).
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from .policy import AugmentPolicy, as_policy

__all__ = ["ImgaugAugmenter", "imgaug_augmenter", "imgaug_sequence"]

def imgaug_sequence(policy: AugmentPolicy | Mapping | str = "default"):
    """The policy as an ``imgaug.augmenters.Sequential`` (uint8 images, 0..255).

    Crop(keep_size) -> Affine(rotate, scale, translate; constant 0 fill) -> Fliplr ->
    Multiply (brightness) -> GammaContrast (the Keras and OpenCV executors look the intensities up
    before their warp: the same up to interpolation)."""
    import imgaug.augmenters as iaa

    p = as_policy(policy)
    augs = []
    if p.crop:
        augs.append(iaa.Crop(percent=(0.0, p.crop), keep_size=True, name="crop"))
    affine: dict[str, Any] = {}
    if p.rotation:
        affine["rotate"] = (-p.rotation, p.rotation)
    if p.zoom:
        affine["scale"] = (1.0 - p.zoom, 1.0 + p.zoom)
    if p.shift:
        affine["translate_percent"] = {"x": (-p.shift, p.shift), "y": (-p.shift, p.shift)}
    if affine:
        augs.append(iaa.Affine(**affine, order=1, mode="constant", cval=0, name="affine"))
    if p.horizontal_flip:
        augs.append(iaa.Fliplr(0.5, name="horizontal_flip"))
    if p.brightness != (1.0, 1.0):
        augs.append(iaa.Multiply(p.brightness, name="brightness"))
    if p.gamma != (1.0, 1.0):
        augs.append(iaa.GammaContrast(p.gamma, name="gamma"))
    return iaa.Sequential(augs, name="cxr")


class ImgaugAugmenter:
    """The imgaug executor: ``aug(images, seed=None)`` and ``aug.with_masks(images, masks,
    seed=None)`` on float32 (B, H, W, C) 0..255 tensors, usable in tf.data (through
    ``tf.numpy_function``), and ``aug.augment_numpy(images, masks=None, seed=None)`` on arrays.
    Images are rounded to uint8 for imgaug (the pipeline's pixels are uint8 anyway).

    With a per-batch ``seed`` (int (2,), as the other executors take it) the call's draws depend
    on it and ``self.seed`` alone: a copy of the sequence seeded from both, so a parallel tf.data
    map is reproducible. Without, draws come from one seeded imgaug random state, advanced call
    after call (a lock around the draw keeps concurrent calls from sharing one)."""

    def __init__(self, policy: AugmentPolicy | Mapping | str = "default", seed: int | None = 0):
        self.policy = as_policy(policy)
        self.seed = seed
        self.sequence = imgaug_sequence(self.policy)
        if seed is not None:
            self.sequence.seed_(int(seed))
        self._lock = threading.Lock()

    def _draw(self, seed=None):
        if seed is not None:  # stateless: a fresh copy seeded from (own seed, batch seed)
            entropy = [0 if self.seed is None else int(self.seed), *np.asarray(seed, np.int64).ravel().tolist()]
            det = self.sequence.deepcopy()
            det.seed_(int(np.random.SeedSequence([abs(e) for e in entropy]).generate_state(1)[0]))
            return det
        # Only the draw of this call's random state is serialised; the pixel work runs unlocked,
        # so parallel tf.data calls overlap (OpenCV releases the GIL).
        with self._lock:
            return self.sequence.to_deterministic()

    def augment_numpy(self, images, masks=None, seed=None):
        images = np.asarray(images)
        if self.policy.is_identity:
            out = images.astype(np.float32)
            return out if masks is None else (out, np.asarray(masks))
        squeeze = images.ndim == 3
        if squeeze:
            images = images[None]
            masks = None if masks is None else np.asarray(masks)[None]
        u8 = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        if masks is None:
            out = self._draw(seed)(images=u8)
            out = np.asarray(out, np.float32)
            return out[0] if squeeze else out
        from imgaug.augmentables.segmaps import SegmentationMapsOnImage

        masks = np.asarray(masks)
        segs = [SegmentationMapsOnImage(m.astype(np.int32), shape=img.shape) for m, img in zip(masks, u8)]
        out, segs = self._draw(seed)(images=u8, segmentation_maps=segs)
        out = np.asarray(out, np.float32)
        m_out = np.stack([s.get_arr() for s in segs]).reshape(masks.shape).astype(masks.dtype)
        return (out[0], m_out[0]) if squeeze else (out, m_out)

    def __call__(self, images, seed=None):
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        images = images if images.dtype == tf.uint8 else tf.cast(images, tf.float32)
        if seed is None:
            out = tf.numpy_function(lambda a: self.augment_numpy(a).astype(np.float32), [images], tf.float32,
                                    stateful=True, name="imgaug_augment")
        else:
            out = tf.numpy_function(lambda a, s: self.augment_numpy(a, seed=s).astype(np.float32),
                                    [images, tf.convert_to_tensor(seed, tf.int64)], tf.float32,
                                    stateful=False, name="imgaug_augment_seeded")
        return tf.ensure_shape(out, images.shape)

    def with_masks(self, images, masks, seed=None):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        masks = tf.convert_to_tensor(masks)
        args = [images, masks] + ([] if seed is None else [tf.convert_to_tensor(seed, tf.int64)])
        x, m = tf.numpy_function(lambda a, b, *s: self.augment_numpy(a, b, seed=s[0] if s else None), args,
                                 [tf.float32, masks.dtype], stateful=seed is None, name="imgaug_augment_masks")
        return tf.ensure_shape(x, images.shape), tf.ensure_shape(m, masks.shape)

    def __repr__(self) -> str:
        return f"ImgaugAugmenter({self.policy!r}, seed={self.seed})"


def imgaug_augmenter(policy: AugmentPolicy | Mapping | str = "default", *, seed: int | None = 0) -> ImgaugAugmenter:
    """The imgaug executor of `policy` on the same batch contract as `keras_augmenter`."""
    return ImgaugAugmenter(policy, seed=seed)
