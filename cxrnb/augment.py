"""Chest X-ray augmentation: one declarative policy, three executors.

    AugmentPolicy (frozen dataclass, JSON)  --keras_augmenter-->   Keras layers, in the tf.data graph
                                            --opencv_augmenter-->  cv2.LUT + cv2.warpAffine per image
                                            --imgaug_augmenter-->  imgaug sequence via tf.numpy_function

The policy says *what* may vary (small rotation, zoom, shift, exposure, gamma contrast, a random
crop) and refuses what never happens on a chest radiograph (vertical flip). All executors take
the same batch contract: float32 ``(B, H, W, C)`` in 0..255, returned with the same shape and
dtype, clipped to 0..255. Pixels that come from outside the image are filled with 0 (black, like
the film border), never reflected: a reflected rib cage or a mirrored shoulder is fake anatomy.

Why each parameter is bounded (see `describe` for the table a notebook shows):

* rotation <= 45 degrees: patients are positioned upright; real films are tilted 0-20 degrees at
  most (article 002 shows 15-20 degree examples; article 003 says more than 20 degrees "is very
  unlikely").
* zoom <= 50 %, shift <= 30 %, crop <= 25 % per side: beyond that the lungs leave the field.
* brightness factors in (0, 3], gamma in (0, 5]: exposure and detector response vary, but a factor
  of 0 erases the image.
* horizontal flip is **off by default**: a chest film is not left-right symmetric. The heart lies
  on the patient's left, the aortic knob and gastric bubble too, and the film carries burnt-in
  L/R markers. A flipped film looks like *dextrocardia* (situs inversus), a real finding, with a
  marker that now lies about the side: the model learns that anatomy may be mirrored and that the
  side of a finding means nothing. Turn it on only knowingly.
* vertical flip is **refused**: patients are never upside down on a chest X-ray (article 003: "if
  you really have one, you may ask what that guy drank").

Executors:

* `keras_augmenter(policy, seed=...)`: a Keras layer (`CXRAugment`). Two custom layers do all
  the work, one gather and one warp per batch: `RandomIntensityLUT` (brightness, *multiplicative*
  as ImageDataGenerator's ``brightness_range`` and imgaug's ``Multiply``, then gamma, as one
  per-image 256-entry lookup table on the 8-bit values) and `RandomCXRAffine` (crop, rotation,
  zoom, shift, flip as one bilinear warp). It runs per batch inside ``tf.data.Dataset.map`` (graph mode);
  given a per-batch ``seed`` tensor its draws are stateless, so a parallel map is reproducible
  (what `cxrnb.pipeline.make_dataset` does; see ``benchmarks/augment.py``).
* `opencv_augmenter(policy, seed=...)`: the Keras executor's computation (the same parameter
  formulas, in numpy: `sample_transforms`; the same lookup table and warp matrix) done by OpenCV
  through ``tf.numpy_function``: ``cv2.LUT`` then one ``cv2.warpAffine`` per image, ~4x the
  Keras executor's rate in tf.data on 2 CPU cores (the warp alone is ~6x faster). Its random
  stream is numpy's, so a seed gives other (equally distributed) draws than Keras'. Given a
  per-batch ``seed`` its draws depend on that seed alone, so a parallel map is reproducible;
  `cxrnb.pipeline` uses it by default. It calls Python: for TPU or a SavedModel, use Keras'.
* `imgaug_augmenter(policy, seed=...)`: the `imgaug_sequence` of the same policy, run through
  ``tf.numpy_function`` (the `imgaug` package comes from the ``pyimgaug`` fork; it needs
  NumPy < 2.4, pinned in pyproject.toml and guarded by tests/test_augment.py).

Masks (lung, lesion) go through exactly the same geometric transform when asked
(``augmenter.with_masks(images, masks)`` or `augment_with_masks`), with nearest-neighbour
interpolation and no intensity change, so augmented masks stay aligned with augmented images.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

import keras
import numpy as np
from keras import ops

__all__ = [
    "AugmentPolicy", "PRESETS", "PRESET_SOURCES", "BOUNDS", "describe",
    "keras_augmenter", "imgaug_sequence", "imgaug_augmenter", "augment_with_masks",
    "opencv_augmenter", "OpenCVAugmenter", "sample_transforms", "EXECUTORS", "make_augmenter",
    "CXRAugment", "ImgaugAugmenter", "RandomIntensityLUT", "RandomCXRAffine",
]

VALUE_RANGE = (0.0, 255.0)

# field -> (low, high, text of the allowed range). Pairs (brightness, gamma) apply to both ends.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "rotation": (0.0, 45.0, "0 <= rotation <= 45 (degrees, drawn in [-rotation, +rotation])"),
    "zoom": (0.0, 0.5, "0 <= zoom <= 0.5 (fraction: zoom in/out by up to this)"),
    "shift": (0.0, 0.3, "0 <= shift <= 0.3 (fraction of height/width)"),
    "brightness": (0.0, 3.0, "a pair (low, high) with 0 < low <= high <= 3 (multiplicative factors)"),
    "gamma": (0.0, 5.0, "a pair (low, high) with 0 < low <= high <= 5 (gamma exponents)"),
    "crop": (0.0, 0.25, "0 <= crop <= 0.25 (fraction removed per side, then resized back; "
                        "1.0 would remove the whole image)"),
}

_VFLIP_MESSAGE = (
    "vertical_flip=True is refused: patients are never upside down on a chest X-ray, so a "
    "vertically flipped film teaches the model anatomy that does not exist (lungs below the "
    "diaphragm). Use rotation (<= 45 degrees) for positioning variation instead.")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number ({BOUNDS[name][2]}), got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite ({BOUNDS[name][2]}), got {value!r}")
    return v


def _check_scalar(name: str, value: Any) -> float:
    v = _number(name, value)
    lo, hi, text = BOUNDS[name]
    if not lo <= v <= hi:
        raise ValueError(f"{name}={value!r} is out of range: allowed {text}")
    return v


def _check_pair(name: str, value: Any) -> tuple[float, float]:
    text = BOUNDS[name][2]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be {text}, got {value!r}")
    low, high = (_number(name, v) for v in value)
    if not (0.0 < low <= high <= BOUNDS[name][1]):
        raise ValueError(f"{name}={tuple(value)!r} is out of range: allowed {text}")
    return (low, high)


@dataclass(frozen=True)
class AugmentPolicy:
    """What may vary when a chest radiograph is augmented. Immutable, validated, JSON-serialisable.

    The defaults (``AugmentPolicy()`` == ``AugmentPolicy.preset("default")``) are mild: what one
    sees between two films of the same patient on different days.

    rotation: max degrees, drawn uniformly in [-rotation, +rotation] (0..45).
    zoom: max fraction; the scale is drawn in [1 - zoom, 1 + zoom] (0..0.5).
    shift: max translation as a fraction of height/width (0..0.3). Off by default: films are
        centred on the chest (article 003 sets width/height_shift_range to 0).
    brightness: multiplicative exposure factor range (low, high), both > 0; (1, 1) is off.
    gamma: gamma-contrast exponent range (low, high), both > 0, applied as
        255 * (x / 255) ** gamma; (1, 1) is off. <1 brightens soft tissue, >1 darkens it.
    crop: max fraction removed from each side independently before resizing back (0..0.25).
    horizontal_flip: off by default. A chest film is not left-right symmetric: the heart is on
        the patient's left, and a mirrored film looks like dextrocardia (a real finding) with a
        burnt-in L/R marker now on the wrong side. Enable only knowingly.
    vertical_flip: must stay False; True raises ValueError (nobody is X-rayed upside down).
    """

    rotation: float = 10.0
    zoom: float = 0.1
    shift: float = 0.0
    brightness: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    crop: float = 0.05
    horizontal_flip: bool = False
    vertical_flip: bool = False

    def __post_init__(self) -> None:
        for name in ("rotation", "zoom", "shift", "crop"):
            object.__setattr__(self, name, _check_scalar(name, getattr(self, name)))
        for name in ("brightness", "gamma"):
            object.__setattr__(self, name, _check_pair(name, getattr(self, name)))
        for name in ("horizontal_flip", "vertical_flip"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {v!r}")
            object.__setattr__(self, name, bool(v))
        if self.vertical_flip:
            raise ValueError(_VFLIP_MESSAGE)

    # -- derived -----------------------------------------------------------------------------
    @property
    def geometric(self) -> bool:
        """True when the policy moves pixels (masks must follow)."""
        return bool(self.rotation or self.zoom or self.shift or self.crop or self.horizontal_flip)

    @property
    def intensity(self) -> bool:
        """True when the policy changes pixel values (masks are left alone)."""
        return self.brightness != (1.0, 1.0) or self.gamma != (1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        return not (self.geometric or self.intensity)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("brightness", "gamma"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AugmentPolicy":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AugmentPolicy field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**dict(d))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "AugmentPolicy":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "AugmentPolicy":
        """A copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def preset(cls, name: str) -> "AugmentPolicy":
        """A named policy from `PRESETS` ("none", "default", "article002", "article003", "article004")."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown augmentation preset {name!r}; choose one of {sorted(PRESETS)}") from None


_OFF = dict(rotation=0.0, zoom=0.0, shift=0.0, brightness=(1.0, 1.0), gamma=(1.0, 1.0), crop=0.0)

#: Named policies. Each reproduces a reference article's settings (see PRESET_SOURCES).
PRESETS: dict[str, AugmentPolicy] = {
    # Identity: both executors return the input unchanged.
    "none": AugmentPolicy(**_OFF),
    # Mild and safe for any CXR task: the training default.
    "default": AugmentPolicy(),
    # Article 002 (pneumonia, 4-block CNN): "rotation 20 degrees and zoom 30 %" were the final
    # augmentations; experiment IV added brightness 70 %-130 % (after a PLOS ONE paper).
    "article002": AugmentPolicy(**{**_OFF, "rotation": 20.0, "zoom": 0.3, "brightness": (0.7, 1.3)}),
    # Article 003 (ImageDataGenerator): rotation_range=10, width/height_shift_range=0 ("X-rays are
    # always centred"), vertical_flip=False ("very unlikely to get a vertically flipped X-ray").
    "article003": AugmentPolicy(**{**_OFF, "rotation": 10.0}),
    # Article 004 (COVID-19, VGG16, imgaug): gamma contrast "to change the intensity of the white
    # pixels" and random crops, "so the model does not just count white pixels". The article gives
    # no numbers; we use imgaug's documented example ranges, GammaContrast((0.5, 2.0)) and
    # Crop(percent=(0, 0.1)).
    "article004": AugmentPolicy(**{**_OFF, "gamma": (0.5, 2.0), "crop": 0.1}),
}

PRESET_SOURCES: dict[str, str] = {
    "none": "no augmentation (identity)",
    "default": "cxrnb default: mild rotation/zoom/crop, exposure and gamma; no shift, no flips",
    "article002": "article 002: rotation 20 deg, zoom 30 %, brightness 70-130 %",
    "article003": "article 003: ImageDataGenerator(rotation_range=10, shifts 0, vertical_flip=False)",
    "article004": "article 004: imgaug GammaContrast + random Crop (values: imgaug's documented examples)",
}


def describe(policy: AugmentPolicy | str = "default"):
    """A table (pandas DataFrame) of the policy for a notebook: field, value, what it simulates, and
    why it is safe (or not) for chest X-rays."""
    import pandas as pd

    p = AugmentPolicy.preset(policy) if isinstance(policy, str) else policy
    rows = [
        ("rotation", f"±{p.rotation:g}°", "patient tilted on the detector",
         "safe up to ~20° (seen on real films); beyond 45° refused"),
        ("zoom", f"±{p.zoom:.0%}", "source-detector distance, patient size",
         "safe while both lungs stay in the field (<= 50 %)"),
        ("shift", f"±{p.shift:.0%}", "patient off-centre",
         "off by default: films are centred on the chest (article 003)"),
        ("brightness", f"×{p.brightness[0]:g}-{p.brightness[1]:g}", "exposure (mAs) differences",
         "safe; a factor near 0 would erase the image"),
        ("gamma", f"γ {p.gamma[0]:g}-{p.gamma[1]:g}", "detector response / kVp / post-processing",
         "safe; changes how white bone and consolidation look (article 004)"),
        ("crop", f"≤{p.crop:.0%} per side", "collimation, tighter framing",
         "safe while small; large crops cut the costophrenic angles"),
        ("horizontal_flip", str(p.horizontal_flip), "(nothing real)",
         "unsafe: mimics dextrocardia, L/R markers then lie; off by default"),
        ("vertical_flip", str(p.vertical_flip), "(nothing real)",
         "refused: patients are never upside down on a chest X-ray"),
    ]
    return pd.DataFrame(rows, columns=["field", "value", "simulates", "for chest X-rays"])


# =============================================================================================
# Keras executor
# =============================================================================================

def _batch_seed(seed: int | None, offset: int) -> int | None:
    return None if seed is None else int(seed) * 1000 + offset


class _CXRLayer(keras.layers.Layer):
    """Base of the custom layers: the Keras 3 image-preprocessing protocol
    (`get_random_transformation` / `transform_images` / `transform_segmentation_masks`), which
    `CXRAugment` drives."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _uniform(self, images, low, high, seed=None, extra: tuple = ()):
        b = ops.shape(images)[0]
        if seed is None or isinstance(seed, (int, keras.random.SeedGenerator)):
            return keras.random.uniform((b, *extra), minval=low, maxval=high,
                                        seed=self.generator if seed is None else seed)
        import tensorflow as tf  # an explicit (2,) seed tensor: stateless draw, order-independent

        return tf.random.stateless_uniform((b, *extra), seed=tf.cast(seed, tf.int64), minval=low, maxval=high)

    def transform_segmentation_masks(self, masks, transformation, training=True):
        return masks

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=True):
        t = self.get_random_transformation(inputs, training=training)
        return self.transform_images(inputs, t, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="cxrnb")
class RandomIntensityLUT(_CXRLayer):
    """Brightness then gamma as ONE per-image 256-entry lookup table on 8-bit pixel values.

    ``lut[v] = 255 * (clip(f * v, 0, 255) / 255) ** g`` with f ~ U(brightness), g ~ U(gamma)
    (imgaug's ``Multiply`` then ``GammaContrast``): one gather per pixel instead of a multiply, a
    clip and a ``pow``. Inputs are taken as
    0..255 integers: integer dtypes are used as they are, floats are rounded (as the imgaug
    executor rounds to uint8). ``lut[0] == 0``, so a black fill stays black. Returns float32.
    """

    def __init__(self, brightness=(1.0, 1.0), gamma=(1.0, 1.0), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.brightness = _check_pair("brightness", brightness)
        self.gamma = _check_pair("gamma", gamma)

    def get_random_transformation(self, images, training=True, seed=None):
        if not training:
            return None
        u = self._uniform(images, 0.0, 1.0, seed, (2,))
        (b0, b1), (g0, g1) = self.brightness, self.gamma
        factor = b0 + (b1 - b0) * u[:, :1]
        gamma = g0 + (g1 - g0) * u[:, 1:]
        v = ops.arange(256, dtype="float32")[None]  # (1, 256)
        x = ops.clip(v * factor, 0.0, 255.0) / 255.0
        return {"lut": ops.power(x, gamma) * 255.0}  # (B, 256)

    def transform_images(self, images, transformation, training=True):
        if not training or transformation is None:
            return ops.cast(images, self.compute_dtype)
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        if images.dtype == tf.uint8:
            idx = tf.cast(images, tf.int32)
        elif images.dtype.is_integer:
            idx = tf.clip_by_value(tf.cast(images, tf.int32), 0, 255)
        else:
            idx = tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.int32)
        lut = tf.cast(transformation["lut"], tf.float32)
        b = tf.shape(lut)[0]
        # one flat table: image i's entries start at 256 * i
        offset = tf.reshape(tf.range(b) * 256, tf.concat([[b], tf.ones([tf.rank(idx) - 1], tf.int32)], 0))
        return tf.gather(tf.reshape(lut, [-1]), idx + offset)

    def get_config(self):
        return {**super().get_config(), "brightness": list(self.brightness), "gamma": list(self.gamma)}


@keras.saving.register_keras_serializable(package="cxrnb")
class RandomCXRAffine(_CXRLayer):
    """Crop, rotation, zoom, shift and (optional) horizontal flip composed into ONE affine warp per
    image: one interpolation instead of one per Keras layer (sharper, and about 3x faster).

    Draws: crop fractions ~ U(0, crop) per side, angle ~
    U(-rotation, rotation) degrees, scale ~ U(1 - zoom, 1 + zoom) (>1 zooms out, as in Keras'
    ``RandomZoom``), shift ~ U(-shift, shift) of H and W, flip with probability 0.5. Outside: 0."""

    def __init__(self, rotation=0.0, zoom=0.0, shift=0.0, crop=0.0, horizontal_flip=False,
                 interpolation="bilinear", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rotation = _check_scalar("rotation", rotation)
        self.zoom = _check_scalar("zoom", zoom)
        self.shift = _check_scalar("shift", shift)
        self.crop = _check_scalar("crop", crop)
        self.horizontal_flip = bool(horizontal_flip)
        self.interpolation = interpolation

    def get_random_transformation(self, images, training=True, seed=None):
        if not training:
            return None
        shape = ops.shape(images)
        h, w = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
        u = self._uniform(images, 0.0, 1.0, seed, (9,))
        one, zero = ops.ones_like(u[:, 0]), ops.zeros_like(u[:, 0])
        top, bottom, left, right = (u[:, i] * self.crop for i in range(4))
        angle = (2.0 * u[:, 4] - 1.0) * (self.rotation * math.pi / 180.0)
        scale = 1.0 + (2.0 * u[:, 5] - 1.0) * self.zoom
        tx, ty = (2.0 * u[:, 6] - 1.0) * self.shift * w, (2.0 * u[:, 7] - 1.0) * self.shift * h
        flip = ops.cast(u[:, 8] < 0.5, "float32") if self.horizontal_flip else zero
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0

        def m3(a, b, c, d, e, f):  # rows (a b c), (d e f), (0 0 1) -> (B, 3, 3)
            return ops.reshape(ops.stack([a, b, c, d, e, f, zero, zero, one], axis=1), (-1, 3, 3))

        cos, sin = ops.cos(angle), ops.sin(angle)
        # each maps an output pixel (x, y) to where it samples its input; applied right to left
        crop_m = m3(1.0 - left - right, zero, left * w, zero, 1.0 - top - bottom, top * h)
        rot_m = m3(cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
        zoom_m = m3(scale, zero, cx * (1.0 - scale), zero, scale, cy * (1.0 - scale))
        shift_m = m3(one, zero, -tx, zero, one, -ty)
        flip_m = m3(1.0 - 2.0 * flip, zero, flip * (w - 1.0), zero, one, zero)
        m = ops.matmul(ops.matmul(ops.matmul(ops.matmul(crop_m, rot_m), zoom_m), shift_m), flip_m)
        return {"matrix": ops.reshape(m, (-1, 9))[:, :8]}

    def _warp(self, images, transformation, interpolation):
        return keras.ops.image.affine_transform(images, transformation["matrix"], interpolation=interpolation,
                                                fill_mode="constant", fill_value=0)

    def transform_images(self, images, transformation, training=True):
        images = ops.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        return self._warp(images, transformation, self.interpolation)

    def transform_segmentation_masks(self, masks, transformation, training=True):
        if not training or transformation is None:
            return masks
        return self._warp(masks, transformation, "nearest")

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom, "shift": self.shift,
                "crop": self.crop, "horizontal_flip": self.horizontal_flip,
                "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="cxrnb")
class CXRAugment(keras.layers.Layer):
    """The Keras executor of an `AugmentPolicy`: ``layer(images)`` or ``layer.with_masks(images, masks)``.

    `RandomIntensityLUT` (brightness, gamma) on the 8-bit input values, then one `RandomCXRAffine`
    warp (crop, rotation, zoom, shift, flip), then a clip to 0..255; integer (uint8) batches go to
    the lookup table as they are, float ones are rounded first. Sub-layers are seeded with
    ``seed * 1000 + k`` (k: 0 affine, 5 lookup table).
    ``training`` defaults to True (it is meant for the training branch of a tf.data pipeline);
    inside a model, Keras passes training=False at inference and the layer is the identity.
    """

    def __init__(self, policy: AugmentPolicy | Mapping | str = "default", seed: int | None = 0,
                 interpolation: str = "bilinear", **kwargs):
        if not kwargs.pop("fused", True):  # configs saved before the layer chain was removed
            raise ValueError("fused=False (the chain of Keras' own layers) was removed; "
                             "CXRAugment is always the fused lookup table + one warp")
        super().__init__(**kwargs)
        if isinstance(policy, str):
            policy = AugmentPolicy.preset(policy)
        elif isinstance(policy, Mapping):
            policy = AugmentPolicy.from_dict(policy)
        self.policy = policy
        self.seed = seed
        self.interpolation = interpolation
        self.intensity_layers = [RandomIntensityLUT(policy.brightness, policy.gamma, seed=_batch_seed(seed, 5),
                                                    name="intensity")] if policy.intensity else []
        self.geometric_layers = [RandomCXRAffine(policy.rotation, policy.zoom, policy.shift, policy.crop,
                                                 policy.horizontal_flip, interpolation=interpolation,
                                                 seed=_batch_seed(seed, 0), name="affine")] if policy.geometric else []

    @property
    def layers(self) -> list:
        """Sub-layers in the order they run: the intensity lookup table (on the 8-bit input
        values), then the one warp."""
        return [*self.intensity_layers, *self.geometric_layers]

    def _apply(self, images, masks=None, training=True, seed=None):
        images = ops.convert_to_tensor(images)
        rank = len(images.shape)
        if rank == 3:
            images = images[None]
            masks = None if masks is None else masks[None]
        m = None
        if masks is not None:
            mask_dtype = masks.dtype
            m = ops.cast(masks, "float32")
        # An integer (uint8) batch goes to the lookup table as it is; everything else is float32.
        x = images if training and self.intensity_layers else ops.cast(images, "float32")
        if training:
            geometric = set(map(id, self.geometric_layers))
            for i, layer in enumerate(self.layers):
                s = None
                if seed is not None:
                    import tensorflow as tf

                    s = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), i)
                t = layer.get_random_transformation(x, training=True) if s is None else \
                    layer.get_random_transformation(x, training=True, seed=s)
                x = layer.transform_images(x, t, training=True)
                if m is not None and id(layer) in geometric:
                    m = layer.transform_segmentation_masks(m, t, training=True)
            x = ops.clip(x, VALUE_RANGE[0], VALUE_RANGE[1])
        if m is not None:
            m = ops.cast(ops.round(m), mask_dtype)
        if rank == 3:
            x = x[0]
            m = None if m is None else m[0]
        return x, m

    def build(self, input_shape=None):
        for layer in self.layers:
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def call(self, images, training=True, seed=None):
        """`seed`: optional int (2,) tensor, e.g. ``tf.stack([epoch, step])``: draws then depend on
        it alone (stateless), not on call order - reproducible even under a parallel tf.data map."""
        return self._apply(images, None, training=training, seed=seed)[0]

    def with_masks(self, images, masks, training=True, seed=None):
        """(images, masks) with the same geometric transform; masks use nearest interpolation and
        skip intensity layers. `masks` is (B, H, W, K) (any dtype; values are kept)."""
        images = ops.convert_to_tensor(images)
        masks = ops.convert_to_tensor(masks)
        return self._apply(images, masks, training=training, seed=seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "policy": self.policy.to_dict(), "seed": self.seed,
                "interpolation": self.interpolation}

    def __repr__(self) -> str:
        return f"CXRAugment({self.policy!r}, seed={self.seed})"


def keras_augmenter(policy: AugmentPolicy | str = "default", *, seed: int | None = 0,
                    interpolation: str = "bilinear") -> CXRAugment:
    """The Keras executor: a layer mapping float32 (or uint8) (B, H, W, C) 0..255 batches to
    float32 0..255: one lookup table per image for brightness and gamma (`RandomIntensityLUT`),
    then one warp (`RandomCXRAffine`: crop, rotation, zoom, shift, flip in one matrix).

    `cxrnb.pipeline.make_dataset` runs it for you (in parallel, reproducibly). By hand, inside
    ``tf.data``: ``ds.map(lambda x, y: (aug(x), y))`` draws from the layers' seed state, which is
    reproducible only one batch at a time (``num_parallel_calls=None``): concurrent calls race for
    it. For a parallel *and* reproducible map, pass a per-batch seed:
    ``ds.enumerate().map(lambda i, x: aug(x, seed=tf.stack([epoch_or_0, i])), AUTOTUNE)``."""
    return CXRAugment(policy, seed=seed, interpolation=interpolation)


# =============================================================================================
# imgaug executor
# =============================================================================================

def imgaug_sequence(policy: AugmentPolicy | str = "default"):
    """The policy as an ``imgaug.augmenters.Sequential`` (uint8 images, 0..255).

    Crop(keep_size) -> Affine(rotate, scale, translate; constant 0 fill) -> Fliplr ->
    Multiply (brightness) -> GammaContrast (the Keras and OpenCV executors look the intensities up
    before their warp: the same up to interpolation)."""
    import imgaug.augmenters as iaa

    p = AugmentPolicy.preset(policy) if isinstance(policy, str) else policy
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
    """The imgaug executor: ``aug(images)`` on float32 (B, H, W, C) 0..255 tensors, usable in tf.data
    (through ``tf.numpy_function``), and ``aug.augment_numpy(images, masks=None)`` on arrays.

    Images are rounded to uint8 for imgaug (the pipeline's pixels are uint8 anyway). Draws come
    from one seeded imgaug random state, advanced call after call (a lock around the draw
    keeps concurrent tf.data calls from sharing one)."""

    def __init__(self, policy: AugmentPolicy | str = "default", seed: int | None = 0):
        self.policy = AugmentPolicy.preset(policy) if isinstance(policy, str) else policy
        self.seed = seed
        self.sequence = imgaug_sequence(self.policy)
        if seed is not None:
            self.sequence.seed_(int(seed))
        self._lock = threading.Lock()

    def _draw(self):
        # Only the draw of this call's random state is serialised; the pixel work runs unlocked,
        # so parallel tf.data calls overlap (OpenCV releases the GIL).
        with self._lock:
            return self.sequence.to_deterministic()

    def augment_numpy(self, images, masks=None):
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
            out = self._draw()(images=u8)
            out = np.asarray(out, np.float32)
            return out[0] if squeeze else out
        from imgaug.augmentables.segmaps import SegmentationMapsOnImage

        masks = np.asarray(masks)
        segs = [SegmentationMapsOnImage(m.astype(np.int32), shape=img.shape) for m, img in zip(masks, u8)]
        out, segs = self._draw()(images=u8, segmentation_maps=segs)
        out = np.asarray(out, np.float32)
        m_out = np.stack([s.get_arr() for s in segs]).reshape(masks.shape).astype(masks.dtype)
        return (out[0], m_out[0]) if squeeze else (out, m_out)

    def __call__(self, images):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        out = tf.numpy_function(lambda a: self.augment_numpy(a).astype(np.float32), [images], tf.float32,
                                stateful=True, name="imgaug_augment")
        return tf.ensure_shape(out, images.shape)

    def with_masks(self, images, masks):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        masks = tf.convert_to_tensor(masks)
        x, m = tf.numpy_function(lambda a, b: self.augment_numpy(a, b), [images, masks],
                                 [tf.float32, masks.dtype], stateful=True, name="imgaug_augment_masks")
        return tf.ensure_shape(x, images.shape), tf.ensure_shape(m, masks.shape)

    def __repr__(self) -> str:
        return f"ImgaugAugmenter({self.policy!r}, seed={self.seed})"


def imgaug_augmenter(policy: AugmentPolicy | str = "default", *, seed: int | None = 0) -> ImgaugAugmenter:
    """The imgaug executor of `policy` on the same batch contract as `keras_augmenter`."""
    return ImgaugAugmenter(policy, seed=seed)


# =============================================================================================
# OpenCV executor
# =============================================================================================

#: Uniform draws per image: (brightness, gamma), then (top, bottom, left, right, angle, scale,
#: shift x, shift y, flip) - the order of `RandomIntensityLUT` and `RandomCXRAffine`.
N_UNIFORMS = 11


def sample_transforms(policy: AugmentPolicy, u: np.ndarray, height: int, width: int
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-image parameters from uniforms `u` (B, `N_UNIFORMS`) in [0, 1), in numpy.

    Returns ``(lut, matrix)``: lut (B, 256) float32, ``255 * (clip(f * v, 0, 255) / 255) ** g``
    (None when the policy changes no intensity), and matrix (B, 2, 3) float64 mapping each
    output pixel (x, y, 1) to the input point it samples (None when nothing moves). The formulas
    are `RandomIntensityLUT`'s and `RandomCXRAffine`'s, so one uniform draw gives the Keras
    executor's parameters (tests/test_augment.py checks it)."""
    p, u = policy, np.asarray(u, np.float64)
    b = len(u)
    lut = None
    if p.intensity:
        (b0, b1), (g0, g1) = p.brightness, p.gamma
        f, g = b0 + (b1 - b0) * u[:, :1], g0 + (g1 - g0) * u[:, 1:2]
        lut = (np.power(np.clip(np.arange(256.0)[None] * f, 0.0, 255.0) / 255.0, g) * 255.0).astype(np.float32)
    if not p.geometric:
        return lut, None
    h, w = float(height), float(width)
    top, bottom, left, right = (u[:, 2 + i] * p.crop for i in range(4))
    angle = (2.0 * u[:, 6] - 1.0) * math.radians(p.rotation)
    scale = 1.0 + (2.0 * u[:, 7] - 1.0) * p.zoom
    tx, ty = (2.0 * u[:, 8] - 1.0) * p.shift * w, (2.0 * u[:, 9] - 1.0) * p.shift * h
    flip = (u[:, 10] < 0.5).astype(np.float64) if p.horizontal_flip else np.zeros(b)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    one, zero = np.ones(b), np.zeros(b)

    def m3(a, b_, c, d, e, f_):
        return np.stack([a, b_, c, d, e, f_, zero, zero, one], axis=1).reshape(-1, 3, 3)

    cos, sin = np.cos(angle), np.sin(angle)
    m = (m3(1.0 - left - right, zero, left * w, zero, 1.0 - top - bottom, top * h)
         @ m3(cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
         @ m3(scale, zero, cx * (1.0 - scale), zero, scale, cy * (1.0 - scale))
         @ m3(one, zero, -tx, zero, one, -ty)
         @ m3(1.0 - 2.0 * flip, zero, flip * (w - 1.0), zero, one, zero))
    return lut, m[:, :2]


_CV_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)}
_U64 = (1 << 64) - 1


class OpenCVAugmenter:
    """The OpenCV executor: ``aug(images, seed=None)`` on (B, H, W, C) uint8 or float32 0..255
    tensors (in tf.data, through ``tf.numpy_function``), ``aug.with_masks(images, masks, seed=None)``
    and ``aug.augment_numpy(images, masks=None, seed=None)`` on arrays. Returns float32 0..255.

    The Keras executor's computation: per image, `sample_transforms` parameters, one
    ``cv2.LUT`` with the float32 intensity table (floats are rounded to 0..255 integers for it,
    as the Keras executor does), then one ``cv2.warpAffine`` (bilinear for images, nearest for
    masks, constant 0 outside). Given the same draws the two agree to 0.05 gray level (tested;
    ~0.002 measured, float32 warps); what differs is only the random stream: OpenCV
    draws all `N_UNIFORMS` from one numpy Generator, Keras draws per layer from TF's stateless
    RNG, so the same seed gives different (equally distributed) draws.

    Draws: with ``seed`` (an int (2,) array or tensor, e.g. the pipeline's per-batch seed) they
    come from ``SeedSequence([self.seed, *seed])`` alone - reproducible whatever order parallel
    calls run in. Without, from the executor's own Generator seeded with ``self.seed``, advanced
    call after call (under a lock; the pixel work runs unlocked, and OpenCV releases the GIL)."""

    def __init__(self, policy: AugmentPolicy | Mapping | str = "default", seed: int | None = 0):
        if isinstance(policy, str):
            policy = AugmentPolicy.preset(policy)
        elif isinstance(policy, Mapping):
            policy = AugmentPolicy.from_dict(policy)
        self.policy = policy
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def _uniforms(self, n: int, seed) -> np.ndarray:
        if seed is None:
            with self._lock:
                return self._rng.random((n, N_UNIFORMS))
        entropy = ([] if self.seed is None else [int(self.seed) & _U64]) + \
            [int(v) & _U64 for v in np.asarray(seed).ravel()]
        return np.random.default_rng(np.random.SeedSequence(entropy)).random((n, N_UNIFORMS))

    def augment_numpy(self, images, masks=None, seed=None):
        """float32 images (and masks, same dtype, same geometric transform) as numpy arrays."""
        import cv2

        images = np.asarray(images)
        squeeze = images.ndim == 3
        if squeeze:
            images = images[None]
            masks = None if masks is None else np.asarray(masks)[None]
        if images.ndim != 4:
            raise ValueError(f"expected images (B, H, W, C), got shape {images.shape}")
        b, h, w, c = images.shape
        lut, mats = sample_transforms(self.policy, self._uniforms(b, seed), h, w)
        out = np.empty((b, h, w, c), np.float32)
        if lut is None and mats is None:
            out[...] = images
        else:
            if lut is not None:  # the lookup table indexes 8-bit values; floats are rounded first
                src = images if images.dtype == np.uint8 else np.clip(np.rint(images), 0, 255).astype(np.uint8)
            else:
                src = images.astype(np.float32, copy=False)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            for i in range(b):
                dst = out[i, ..., 0] if c == 1 else out[i]  # written in place: no copy per image
                x = np.ascontiguousarray(src[i])
                if mats is None:
                    cv2.LUT(x, lut[i], dst=dst)
                    continue
                x = x if lut is None else cv2.LUT(x, lut[i])
                cv2.warpAffine(x, mats[i], (w, h), dst=dst, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
        np.clip(out, *VALUE_RANGE, out=out)
        if masks is None:
            return out[0] if squeeze else out
        masks = np.asarray(masks)
        m_out = masks.copy()
        if mats is not None:
            work = masks.astype(np.uint8) if masks.dtype == bool else \
                masks if masks.dtype in _CV_DTYPES else masks.astype(np.float64)
            nearest = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
            for i in range(b):
                y = cv2.warpAffine(np.ascontiguousarray(work[i]), mats[i], (w, h), flags=nearest,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                m_out[i] = y.reshape(masks.shape[1:]).astype(masks.dtype)
        return (out[0], m_out[0]) if squeeze else (out, m_out)

    def __call__(self, images, seed=None):
        """Augment a batch tensor in the graph (``tf.numpy_function``); `seed`: optional int (2,)
        tensor, e.g. ``tf.stack([epoch_or_0, step])``, that alone fixes this call's draws."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            images = tf.cast(images, tf.float32)
        if seed is None:
            out = tf.numpy_function(lambda a: self.augment_numpy(a), [images], tf.float32,
                                    stateful=True, name="opencv_augment")
        else:
            out = tf.numpy_function(lambda a, s: self.augment_numpy(a, seed=s),
                                    [images, tf.cast(seed, tf.int64)], tf.float32, stateful=False,
                                    name="opencv_augment_seeded")
        return tf.ensure_shape(out, images.shape)

    def with_masks(self, images, masks, seed=None):
        """(images, masks) tensors with the same geometric transform (masks: nearest, values kept)."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            images = tf.cast(images, tf.float32)
        masks = tf.convert_to_tensor(masks)
        s = tf.constant([-1], tf.int64) if seed is None else tf.cast(seed, tf.int64)
        x, m = tf.numpy_function(
            lambda a, b_, s_: self.augment_numpy(a, b_, seed=None if seed is None else s_),
            [images, masks, s], [tf.float32, masks.dtype], stateful=seed is None, name="opencv_augment_masks")
        return tf.ensure_shape(x, images.shape), tf.ensure_shape(m, masks.shape)

    def __repr__(self) -> str:
        return f"OpenCVAugmenter({self.policy!r}, seed={self.seed})"


def opencv_augmenter(policy: AugmentPolicy | str = "default", *, seed: int | None = 0) -> OpenCVAugmenter:
    """The OpenCV executor of `policy` (see `OpenCVAugmenter`): the Keras executor's
    distributions and arithmetic at ~4x its rate on CPU (benchmarks/augment.py); `cxrnb.pipeline`'s
    default. Keep `keras_augmenter` for graphs that must not call Python (TPU, SavedModel)."""
    return OpenCVAugmenter(policy, seed=seed)


#: Executor name -> factory ``(policy, *, seed) -> augmenter`` (the names `make_augmenter`,
#: `augment_with_masks` and the pipeline's ``executor=`` accept).
EXECUTORS: dict[str, Callable[..., Any]] = {
    "keras": keras_augmenter, "opencv": opencv_augmenter, "imgaug": imgaug_augmenter}


def make_augmenter(policy: AugmentPolicy | str = "default", executor: str = "keras", *,
                   seed: int | None = 0):
    """The augmenter of `policy` (a policy or preset name) run by `executor` ("keras", "opencv", "imgaug")."""
    try:
        factory = EXECUTORS[executor]
    except KeyError:
        raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, got {executor!r}") from None
    return factory(policy, seed=seed)


def augment_with_masks(policy: AugmentPolicy | str, images, masks, *, seed: int | None = 0,
                       executor: str = "keras"):
    """Augment `images` (B, H, W, C) and `masks` (B, H, W, K) with the same geometric transform.

    Returns numpy arrays ``(images float32, masks with the input dtype)``."""
    aug = make_augmenter(policy, executor, seed=seed)
    if isinstance(aug, CXRAugment):
        x, m = aug.with_masks(np.asarray(images, np.float32), np.asarray(masks))
        return ops.convert_to_numpy(x), ops.convert_to_numpy(m)
    return aug.augment_numpy(images, masks)
