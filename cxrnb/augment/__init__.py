"""Chest X-ray augmentation: one declarative policy, three executors.

    AugmentPolicy (policy.py: frozen dataclass, JSON, presets)
        -> transforms.py: per-image lookup table + 2x3 affine matrix, TF ops, one draw per batch
            -> keras_executor.py   CXRAugment: TF gather + one warp, in the tf.data graph
            -> opencv_executor.py  OpenCVAugmenter: cv2.LUT + cv2.warpAffine via tf.numpy_function
        -> imgaug_executor.py      ImgaugAugmenter: an imgaug Sequential via tf.numpy_function

The policy says *what* may vary (small rotation, zoom, shift, exposure, gamma contrast, a random
crop) and refuses what never happens on a chest radiograph (vertical flip). All executors take
the same batch contract: ``(B, H, W, C)`` uint8 or float32 in 0..255, returned as float32 of the
same shape, clipped to 0..255. Pixels from outside the image are filled with 0 (black, like the
film border), never reflected: a reflected rib cage or a mirrored shoulder is fake anatomy.

Every executor has one interface (`Augmenter`): ``aug(images, seed=None)``,
``aug.with_masks(images, masks, seed=None)`` and ``aug.augment_numpy(images, masks=None,
seed=None)``. Given a per-batch ``seed`` tensor their draws are stateless, so a parallel tf.data
map is reproducible (`cxrnb.pipeline.make_dataset` has one augmentation path for all three). The
Keras and OpenCV executors share their draws and arithmetic: the same seed gives the same pixels
(up to the warps' rounding); the imgaug executor draws from imgaug's own random streams, seeded
from the same numbers.

Masks (lung, lesion) go through exactly the same geometric transform when asked
(``augmenter.with_masks(images, masks)`` or `augment_with_masks`), with nearest-neighbour
interpolation and no intensity change, so augmented masks stay aligned with augmented images.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from .imgaug_executor import ImgaugAugmenter, imgaug_augmenter, imgaug_sequence
from .keras_executor import CXRAugment, keras_augmenter
from .opencv_executor import OpenCVAugmenter, apply_transforms, opencv_augmenter
from .policy import BOUNDS, PRESET_SOURCES, PRESETS, VALUE_RANGE, AugmentPolicy, as_policy, describe
from .transforms import N_UNIFORMS, draw_uniforms, sample_transforms

__all__ = [
    "AugmentPolicy", "PRESETS", "PRESET_SOURCES", "BOUNDS", "VALUE_RANGE", "as_policy", "describe",
    "N_UNIFORMS", "draw_uniforms", "sample_transforms",
    "CXRAugment", "keras_augmenter", "OpenCVAugmenter", "opencv_augmenter", "apply_transforms",
    "ImgaugAugmenter", "imgaug_augmenter", "imgaug_sequence",
    "Augmenter", "EXECUTORS", "make_augmenter", "augment_with_masks",
]

@runtime_checkable
class Augmenter(Protocol):
    """What every executor is: seeded by `seed` (its own), called per batch with an optional
    per-batch ``seed`` (int (2,)); images (B, H, W, C) uint8 or float32 0..255 in, float32 0..255
    out; masks (B, H, W, K) through the same geometric transform, nearest-neighbour."""

    seed: int | None

    def __call__(self, images, seed=None): ...

    def with_masks(self, images, masks, seed=None): ...

    def augment_numpy(self, images, masks=None, seed=None): ...


#: Executor name -> factory ``(policy, *, seed) -> augmenter`` (the names `make_augmenter`,
#: `augment_with_masks` and the pipeline's ``executor=`` accept).
EXECUTORS: dict[str, Callable[..., Any]] = {
    "keras": keras_augmenter, "opencv": opencv_augmenter, "imgaug": imgaug_augmenter}


def make_augmenter(policy: AugmentPolicy | Mapping | str = "default", executor: str = "keras", *,
                   seed: int | None = 0):
    """The augmenter of `policy` (a policy or preset name) run by `executor` ("keras", "opencv", "imgaug")."""
    try:
        factory = EXECUTORS[executor]
    except KeyError:
        raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, got {executor!r}") from None
    return factory(policy, seed=seed)


def augment_with_masks(policy: AugmentPolicy | Mapping | str, images, masks, *, seed: int | None = 0,
                       executor: str = "keras"):
    """Augment `images` (B, H, W, C) and `masks` (B, H, W, K) with the same geometric transform.

    Returns numpy arrays ``(images float32, masks with the input dtype)``."""
    return make_augmenter(policy, executor, seed=seed).augment_numpy(images, masks)
