"""cxrnb.pipeline: index -> decoded-once uint8 -> shuffled, augmented, normalised batches."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tensorflow as tf

import cxrnb.augment as aug
import cxrnb.images as images
import cxrnb.pipeline as pipeline
from cxrnb.images import ImageCache, ImageError, read_gray
from cxrnb.pipeline import labels_to_ids, load_images, make_dataset, make_datasets

CLASSES = ["normal", "pneumonia"]


def picture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = 120 + 80 * np.sin(6 * x + seed) * np.cos(4 * y) + rng.normal(0, 10, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_index(root: Path, n: int = 24, size: int = 80, fmt: str = "png") -> pd.DataFrame:
    rows = []
    for i in range(n):
        label = CLASSES[i % 2]
        rel = f"{label}/img{i:03d}.{fmt}"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture(size + (i % 3) * 8, i)).save(root / rel)
        rows.append({"path": rel, "label": label, "patient_id": f"p{i // 2}", "view": "PA",
                     "source": "test", "root": str(root)})
    return pd.DataFrame(rows)


@pytest.fixture
def index(tmp_path: Path) -> pd.DataFrame:
    return make_index(tmp_path / "data")


@pytest.fixture
def count_decodes(monkeypatch):
    """Wrap cxrnb's one decoder (`images.read_base`) with a counter; returns the decoded paths."""
    calls: list[str] = []
    real = images.read_base

    def counting(path, *a, **kw):
        calls.append(str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(images, "read_base", counting)
    return calls


def batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


# --------------------------------------------------------------------------- shapes and values

def test_batches_have_shapes_dtypes_and_unit_range(index):
    ds = make_dataset(index, CLASSES, image_size=64, batch_size=8, progress=False)
    out = batches(ds)
    assert len(out) == len(ds) == 3
    for x, y in out:
        assert x.dtype == np.float32 and x.shape == (8, 64, 64, 1)
        assert y.dtype == np.int32 and y.shape == (8,)
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert max(x.max() for x, _ in out) > 0.5  # normalised, not all black


def test_unshuffled_order_and_labels_follow_the_index(index):
    ds = make_dataset(index, CLASSES, image_size=64, batch_size=5, progress=False)
    x = np.concatenate([b[0] for b in batches(ds)])
    y = np.concatenate([b[1] for b in batches(ds)])
    np.testing.assert_array_equal(y, labels_to_ids(index["label"], CLASSES))
    expected = load_images(index, 64, progress=False)
    np.testing.assert_array_equal(np.round(x[..., 0] * 255).astype(np.uint8), expected)


def test_three_channels_repeat_the_gray_channel(index):
    x, _ = next(iter(make_dataset(index, CLASSES, image_size=64, channels=3, progress=False)))
    x = x.numpy()
    assert x.shape[-1] == 3
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_label_modes(index):
    ids = labels_to_ids(index["label"], CLASSES)
    _, y = next(iter(make_dataset(index, CLASSES, image_size=32, batch_size=6, label_mode="categorical",
                                  progress=False)))
    assert y.dtype == tf.float32 and y.shape == (6, 2)
    np.testing.assert_array_equal(y.numpy(), np.eye(2, dtype=np.float32)[ids[:6]])
    _, y = next(iter(make_dataset(index, CLASSES, image_size=32, batch_size=6, label_mode="binary",
                                  progress=False)))
    assert y.dtype == tf.float32 and y.shape == (6, 1)
    np.testing.assert_array_equal(y.numpy()[:, 0], ids[:6].astype(np.float32))  # classes[1] is 1


def test_batch_count_and_drop_remainder(index):
    assert len(batches(make_dataset(index, CLASSES, image_size=32, batch_size=10, progress=False))) == 3
    ds = make_dataset(index, CLASSES, image_size=32, batch_size=10, drop_remainder=True, progress=False)
    out = batches(ds)
    assert len(out) == 2 and all(x.shape[0] == 10 for x, _ in out)
    assert ds.element_spec[0].shape[0] == 10  # static batch size, as some models want


# --------------------------------------------------------------------------- shuffling and seeds

def _order(ds) -> np.ndarray:
    # image means identify images uniquely here
    return np.concatenate([x.mean(axis=(1, 2, 3)) for x, _ in batches(ds)])


def test_shuffle_is_seeded_and_reshuffles_each_epoch(index):
    a = make_dataset(index, CLASSES, image_size=32, batch_size=8, training=True, seed=1, progress=False)
    b = make_dataset(index, CLASSES, image_size=32, batch_size=8, training=True, seed=1, progress=False)
    c = make_dataset(index, CLASSES, image_size=32, batch_size=8, training=True, seed=2, progress=False)
    plain = make_dataset(index, CLASSES, image_size=32, batch_size=8, progress=False)
    a1, a2 = _order(a), _order(a)
    np.testing.assert_array_equal(a1, _order(b))                   # same seed, same batches
    assert not np.array_equal(a1, _order(c))                       # other seed, other order
    assert not np.array_equal(a1, a2)                              # a new order each epoch
    np.testing.assert_array_equal(np.sort(a1), np.sort(_order(plain)))  # same images, all of them
    assert not np.array_equal(a1, _order(plain))
    noshuffle = make_dataset(index, CLASSES, image_size=32, batch_size=8, training=True, shuffle=False,
                             progress=False)
    np.testing.assert_array_equal(_order(noshuffle), _order(plain))


# --------------------------------------------------------------------------- decoding = read_gray

def test_pixels_match_read_gray_for_16bit_rgba_and_palette_png(tmp_path):
    root = tmp_path / "odd"
    root.mkdir()
    g = picture(96, 3).astype(np.uint16) * 16  # 12-bit detector data in a 16-bit PNG
    Image.fromarray(g).save(root / "deep.png")
    rgba = np.dstack([picture(96, 4), picture(96, 5), picture(96, 6), np.full((96, 96), 90, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    Image.fromarray(picture(96, 7)).convert("P").save(root / "palette.png")
    Image.fromarray(picture(120, 8)).save(root / "lying.png", format="JPEG")  # a JPEG named .png
    names = ["deep.png", "alpha.png", "palette.png", "lying.png"]
    index = pd.DataFrame({"path": names, "label": "normal", "patient_id": ["a", "b", "c", "d"],
                          "view": "PA", "source": "t", "root": str(root)})
    assert Image.open(root / "deep.png").mode.startswith("I")
    x = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, image_size=64, progress=False))])
    got = np.round(x[..., 0] * 255).astype(np.uint8)
    for i, name in enumerate(names):
        np.testing.assert_array_equal(got[i], read_gray(root / name, 64)[0], err_msg=name)


# --------------------------------------------------------------------------- caching

def test_second_load_with_the_same_image_cache_does_not_decode(index, tmp_path, monkeypatch):
    cache = ImageCache(tmp_path / "cache", 64)
    first = load_images(index, 64, cache=cache, progress=False)
    np.testing.assert_array_equal(first, load_images(index, 64, progress=False))

    def refuse(*a, **kw):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(images, "read_base", refuse)
    np.testing.assert_array_equal(load_images(index, 64, cache=cache, progress=False), first)
    # a folder works as well as an ImageCache, and so does a dataset built on it
    np.testing.assert_array_equal(load_images(index, 64, cache=tmp_path / "cache", progress=False), first)
    assert len(batches(make_dataset(index, CLASSES, image_size=64, cache=tmp_path / "cache",
                                    progress=False))) == 1


def test_stale_cache_entries_are_not_used_after_a_file_changes(index, tmp_path):
    cache = ImageCache(tmp_path / "cache", 64)
    before = load_images(index, 64, cache=cache, progress=False)
    changed = Path(index["root"][0]) / index["path"][0]
    Image.fromarray(255 - picture(80, 0)).save(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # even on coarse clocks
    after = load_images(index, 64, cache=cache, progress=False)
    np.testing.assert_array_equal(after[0], read_gray(changed, 64)[0])
    assert not np.array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1:], before[1:])


def test_each_file_is_decoded_once_over_several_epochs(index, count_decodes):
    ds = make_dataset(index, CLASSES, image_size=64, batch_size=8, training=True, progress=False)
    for _ in range(3):
        batches(ds)
    assert sorted(count_decodes) == sorted(str(Path(r) / p) for r, p in zip(index["root"], index["path"]))


def test_a_cache_filled_by_validation_serves_the_pipeline(index, tmp_path, count_decodes):
    from cxrnb.validate import validate_images

    validate_images(index, cache=ImageCache(tmp_path / "cache"), progress=False)  # the one decoding pass
    assert len(count_decodes) == len(index)
    count_decodes.clear()
    x = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, image_size=64, cache=tmp_path / "cache",
                                                           progress=False))])
    assert count_decodes == [] and x.shape == (len(index), 64, 64, 1)


def test_a_cache_filled_at_one_size_serves_another_without_decoding(index, tmp_path, count_decodes):
    load_images(index, 96, cache=tmp_path / "cache", progress=False)
    assert len(count_decodes) == len(index)
    count_decodes.clear()
    out = load_images(index, 64, cache=tmp_path / "cache", progress=False)
    assert count_decodes == []
    np.testing.assert_array_equal(out, load_images(index, 64, progress=False))  # = no cache


def test_streaming_from_an_image_cache_gives_the_same_batches(index, tmp_path, count_decodes):
    kw = dict(image_size=64, batch_size=8, training=True, seed=3, progress=False)
    streamed = make_dataset(index, CLASSES, cache=tmp_path / "cache", in_memory=False, **kw)
    e1, e2 = batches(streamed), batches(streamed)
    assert len(count_decodes) == len(index)  # epoch 2 reads the cache, never the decoder
    count_decodes.clear()
    memory = batches(make_dataset(index, CLASSES, **kw))
    for (xs, ys), (xm, ym) in zip(e1, memory):
        np.testing.assert_array_equal(xs, xm)
        np.testing.assert_array_equal(ys, ym)
    assert not np.array_equal(e1[0][0], e2[0][0])
    with pytest.raises(ValueError, match="ImageCache"):
        make_dataset(index, CLASSES, in_memory=False, **kw)


# --------------------------------------------------------------------------- augmentation hook

def test_augment_is_applied_only_when_training(index):
    seen = []

    def invert(x):
        seen.append(tuple(x.shape))
        return 255.0 - x

    kw = dict(image_size=32, batch_size=8, augment=invert, shuffle=False, progress=False)
    plain = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, **kw))])
    assert not seen
    aug = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, training=True, **kw))])
    np.testing.assert_allclose(aug, 1.0 - plain, atol=1e-6)
    assert seen and seen[-1][1:] == (32, 32, 1)


def test_augment_output_is_clipped_to_unit_range(index):
    ds = make_dataset(index, CLASSES, image_size=32, training=True, augment=lambda x: x * 3.0 - 100.0,
                      progress=False)
    x = np.concatenate([b[0] for b in batches(ds)])
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_keras_augmenter_runs_in_the_pipeline(index):
    fn = aug.keras_augmenter(aug.AugmentPolicy.preset("default"), seed=0)
    x, _ = next(iter(make_dataset(index, CLASSES, image_size=64, training=True, augment=fn, progress=False)))
    assert x.shape[1:] == (64, 64, 1) and x.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0


def test_same_seed_gives_the_same_augmented_batches(index):
    kw = dict(image_size=64, batch_size=8, training=True, augment="default", progress=False)
    a, b = batches(make_dataset(index, CLASSES, seed=5, **kw)), batches(make_dataset(index, CLASSES, seed=5, **kw))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    same_order = dict(kw, shuffle=False)
    augmented = batches(make_dataset(index, CLASSES, **same_order))[0][0]
    plain = batches(make_dataset(index, CLASSES, **dict(same_order, training=False)))[0][0]
    assert not np.array_equal(augmented, plain)  # the preset did change the pixels


@pytest.mark.parametrize("executor", ["keras", "opencv", "imgaug"])
def test_seeded_executors_are_parallel_reproducible_and_new_each_epoch(index, monkeypatch, executor):
    """Every executor gets a per-batch seed (one augmentation path): the same batches in every run
    although the map runs in parallel; new draws each epoch (also without shuffling); their own
    seed matters."""
    maps = []
    real_map = tf.data.Dataset.map

    def spy(self, fn, num_parallel_calls=None, deterministic=None, **kw):
        maps.append(num_parallel_calls)
        return real_map(self, fn, num_parallel_calls=num_parallel_calls, deterministic=deterministic, **kw)

    monkeypatch.setattr(tf.data.Dataset, "map", spy)
    kw = dict(image_size=64, batch_size=4, training=True, progress=False)

    def run(aug_seed=0, **more):
        ds = make_dataset(index, CLASSES, augment=aug.make_augmenter("default", executor, seed=aug_seed),
                          **{**kw, **more})
        return np.concatenate([b[0] for b in batches(ds)]), np.concatenate([b[0] for b in batches(ds)])

    maps.clear()
    a1, a2 = run(seed=5)
    assert maps and None not in maps  # no sequential map anywhere
    b1, b2 = run(seed=5, deterministic=False)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(run(aug_seed=1, seed=5)[0], a1)
    s1, s2 = run(shuffle=False)
    assert not np.allclose(s1, s2)  # same order, new draws
    plain = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, **{**kw, "training": False}))])
    assert np.abs(s1 - plain).mean() > 0.01


def test_a_plain_callable_augments_one_batch_at_a_time_unless_told_otherwise(index, monkeypatch):
    """A plain callable takes no per-batch seed: its random state is advanced call after call, so
    the augmenting map is sequential (`deterministic=True`, the default) or parallel when asked."""
    maps = []
    real_map = tf.data.Dataset.map

    def spy(self, fn, num_parallel_calls=None, deterministic=None, **kw):
        maps.append((getattr(fn, "__name__", ""), num_parallel_calls))
        return real_map(self, fn, num_parallel_calls=num_parallel_calls, deterministic=deterministic, **kw)

    monkeypatch.setattr(tf.data.Dataset, "map", spy)
    darker = lambda x: x * 0.5  # noqa: E731 - a user's plain augmenter
    kw = dict(image_size=64, batch_size=4, training=True, progress=False, shuffle=False)
    out = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, augment=darker, **kw))])
    plain = np.concatenate([b[0] for b in batches(make_dataset(index, CLASSES, **{**kw, "training": False}))])
    np.testing.assert_allclose(out, plain * 0.5, atol=1e-6)
    assert ("augment_batch", None) in maps
    maps.clear()
    make_dataset(index, CLASSES, augment=darker, deterministic=False, **kw)
    assert ("augment_batch", tf.data.AUTOTUNE) in maps



def test_executor_runs_a_preset_or_a_policy(index, monkeypatch):
    """`executor` picks who runs a preset name or an AugmentPolicy (OpenCV by default); both give
    reproducible batches for a seed, new ones each epoch, in [0, 1]."""
    assert pipeline.DEFAULT_EXECUTOR == "opencv"
    assert isinstance(pipeline._resolve_augment("default", 0, pipeline.DEFAULT_EXECUTOR), aug.OpenCVAugmenter)
    policy = aug.AugmentPolicy.preset("article002")
    built = pipeline._resolve_augment(policy, 3, "keras")
    assert isinstance(built, aug.CXRAugment) and built.policy == policy and built.seed == 3
    with pytest.raises(ValueError, match="executor must be one of"):
        pipeline._resolve_augment("default", 0, "cuda")
    with pytest.raises(TypeError, match="AugmentPolicy"):
        pipeline._resolve_augment(3, 0, "opencv")
    kw = dict(image_size=48, batch_size=8, training=True, progress=False, seed=2)
    for augment, executor in ((policy, "opencv"), (policy, "keras"), ("default", "opencv")):
        ds = make_dataset(index, CLASSES, augment=augment, executor=executor, **kw)
        e1, e2 = np.concatenate([b[0] for b in batches(ds)]), np.concatenate([b[0] for b in batches(ds)])
        again = make_dataset(index, CLASSES, augment=augment, executor=executor, **kw)
        np.testing.assert_array_equal(e1, np.concatenate([b[0] for b in batches(again)]))
        assert e1.shape == (24, 48, 48, 1) and 0.0 <= e1.min() and e1.max() <= 1.0
        assert not np.allclose(e1, e2)
    sets = make_datasets(index.assign(split=["train"] * 16 + ["val"] * 8), CLASSES, image_size=32,
                         batch_size=8, augment=policy, executor="keras", progress=False)
    assert len(list(sets["train"])) == 2 and len(list(sets["val"])) == 1

def test_a_broken_augmenter_fails_before_training(index):
    with pytest.raises(ValueError, match="batch shape"):
        make_dataset(index, CLASSES, image_size=32, training=True, augment=lambda x: x[:, :16], progress=False)


# --------------------------------------------------------------------------- clear errors

def test_unknown_labels_are_named_with_their_rows(index):
    bad = index.copy()
    bad.loc[[3, 7], "label"] = "covid"
    with pytest.raises(ValueError, match=r"'covid' \(2 rows\).*first rows: \[3, 7\]"):
        make_dataset(bad, CLASSES, progress=False)
    with pytest.raises(ValueError, match="covid"):
        labels_to_ids(bad["label"], CLASSES)
    np.testing.assert_array_equal(labels_to_ids(["b", "a", "b"], ["a", "b"]), [1, 0, 1])


@pytest.mark.parametrize("change, message", [
    (lambda ix: ix.iloc[:0], "empty"),
    (lambda ix: ix.drop(columns=["patient_id"]), "missing column"),
    (lambda ix: ix.assign(label=ix["label"].where(ix.index != 2, None)), "empty 'label'"),
])
def test_bad_indexes_fail_before_tensorflow_runs(index, change, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(change(index), CLASSES, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 16}, "too small"),
    ({"channels": 2}, "channels must be 1"),
    ({"label_mode": "sparse"}, "label_mode"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments_are_refused(index, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(index, CLASSES, progress=False, **kwargs)


def test_binary_labels_need_two_classes(index):
    with pytest.raises(ValueError, match="exactly 2 classes"):
        make_dataset(index, CLASSES + ["covid"], label_mode="binary", progress=False)


def test_a_file_that_does_not_decode_raises_image_error_naming_it(index):
    broken = Path(index["root"][5]) / index["path"][5]
    broken.write_bytes(b"not really a png")
    with pytest.raises(ImageError, match=rf"{broken.name}.*not an image.*index row 5"):
        make_dataset(index, CLASSES, progress=False)
    broken.unlink()
    with pytest.raises(ImageError, match=rf"{broken.name}.*missing file"):
        load_images(index, 64, progress=False)


def test_streaming_names_the_file_that_breaks_later(index, tmp_path):
    ds = make_dataset(index, CLASSES, image_size=32, cache=tmp_path / "c", in_memory=False, progress=False)
    broken = Path(index["root"][5]) / index["path"][5]
    broken.write_bytes(b"changed after the dataset was built")
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"ImageError: {broken}: not an image"):
        batches(ds)


# --------------------------------------------------------------------------- splits

def test_make_datasets_builds_one_dataset_per_split_and_augments_train_only(index):
    split = index.assign(split=["train"] * 16 + ["val"] * 4 + ["test"] * 4)
    sets = make_datasets(split, CLASSES, image_size=32, batch_size=4, augment=lambda x: x * 0.0,
                         progress=False)
    assert list(sets) == ["train", "val", "test"]
    assert [len(d) for d in sets.values()] == [4, 1, 1]
    assert float(next(iter(sets["train"]))[0].numpy().max()) == 0.0
    assert float(next(iter(sets["val"]))[0].numpy().max()) > 0.0
