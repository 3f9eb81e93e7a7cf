"""From the index to training batches: a `tf.data` pipeline that decodes each file once.

    index --load_images--> uint8 (N, H, W) --> shuffle (seeded, per epoch) --> batch
          --> augment (training only, in-graph, per batch) --> /255 --> channels --> prefetch

Pixels come from `cxrnb.images`: at a model size S every path (no cache, a cache filled by
validation, a cache miss) gives the same array, `resize_gray(read_base(file, base_side(S)), S)`,
so 16-bit PNGs, CMYK/RGBA/palette images, lying extensions and JPEG reduced-size ("draft")
decoding come out exactly as validation saw them.

Why decode up front (`load_images`, a thread pool) instead of `map(numpy_function)` + `.cache()`:

* Speed is about the same for the first epoch (`benchmarks/pipeline.py` compares the two): a
  first epoch is decoding, and PIL releases the GIL while it decodes, so a thread pool keeps
  every core busy just as a parallel `numpy_function` map does. Later epochs decode nothing:
  each batch is one `tf.gather` of shuffled indices from a uint8 tensor, so their rate is the
  augmenter's.
* Memory. `.cache()` followed by `.shuffle(N)` keeps a second copy of every image in the
  shuffle buffer (or shuffles only within a window); shuffling indices keeps one copy and a
  true global shuffle. 224 x 224 uint8 is 49 KB per image, so 5,000 images take 250 MB and
  all 112,120 NIH images 5.6 GB. For sets that do not fit, `in_memory=False` streams the
  pixels from an on-disk `ImageCache`, shuffling the file order first (again global, again
  no buffer of images - which `.cache(filename)` followed by `.shuffle` cannot give).
* Errors. A file that fails to decode raises `cxrnb.images.ImageError` naming the file and the
  index row, in Python, with a progress bar, before TensorFlow runs - not a
  `tf.errors.InvalidArgumentError` with a Python traceback pasted into it, raised from deep
  inside `model.fit` (which is what `in_memory=False` gives for a file that breaks later;
  its message still starts with the file's path).

Zero decodes: validation (`cxrnb.validate.load_index(..., cache=...)`) already decodes every
image once and stores its base image; given the same cache (or its folder), `load_images`
resizes those bases instead of decoding, at any model size up to `cxrnb.images.BASE_SIDE`
(entries are keyed by file, size and mtime, so an edited file is decoded again, never served
stale).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .images import ImageCache, ImageError, map_threads, read_gray
from .index import SPLITS, check_index, image_paths

if TYPE_CHECKING:
    from .augment import AugmentPolicy

#: Smallest image side the pipeline accepts (as `cxrnb.images.MIN_SIDE`).
MIN_IMAGE_SIZE = 32
LABEL_MODES = ("int", "categorical", "binary")

Augmenter = Callable[..., object]  # float32 (B, H, W, C) in 0..255 -> same shape, in-graph
#: Executor of a preset name / `AugmentPolicy` given as `augment`: OpenCV is several times the
#: Keras executor's rate on CPU (see the README's Performance section), with the same draws'
#: distributions and arithmetic. Pass executor="keras" for a graph without Python (TPU, SavedModel).
DEFAULT_EXECUTOR = "opencv"


# --------------------------------------------------------------------------- checks and labels

def _target(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        hw = (int(image_size), int(image_size))
    else:
        hw = tuple(int(s) for s in image_size)
        if len(hw) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    if min(hw) < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size {image_size!r} is too small: need at least {MIN_IMAGE_SIZE} px a side")
    return hw  # type: ignore[return-value]


def _check(index: pd.DataFrame, where: str = "index") -> None:
    if not isinstance(index, pd.DataFrame):
        raise TypeError(f"{where} must be a pandas DataFrame (see cxrnb.index), got {type(index).__name__}")
    if len(index) == 0:
        raise ValueError(f"{where} is empty: no images to build a dataset from")
    check_index(index, where=where)


def labels_to_ids(labels: Sequence[str] | pd.Series, classes: Sequence[str]) -> np.ndarray:
    """Class ids (int32, position in `classes`) of `labels`; a clear error names unknown labels and rows."""
    classes = list(classes)
    if not classes:
        raise ValueError("classes is empty: give the class names in model-output order")
    dups = sorted({c for c in classes if classes.count(c) > 1})
    if dups:
        raise ValueError(f"classes has duplicates {dups}: {classes}")
    s = labels if isinstance(labels, pd.Series) else pd.Series(list(labels))
    lookup = {c: i for i, c in enumerate(classes)}
    ids = s.astype(str).map(lookup)
    unknown = ids.isna()
    if unknown.any():
        counts = s[unknown].astype(str).value_counts()
        rows = list(s.index[unknown][:5])
        raise ValueError(
            f"label(s) not in classes {classes}: "
            + ", ".join(f"{k!r} ({v} rows)" for k, v in counts.items())
            + f"; first rows: {rows}. Map labels with the task options or pass every class.")
    return ids.to_numpy(dtype=np.int32)


# --------------------------------------------------------------------------- decoding

def _as_cache(cache: ImageCache | str | Path | None) -> ImageCache | None:
    if cache is None or isinstance(cache, ImageCache):
        return cache
    return ImageCache(cache)


def _read_one(path: Path, hw: tuple[int, int], cache: ImageCache | None) -> np.ndarray:
    """Pixels of one file at `hw`: from the cache's base image when it has one (validation's,
    whatever size it was asked for), else decoded (and the base stored)."""
    return read_gray(path, hw)[0] if cache is None else cache.read(path, hw)


def _with_row(e: ImageError, row: object) -> ImageError:
    return ImageError(e.path, e.reason, f"{e.detail} (index row {row!r}; "
                      "cxrnb.validate drops unusable files before training)")


def load_images(
    index: pd.DataFrame,
    image_size: int | tuple[int, int],
    *,
    cache: ImageCache | str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Decode every image of `index` to a (N, H, W) uint8 array, in index order.

    Files are decoded by `cxrnb.images` in a thread pool (`map_threads`). With `cache` (an
    `ImageCache` or a folder), stored base images are resized instead of decoding, and misses
    are stored. A bad file raises `ImageError` naming it and its index row.
    """
    _check(index)
    hw = _target(image_size)
    cache = _as_cache(cache)
    paths = image_paths(index)
    out = np.empty((len(paths), *hw), dtype=np.uint8)

    def work(i: int) -> None:
        try:
            out[i] = _read_one(paths[i], hw, cache)
        except ImageError as e:
            raise _with_row(e, index.index[i]) from None

    map_threads(work, range(len(paths)), desc="decode", progress=progress, workers=workers, leave=False)
    return out


# --------------------------------------------------------------------------- tf.data

def model_input(images: np.ndarray, channels: int | None = 1) -> np.ndarray:
    """Films as a model takes them: float32 (N, H, W, channels) in [0, 1], gray repeated for 3
    channels, the same values `make_dataset` feeds (uint8 is scaled by 1/255; float input, already
    scaled, only gains its channel axis)."""
    x = np.asarray(images)
    x = x.astype(np.float32) * np.float32(1.0 / 255.0) if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
    if x.ndim == 3:
        x = x[..., None]
    if channels not in (None, x.shape[-1]) and x.shape[-1] == 1:
        x = np.repeat(x, channels, axis=-1)
    return x


def _resolve_augment(augment: Augmenter | str | AugmentPolicy | None, seed: int,
                     executor: str) -> Augmenter | None:
    """A callable augmenter; a preset name (e.g. "default") or an `AugmentPolicy` is run by
    `executor` ("opencv", "keras" or "imgaug", see `cxrnb.augment.EXECUTORS`) seeded with `seed`."""
    if augment is None or callable(augment):
        return augment
    from . import augment as aug  # written alongside; imported only when asked for

    if isinstance(augment, (str, aug.AugmentPolicy)):
        return aug.make_augmenter(augment, executor, seed=seed)
    raise TypeError(f"augment must be a callable, a preset name, an AugmentPolicy or None, "
                    f"got {type(augment).__name__}")


def _seedable(augment: Augmenter) -> bool:
    """True for an augmenter that takes a per-batch ``seed`` tensor: one that follows the
    `cxrnb.augment.Augmenter` protocol, as every executor does; a plain callable does not."""
    from . import augment as aug

    return isinstance(augment, aug.Augmenter)


def _check_augment(augment: Augmenter, hw: tuple[int, int], seeded: bool = False) -> None:
    """Call the augmenter once on a small batch so a broken one fails here, not inside fit()."""
    import tensorflow as tf

    probe = tf.fill((2, *hw, 1), 128.0)
    try:
        y = augment(tf.cast(probe, tf.uint8), seed=tf.constant([0, 0], tf.int64)) if seeded else augment(probe)
    except Exception as e:
        raise ValueError(f"augment {augment!r} failed on a float32 batch of shape {tuple(probe.shape)}: "
                         f"{type(e).__name__}: {e}") from e
    shape = tuple(getattr(y, "shape", ()))
    if shape != tuple(probe.shape):
        raise ValueError(f"augment must return the batch shape {tuple(probe.shape)}, returned {shape}")


def make_dataset(
    index: pd.DataFrame,
    classes: Sequence[str],
    *,
    image_size: int = 224,
    batch_size: int = 32,
    channels: int = 1,
    training: bool = False,
    augment: Augmenter | str | AugmentPolicy | None = None,
    executor: str = DEFAULT_EXECUTOR,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: ImageCache | str | Path | None = None,
    in_memory: bool = True,
    label_mode: str = "int",
    drop_remainder: bool = False,
    deterministic: bool = True,
    workers: int | None = None,
    progress: bool = True,
):
    """A `tf.data.Dataset` of `(images, labels)` batches for `model.fit` / `evaluate` / `predict`.

    images: float32 (B, image_size, image_size, channels) in [0, 1]; `channels=3` repeats the
    gray channel for backbones that want RGB. labels (`label_mode`): "int" -> int32 class ids
    (position in `classes`), "categorical" -> one-hot float32 (B, K), "binary" -> float32
    (B, 1) with `classes[1]` as 1 (two classes only).

    `training=True` shuffles (unless `shuffle=False`) and applies `augment` - a callable on a
    float32 (B, H, W, 1) batch in 0..255, or a `cxrnb.augment` preset name or `AugmentPolicy`,
    run by `executor` - per batch inside the pipeline; without `training` the augmenter is
    ignored, so the same keyword arguments serve train, val and test. `executor` defaults to
    "opencv" (`cxrnb.augment.opencv_augmenter`: cv2.LUT + one cv2.warpAffine per image through
    ``tf.numpy_function``, several times the rate of the in-graph TF warp on CPU); "keras" (`keras_augmenter`, the same policy, distributions and
    arithmetic, pure TF ops) is for graphs that must not call Python (TPU, SavedModel).
    `seed` fixes the shuffle order (a new order each epoch, the same sequence of orders each run)
    and the augmentation draws. Every executor (OpenCV, Keras, imgaug) gets a per-batch seed,
    ``[its own seed, a number drawn for the batch from `seed`]`` (new numbers each epoch, the
    same each run), so batches are augmented in parallel and still identically in every run.
    `deterministic` only matters for a plain callable, which takes no seed: True augments one
    batch at a time, so its draws land on the same batches every run; False augments in
    parallel (faster, run-dependent order).

    Images are decoded once, up front (`load_images`; `cache` skips decoding what validation
    already decoded). `in_memory=False` instead streams the pixels from the on-disk `cache`
    each epoch, for sets larger than RAM (the cache is then required).
    """
    import tensorflow as tf

    _check(index)
    hw = _target(image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (gray repeated, for RGB backbones), got {channels}")
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    classes = list(classes)
    if label_mode == "binary" and len(classes) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, got {len(classes)}: {classes}; "
                         "use 'int' or 'categorical'")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    ids = labels_to_ids(index["label"], classes)
    shuffle = training if shuffle is None else shuffle
    augment = _resolve_augment(augment, seed, executor) if training else None
    seeded = augment is not None and _seedable(augment)
    if augment is not None:
        _check_augment(augment, hw, seeded)
    n, k = len(index), len(classes)

    if in_memory:
        images = tf.convert_to_tensor(load_images(index, hw, cache=cache, workers=workers, progress=progress))
        labels = tf.convert_to_tensor(ids)

        def take(idx):
            return tf.gather(images, idx), tf.gather(labels, idx)

        order = tf.data.Dataset.range(n)
        if shuffle:
            order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = order.batch(batch_size, drop_remainder=drop_remainder).map(take, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        cache = _as_cache(cache)
        if cache is None:
            raise ValueError("in_memory=False streams decoded pixels from an on-disk ImageCache: pass "
                             "cache=<folder> (or keep in_memory=True)")
        paths = image_paths(index)
        missing = [(row, str(p)) for row, p in zip(index.index, paths) if not p.is_file()]
        if missing:
            raise ImageError(missing[0][1], "missing file", f"listed in the index (row {missing[0][0]!r}) "
                             f"but not on disk; {len(missing)} missing in all")

        def read(path: bytes) -> np.ndarray:
            # An ImageError raised here reaches the user as a tf.errors.InvalidArgumentError whose
            # message starts with the ImageError text, i.e. with the file's path.
            return _read_one(Path(path.decode()), hw, cache)

        def load(path, label):
            img = tf.numpy_function(read, [path], tf.uint8, stateful=False)
            return tf.ensure_shape(img, hw), label

        ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], ids))
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(load, num_parallel_calls=workers or tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    # ds: (uint8 (B, H, W), labels) batches
    def finish(x, y):
        x = x * (1.0 / 255.0)
        if channels == 3:
            x = tf.tile(x, [1, 1, 1, 3])
        if label_mode == "categorical":
            y = tf.one_hot(y, k, dtype=tf.float32)
        elif label_mode == "binary":
            y = tf.cast(y, tf.float32)[:, None]
        return x, y

    if augment is None:
        ds = ds.map(lambda x, y: finish(tf.cast(x, tf.float32)[..., None], y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # Every executor draws from a per-batch seed, statelessly: the batch's draw does not depend
        # on which parallel call runs first, so the map is parallel and reproducible.
        # Dataset.random gives each batch a number, a new sequence each epoch, the same sequences
        # each run. A plain callable ignores it; its random layers advance a seed state per call,
        # so it runs one call at a time (`deterministic`): parallel calls would race for the state.
        own = getattr(augment, "seed", None)
        base = tf.constant(np.random.randint(2**31) if own is None else int(own), tf.int64)

        def augment_batch(batch, r):
            x, y = batch  # the uint8 batch goes straight to an executor's lookup table
            out = augment(x[..., None], seed=tf.stack([base, r])) if seeded else augment(tf.cast(x, tf.float32)[..., None])
            return finish(tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 255.0), y)

        parallel = seeded or not deterministic
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))
        ds = ds.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE if parallel else None, deterministic=True)
    # The graph is already what tf.data's static rewrites would make of it (parallel maps, a
    # final prefetch); skipping them halves the wait for the first batch and changes no value.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def make_datasets(
    index: pd.DataFrame,
    classes: Sequence[str],
    *,
    split_column: str = "split",
    **kwargs,
) -> Mapping[str, object]:
    """{split: dataset} for an index with a `split` column; only "train" is built with `training=True`.

    `kwargs` go to `make_dataset` (the augmenter, and its `executor`, apply to the train split only).
    """
    if split_column not in index.columns:
        raise ValueError(f"index has no {split_column!r} column: split it first (cxrnb.splits)")
    kwargs.pop("training", None)
    names = [s for s in SPLITS if (index[split_column] == s).any()]
    names += sorted(set(index[split_column].astype(str)) - set(names))
    return {name: make_dataset(index[index[split_column] == name], classes, training=(name == "train"), **kwargs)
            for name in names}


def load_masks(index: pd.DataFrame, image_size: int | tuple[int, int]
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Lung and lesion masks of the rows, uint8 (N, H, W) in {0, 255} at the model's size, or
    (None, None) when the source has none. The synthetic set ships both; a box-carrying source
    (rsna-pneumonia) gives (None, lesion masks from its radiologists' boxes).

    Masks are resized with nearest-neighbour sampling: a mask is a set of pixels, not an image.
    """
    if not {"lung_mask", "lesion_mask"} <= set(index.columns) or index["lung_mask"].isna().any():
        from .radiology import box_masks

        return None, box_masks(index, _target(image_size))
    from PIL import Image

    h, w = _target(image_size)

    def read(rel: str, root: str) -> np.ndarray:
        with Image.open(Path(root) / rel) as im:
            return (np.asarray(im.convert("L").resize((w, h), Image.Resampling.NEAREST)) > 127).astype(np.uint8) * 255

    roots = index["root"].astype(str)
    return tuple(np.stack([read(m, r) for m, r in zip(index[col].astype(str), roots)]) if len(index)
                 else np.zeros((0, h, w), np.uint8) for col in ("lung_mask", "lesion_mask"))
