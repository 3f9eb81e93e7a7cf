"""cxrnb.augment and notebook 02's figures (cxrnb.lessons.augmentation): policy validation, the three
executors, masks, determinism, figures."""
from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrnb.augment import (
    EXECUTORS, N_UNIFORMS, PRESETS, AugmentPolicy, CXRAugment, as_policy, augment_with_masks,
    describe, draw_uniforms, imgaug_sequence, keras_augmenter, make_augmenter, opencv_augmenter,
    sample_transforms)

SIZE = 64


def textured(n: int = 4, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """float32 (n, size, size, 1) integer-valued 0..255 images with structure everywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 120 + 70 * np.sin(7 * x) * np.cos(5 * y)
    imgs = base[None] + rng.normal(0, 12, (n, size, size))
    return np.clip(np.rint(imgs), 0, 255).astype(np.float32)[..., None]


def square(n: int = 4, size: int = 96, lo: int = 34, hi: int = 62):
    """A bright square on a dark, non-black body, and its mask (0/255)."""
    img = np.full((n, size, size, 1), 20.0, np.float32)
    img[:, lo:hi, lo:hi] = 250.0
    mask = np.zeros((n, size, size, 1), np.uint8)
    mask[:, lo:hi, lo:hi] = 255
    return img, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


# -- policy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("rotation", -1.0), ("rotation", 46.0), ("rotation", float("nan")), ("rotation", "10"),
    ("zoom", -0.1), ("zoom", 0.6),
    ("shift", -0.01), ("shift", 0.5),
    ("brightness", (0.0, 1.2)), ("brightness", (-0.5, 1.0)), ("brightness", (1.2, 0.8)),
    ("brightness", (0.9, 3.5)), ("brightness", 1.1),
    ("gamma", (0.0, 1.5)), ("gamma", (1.5, 0.5)), ("gamma", (1.0,)),
    ("crop", 1.0), ("crop", 0.3), ("crop", -0.1),
    ("horizontal_flip", "yes"),
])
def test_bad_field_fails_at_construction_naming_field_and_range(field, value):
    with pytest.raises(ValueError) as e:
        AugmentPolicy(**{field: value})
    msg = str(e.value)
    assert field in msg
    assert "allowed" in msg or "must be" in msg, msg


def test_error_message_gives_the_allowed_range():
    with pytest.raises(ValueError, match=r"rotation=50.*allowed 0 <= rotation <= 45"):
        AugmentPolicy(rotation=50)
    with pytest.raises(ValueError, match=r"crop=1.0.*0 <= crop <= 0.25"):
        AugmentPolicy(crop=1.0)
    with pytest.raises(ValueError, match=r"brightness.*0 < low <= high"):
        AugmentPolicy(brightness=(0, 1))


def test_vertical_flip_refused_with_reason_and_horizontal_flip_off_by_default():
    with pytest.raises(ValueError, match="upside down"):
        AugmentPolicy(vertical_flip=True)
    assert AugmentPolicy().horizontal_flip is False
    assert all(not p.horizontal_flip and not p.vertical_flip for p in PRESETS.values())
    reason = describe(AugmentPolicy()).set_index("field").loc["horizontal_flip", "for chest X-rays"]
    assert "dextrocardia" in reason


@pytest.mark.parametrize("executor", ["keras", "imgaug", "opencv"])
def test_horizontal_flip_when_enabled_mirrors_some_images_exactly(executor):
    p = AugmentPolicy.preset("none").replace(horizontal_flip=True)
    x = textured(n=16)
    aug = make_augmenter(p, executor, seed=0)
    y = aug(x).numpy()
    same = [np.allclose(y[i], x[i], atol=1e-3) for i in range(16)]
    mirrored = [np.allclose(y[i], x[i, :, ::-1], atol=1e-3) for i in range(16)]
    assert all(a or b for a, b in zip(same, mirrored)) and 2 <= sum(mirrored) <= 14


def test_policy_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError, match="rotation"):
        AugmentPolicy().rotation = 30


def test_every_executor_reads_a_policy_a_preset_name_or_a_mapping_alike():
    p = AugmentPolicy.preset("article002")
    assert as_policy(p) is p and as_policy("article002") == p and as_policy(p.to_dict()) == p
    for name in EXECUTORS:
        assert make_augmenter(p.to_dict(), name).policy == make_augmenter("article002", name).policy == p
    with pytest.raises(TypeError, match="policy must be an AugmentPolicy, a preset name or a mapping"):
        as_policy(3)
    with pytest.raises(ValueError, match="unknown augmentation preset 'nope'"):
        opencv_augmenter("nope")
    assert describe(p.to_dict()).equals(describe("article002"))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    p = AugmentPolicy.preset(name)
    text = p.to_json()
    assert json.loads(text)["rotation"] == p.rotation
    assert AugmentPolicy.from_json(text) == p
    assert AugmentPolicy.from_dict(p.to_dict()) == p


def test_preset_values_follow_the_articles():
    assert AugmentPolicy.preset("default") == AugmentPolicy()
    a2 = AugmentPolicy.preset("article002")
    assert (a2.rotation, a2.zoom, a2.brightness) == (20, 0.3, (0.7, 1.3))
    a3 = AugmentPolicy.preset("article003")
    assert (a3.rotation, a3.shift, a3.vertical_flip) == (10, 0, False)
    a4 = AugmentPolicy.preset("article004")
    assert a4.gamma != (1.0, 1.0) and a4.crop > 0
    assert AugmentPolicy.preset("none").is_identity
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        AugmentPolicy.preset("nope")
    with pytest.raises(ValueError, match="unknown AugmentPolicy field"):
        AugmentPolicy.from_dict({"rotaton": 5})


def test_describe_table():
    df = describe("article002")
    assert list(df.columns) == ["field", "value", "simulates", "for chest X-rays"]
    assert set(df["field"]) >= {"rotation", "zoom", "brightness", "gamma", "crop", "vertical_flip"}


# -- executors ---------------------------------------------------------------------------------

def test_none_policy_is_identity_for_every_executor():
    x = textured()
    for name in EXECUTORS:
        np.testing.assert_array_equal(make_augmenter("none", name, seed=0)(x).numpy(), x)
    y = opencv_augmenter("none")(x.astype(np.uint8), seed=tf.constant([1, 2]))
    assert y.dtype == tf.float32
    np.testing.assert_array_equal(y.numpy(), x)
    assert len(imgaug_sequence("none")) == 0


@pytest.mark.parametrize("executor", ["keras", "imgaug", "opencv"])
def test_rotation_moves_pixels_keeps_shape_dtype_range(executor):
    p = AugmentPolicy.preset("none").replace(rotation=30)
    x = textured()
    aug = make_augmenter(p, executor, seed=1)
    y = aug(tf.constant(x)).numpy()
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0 and y.max() <= 255
    assert np.abs(y - x).mean() > 5
    # constant black fill at the corners (rotation brings outside-the-image pixels in), never reflect
    corners = y[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
    assert (corners == 0).mean() > 0.5


@pytest.mark.parametrize("executor", ["keras", "opencv"])
def test_fill_is_black_not_reflected(executor):
    x = np.full((16, SIZE, SIZE, 1), 200.0, np.float32)
    y = make_augmenter(AugmentPolicy.preset("none").replace(zoom=0.5), executor, seed=3)(x).numpy()
    # about half the draws zoom out and leave a border: it must be black (0), whereas a reflected
    # or nearest fill would keep a flat 200 image flat
    zoomed_out = (y[:, 0, 0, 0] == 0)
    assert 2 <= zoomed_out.sum() <= 14
    assert (y[zoomed_out][:, :, 0] == 0).all() and (y[zoomed_out][:, :, -1] == 0).all()


@pytest.mark.parametrize("executor", ["keras", "imgaug", "opencv"])
def test_intensity_ops_change_values_not_geometry(executor):
    p = AugmentPolicy.preset("none").replace(brightness=(0.6, 0.8), gamma=(1.5, 2.0))
    x, _ = square(n=3, size=SIZE, lo=20, hi=44)
    aug = make_augmenter(p, executor, seed=2)
    y = aug(x).numpy()
    assert y.shape == x.shape
    assert np.abs(y - x).mean() > 10
    # darker everywhere; the square is exactly where it was: one value inside, another outside
    assert (y <= x + 1).all()
    for i in range(len(x)):
        inside, outside = y[i][x[i] > 200], y[i][x[i] < 200]
        assert np.ptp(inside) <= 1 and np.ptp(outside) <= 1 and inside.min() > outside.max()


@pytest.mark.parametrize("executor", ["keras", "imgaug", "opencv"])
@pytest.mark.parametrize("preset", ["default", "article002", "article004"])
def test_masks_stay_aligned(executor, preset):
    p = AugmentPolicy.preset(preset).replace(rotation=max(AugmentPolicy.preset(preset).rotation, 15), shift=0.1)
    x, m = square()
    y, ym = augment_with_masks(p, x, m, seed=4, executor=executor)
    assert y.shape == x.shape and ym.shape == m.shape and ym.dtype == m.dtype
    assert set(np.unique(ym)) <= {0, 255}
    moved = 0
    for i in range(len(x)):
        # the body (20) stays below half of the square's value (250) under any brightness/gamma draw
        bright = y[i, ..., 0] > y[i, ..., 0].max() / 2
        assert iou(bright, ym[i, ..., 0] > 0) > 0.9, (executor, preset, i)
        moved += iou(ym[i, ..., 0] > 0, m[i, ..., 0] > 0) < 0.95
    assert moved >= 2  # the transform did move the square (alignment is not trivially true)


@pytest.mark.parametrize("executor", ["keras", "opencv"])
def test_images_alone_get_the_same_draw_as_with_masks(executor):
    x, m = square()
    a = make_augmenter("default", executor, seed=9)(x).numpy()
    b, _ = make_augmenter("default", executor, seed=9).with_masks(x, m)
    np.testing.assert_allclose(a, np.asarray(b), atol=1e-4)


@pytest.mark.parametrize("executor", ["keras", "imgaug", "opencv"])
def test_determinism_same_seed_same_output_different_seed_different(executor):
    x = textured()

    def run(seed):
        aug = make_augmenter("default", executor, seed=seed)
        return np.stack([aug(x).numpy(), aug(x).numpy()])  # two successive batches

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[0], a[1])  # successive batches get new draws
    assert not np.allclose(a[0][0], a[0][1])  # images within a batch get their own draws


@pytest.mark.parametrize("executor", ["keras", "imgaug", "opencv"])
def test_works_inside_tf_data_map_on_batches(executor):
    x = textured(n=8)

    def epoch(seed):
        aug = make_augmenter("article002", executor, seed=seed)
        ds = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: aug(b))
        assert ds.element_spec.shape.as_list() == [None, SIZE, SIZE, 1]
        return np.concatenate([b.numpy() for b in ds])

    a, b = epoch(1), epoch(1)
    assert a.shape == x.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - x).mean() > 5


@pytest.mark.parametrize("executor", ["keras", "opencv", "imgaug"])
def test_per_batch_seed_makes_a_parallel_map_reproducible(executor):
    x = textured(n=32)

    def epoch():
        aug = make_augmenter("default", executor, seed=0)
        ds = (tf.data.Dataset.from_tensor_slices(x).batch(4).enumerate()
              .map(lambda i, b: aug(b, seed=tf.stack([tf.constant(7, tf.int64), i])),
                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
        return np.concatenate([b.numpy() for b in ds])

    a, b = epoch(), epoch()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:4], a[4:8])  # batches still differ


@pytest.mark.parametrize("executor", ["keras", "opencv"])
def test_intensity_is_brightness_then_gamma_of_the_drawn_uniforms(executor):
    """The executors look every pixel up in ``255 * (clip(f * v, 0, 255) / 255) ** g`` with the
    factor f and the gamma g of the uniforms `draw_uniforms` gives for the batch seed (a NumPy
    reference), on uint8 and on integer-valued float input; 0 stays 0 (black fill stays black)."""
    p = AugmentPolicy.preset("none").replace(brightness=(0.7, 1.3), gamma=(0.5, 2.0))
    x = textured(n=8)
    x[:, :4] = 0.0
    s = tf.constant([3, 4], tf.int64)
    u = draw_uniforms(8, seed=s, own_seed=0).numpy()
    factor = (0.7 + 0.6 * u[:, :1])[:, :, None, None]
    gamma = (0.5 + 1.5 * u[:, 1:2])[:, :, None, None]
    expected = 255.0 * (np.clip(x * factor, 0.0, 255.0) / 255.0) ** gamma
    aug = make_augmenter(p, executor, seed=0)
    for inp in (x, x.astype(np.uint8)):
        got = aug(inp, seed=s).numpy()
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, expected, atol=0.02)
    assert (got[:, :4] == 0).all()


@pytest.mark.parametrize("executor", ["keras", "opencv"])
def test_uint8_and_float_input_give_the_same_augmentation(executor):
    x = textured(n=4)
    aug = make_augmenter("default", executor, seed=0)
    s = tf.constant([1, 2], tf.int64)
    np.testing.assert_allclose(aug(x.astype(np.uint8), seed=s).numpy(), aug(x, seed=s).numpy(), atol=1e-4)


def test_keras_layers_serialise():
    aug = keras_augmenter("article004", seed=3)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(aug))
    assert isinstance(clone, CXRAugment) and clone.policy == aug.policy and clone.seed == 3
    s = tf.constant([5, 6], tf.int64)
    np.testing.assert_array_equal(clone(textured(), seed=s).numpy(), aug(textured(), seed=s).numpy())
    assert CXRAugment.from_config({**aug.get_config(), "fused": True}).get_config() == aug.get_config()
    with pytest.raises(ValueError, match="fused=False .* was removed"):
        CXRAugment("default", fused=False)


def test_keras_augmenter_inside_a_model_is_identity_at_inference():
    x = textured(n=2)
    aug = keras_augmenter("article002", seed=0)
    np.testing.assert_array_equal(aug(x, training=False).numpy(), x)


# -- OpenCV executor: the same policy as the Keras executor -----------------------------------

@pytest.mark.parametrize("per_batch_seed", [True, False])
def test_opencv_computes_what_keras_computes_for_the_same_seed(per_batch_seed):
    """One policy, one set of draws, one arithmetic: for the same seed the OpenCV executor gives
    the Keras executor's pixels (lookup table, then one bilinear warp with the same matrix, black
    outside), with a per-batch seed and along each executor's own seed state alike."""
    p = AugmentPolicy.preset("default").replace(rotation=20, shift=0.1, horizontal_flip=True)
    x = textured(n=8)
    k, o = keras_augmenter(p, seed=5), opencv_augmenter(p, seed=5)
    for step in range(2):
        s = tf.constant([step, 1], tf.int64) if per_batch_seed else None
        expected, got = k(x, seed=s).numpy(), o(x, seed=s).numpy()
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, expected, atol=0.05)
        assert np.abs(got - x).mean() > 5


def test_sample_transforms_follow_the_uniforms_and_are_off_when_the_policy_is():
    u = np.random.default_rng(0).random((3, N_UNIFORMS)).astype(np.float32)
    assert sample_transforms(AugmentPolicy.preset("none"), u, 8, 8) == (None, None)
    lut, m = sample_transforms(AugmentPolicy.preset("article003"), u, 8, 8)
    assert lut is None and m.shape == (3, 2, 3)
    angle = np.arctan2(m.numpy()[:, 1, 0], m.numpy()[:, 0, 0])  # rotation only: a pure rotation matrix
    np.testing.assert_allclose(np.degrees(angle), (2 * u[:, 6] - 1) * 10, atol=1e-4)
    lut, m = sample_transforms(AugmentPolicy.preset("none").replace(gamma=(0.5, 2.0)), u, 8, 8)
    lut = lut.numpy()
    assert m is None and lut.shape == (3, 256) and (lut[:, 0] == 0).all() and np.allclose(lut[:, 255], 255)
    assert (np.diff(lut, axis=1) >= 0).all()  # brighter stays brighter


def test_draw_uniforms_needs_a_seed_or_a_generator():
    with pytest.raises(ValueError, match="needs a per-batch seed or a SeedGenerator"):
        draw_uniforms(2)
    s = tf.constant([1, 2], tf.int64)
    a, b = draw_uniforms(4, seed=s, own_seed=0).numpy(), draw_uniforms(4, seed=s, own_seed=1).numpy()
    assert a.shape == (4, N_UNIFORMS) and 0 <= a.min() and a.max() < 1 and not np.allclose(a, b)
    g = keras.random.SeedGenerator(0)
    assert not np.allclose(draw_uniforms(4, generator=g).numpy(), draw_uniforms(4, generator=g).numpy())


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two empirical CDFs."""
    v = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(np.sort(a), v, "right") / len(a)
                        - np.searchsorted(np.sort(b), v, "right") / len(b)).max())


@pytest.mark.parametrize("what", ["intensity", "rotation"])
def test_opencv_and_keras_executors_agree_statistically(what):
    """Over 2,048 draws, each executor with its own seed (independent draws): the same distribution
    of the mean intensity change of a flat film (brightness, gamma) and of the black border
    fraction that rotation brings in (KS distance < 0.05, about the 1 % critical value; a rotation
    of 18 instead of 20 degrees, or brightness from 0.75 instead of 0.7, gives 0.05-0.09)."""
    none = AugmentPolicy.preset("none")
    p = none.replace(brightness=(0.7, 1.3), gamma=(0.7, 1.4)) if what == "intensity" else none.replace(rotation=20)
    flat = np.full((2048, 32, 32, 1), 150.0, np.float32)

    def stat(executor: str, seed: int) -> np.ndarray:
        y = make_augmenter(p, executor, seed=seed)(flat, seed=tf.constant([1, 2])).numpy()[..., 0]
        assert y.shape == flat.shape[:3] and 0 <= y.min() and y.max() <= 255
        return y.mean(axis=(1, 2)) - 150 if what == "intensity" else (y == 0).mean(axis=(1, 2))

    k, o = stat("keras", 0), stat("opencv", 1)
    assert k.std() > 0.01 and not np.allclose(k, o)  # varied, and two independent draws
    assert _ks(k, o) < 0.05, _ks(k, o)


def test_opencv_per_batch_seed_fixes_the_draws_whatever_the_call_order():
    x = textured(n=4)
    aug = opencv_augmenter("default", seed=3)
    s1, s2 = tf.constant([3, 1], tf.int64), tf.constant([3, 2], tf.int64)
    a1, a2 = aug(x, seed=s1).numpy(), aug(x, seed=s2).numpy()
    b2, b1 = aug(x, seed=s2).numpy(), aug(x, seed=s1).numpy()
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(a1, a2)
    assert not np.allclose(opencv_augmenter("default", seed=4)(x, seed=s1).numpy(), a1)  # its own seed counts
    x8, m8 = aug.with_masks(x.astype(np.uint8), (x > 128).astype(np.uint8), seed=s1)
    np.testing.assert_array_equal(x8.numpy(), a1)


def test_opencv_masks_keep_dtype_values_and_channels():
    x, m = square(n=3)
    masks = np.concatenate([m, m // 255, m[:, ::-1], m, m], axis=-1)  # 5 channels
    for dtype in (np.uint8, np.int32, np.int64, bool):
        mm = masks.astype(dtype)
        y, ym = opencv_augmenter("article002", seed=1).augment_numpy(x, mm)
        assert ym.dtype == mm.dtype and ym.shape == mm.shape and y.shape == x.shape
        assert set(np.unique(ym)) <= set(np.unique(mm))
        np.testing.assert_array_equal(ym[..., 0], ym[..., 3])
    y1, m1 = opencv_augmenter("article002", seed=1).augment_numpy(x[0], masks[0])  # one image (H, W, C)
    np.testing.assert_array_equal(y1, y[0])


# -- NumPy / imgaug guard ----------------------------------------------------------------------

def test_numpy_pin_and_imgaug_fork_still_work():
    """pyimgaug 0.5.0 (imports as imgaug) breaks its crop augmenters on NumPy 2.4: pyproject pins
    numpy<2.4. If this fails after a NumPy upgrade, restore the pin or update the fork."""
    import imgaug.augmenters as iaa

    major, minor = (int(v) for v in np.__version__.split(".")[:2])
    assert (major, minor) < (2, 4), (
        f"NumPy {np.__version__} >= 2.4: the pyimgaug fork's crop augmenters need NumPy < 2.4 - keep "
        "the 'numpy>=1.26,<2.4' pin in pyproject.toml (and environment.yml) until the fork supports it")
    img = np.zeros((32, 48, 1), np.uint8)
    img[8:24, 12:36] = 200
    crop = iaa.Crop(px=(4, 4, 4, 4), keep_size=False)
    out = crop(image=img)
    assert out.shape == (24, 40, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img[4:-4, 4:-4])
    kept = iaa.Crop(percent=(0.1, 0.1), keep_size=True)(image=img)
    assert kept.shape == img.shape and kept.dtype == np.uint8
    rot = iaa.Affine(rotate=90, mode="constant", cval=0, order=0)(image=img)
    assert rot.shape == img.shape and rot.dtype == np.uint8
    assert int(rot.astype(int).sum()) > 0 and not np.array_equal(rot, img)
    gam = iaa.GammaContrast(2.0)(image=img)
    assert abs(int(gam[16, 24, 0]) - 255 * (200 / 255) ** 2) <= 1 and gam[0, 0, 0] == 0


# -- notebook 02's figures (cxrnb.lessons.augmentation) ------------------------------------------

def test_augmentation_figures():
    from matplotlib.figure import Figure

    from cxrnb.lessons import augmentation

    img = textured(n=1)[0]
    f = augmentation.draws_grid(img, "default", n=8, seed=0)
    assert isinstance(f, Figure) and len(f.axes) == 9
    f = augmentation.draws_grid(img, AugmentPolicy.preset("article002"), n=4, seed=0, executor="imgaug",
                                show_original=False)
    assert len(f.axes) == 4
    f = augmentation.class_grid({"normal": [img], "pneumonia": [img[::-1]], "covid": [img[:, ::-1]]},
                                "default", seed=0, n_aug=3)
    assert isinstance(f, Figure) and len(f.axes) == 3 * 4
    before = textured(n=4)
    after = keras_augmenter("article002", seed=0)(before).numpy()
    f = augmentation.intensity_histograms(before, after)
    assert isinstance(f, Figure) and len(f.axes) == 2
    f = augmentation.compare_executors(img, "default", n=5, seed=0)
    assert isinstance(f, Figure) and len(f.axes) == 5 * len(augmentation.EXECUTORS)  # one row per executor
    x, m = square(n=1)
    assert len(augmentation.mask_overlay(x[0], m[0]).axes) == 1
    assert len(augmentation.mask_draws(x[0], m[0], "default", n=4, seed=0, executor="imgaug").axes) == 5


def test_first_films_are_each_class_first_film_with_its_masks_as_the_film_is_read(tmp_path):
    from cxrnb.images import read_gray
    from cxrnb.lessons import augmentation
    from cxrnb.pipeline import load_images
    from cxrnb.sources import read_synthetic
    from cxrnb.synthetic import generate

    generate(tmp_path, n_patients=8, size=48, layout="kaggle-pneumonia", progress=False)
    index = read_synthetic(tmp_path)
    films, masks = augmentation.first_films(index, 32)
    firsts = index.sort_values("path").groupby("label").head(1).sort_values("label")
    assert list(films) == list(masks) == sorted(index["label"].unique()) == list(firsts["label"])
    for (_, row), film in zip(firsts.iterrows(), load_images(firsts, 32, progress=False)):
        label = row["label"]
        np.testing.assert_array_equal(films[label][0], film)
        assert masks[label].shape == (32, 32, 2)
        lung = read_gray(f"{row['root']}/{row['lung_mask']}", 32, min_side=1)[0]
        np.testing.assert_array_equal(masks[label][..., 0], lung)
    assert augmentation.film_masks(index.iloc[0].drop(["lung_mask", "lesion_mask"]), 32) is None
    _, none = augmentation.first_films(index.drop(columns=["lung_mask", "lesion_mask"]), 32)
    assert none is None                                                # a source without masks


def test_augmentation_draws_are_deterministic_for_a_seed():
    from cxrnb.lessons import augmentation

    img = textured(n=1)[0]
    for ex in augmentation.EXECUTORS:
        a = augmentation.draws(img, "default", 4, seed=3, executor=ex)
        b = augmentation.draws(img, "default", 4, seed=3, executor=ex)
        np.testing.assert_array_equal(a, b)


def test_augmentation_labels_are_the_draws_the_executor_applied():
    # Brightness alone on a flat film: each panel's mean over the film's value is the factor the
    # executor drew; sample_params must name the same factor for the same panel (notebook 02's
    # labelled panels), where it once drew its own numbers with other conventions.
    import tensorflow as tf

    from cxrnb.lessons import augmentation

    policy = AugmentPolicy.preset("none").replace(brightness=(0.5, 1.5))
    flat = np.full((6, 32, 32, 1), 100, np.uint8)
    out = make_augmenter(policy, "opencv", seed=7)(flat, seed=tf.constant([7, 0], tf.int64)).numpy()
    drawn = [p["brightness"] for p in augmentation.sample_params(policy, 6, seed=7)]
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)) / 100.0, drawn, atol=0.006)  # LUT rounding
    assert np.ptp(drawn) > 0.1  # six different draws, not one
