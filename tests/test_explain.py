"""CAMs: never blank, aligned, equal on both paths; scores with known answers; sanity check; bad input."""
import functools
import re

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from cxrnb import explain as E
from cxrnb.explain.oracle import toolkit_cam
from cxrnb import plots

S = 32


def tiny(kind: str, act: str, n: int, seed: int = 0) -> keras.Model:
    """A small CNN, untrained; its logit weights alternate in sign over the channels so that every
    class has positive evidence somewhere (a ReLU'd Grad-CAM with none is legitimately all zero)."""
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Conv2D(6, 3, activation="relu", padding="same"), keras.layers.MaxPooling2D(),
              keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="last_conv"),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(n, activation=act, name="logits")]
    if kind == "sequential":
        model = keras.Sequential(layers)
        model.build((None, S, S, 1))
    else:
        x = inp = keras.Input((S, S, 1))
        for lay in layers[:-1]:
            x = lay(x)
        x = layers[-1](x) if act == "linear" else keras.layers.Activation(act, name="probabilities")(
            keras.layers.Dense(n, name="logits")(x))
        model = keras.Model(inp, x)
    c, k = np.meshgrid(np.arange(16), np.arange(n), indexing="ij")
    model.get_layer("logits").set_weights([(-1.0) ** (c + k) * (1 + c / 16), np.zeros(n)])
    return model


def noise(n: int = 3, seed: int = 0) -> np.ndarray:
    """Noisy films with a bright square at a different place in each."""
    x = np.random.default_rng(seed).random((n, S, S, 1), dtype=np.float32) * 0.5
    for i in range(n):
        r, c = 3 + 7 * i % 20, 20 - 6 * i % 18
        x[i, r:r + 8, c:c + 8] = 0.95
    return x


MODELS = [(k, a, n) for k in ("functional", "sequential") for a, n in
          (("softmax", 3), ("sigmoid", 1), ("linear", 3))]


@pytest.mark.parametrize("kind,act,n", MODELS)
def test_every_method_gives_finite_non_constant_maps(kind, act, n):
    model, x = tiny(kind, act, n), noise()
    for method in E.METHODS:
        for cls in (0, 1):
            m = E.cam(model, x, cls, method, smooth_samples=4)
            assert m.shape == (3, S, S) and m.dtype == np.float32, method
            assert np.isfinite(m).all(), method
            assert (m.std(axis=(1, 2)) > 1e-3).all(), f"{method} class {cls}: blank map"
            assert m.min() >= 0 and m.max() <= 1 + 1e-6


def test_saturated_softmax_still_gives_maps():
    model = tiny("functional", "softmax", 3)
    dense = model.get_layer("logits")
    dense.set_weights([dense.get_weights()[0], np.array([60.0, 0.0, -60.0])])
    x = noise()
    assert (np.asarray(model(x)).max(axis=1) == 1.0).all()  # saturated: probability exactly 1
    assert (E.cam(model, x, 0, "gradcam").std(axis=(1, 2)) > 1e-3).all()


@pytest.mark.parametrize("kind,act,n", [MODELS[0], MODELS[1], MODELS[3], MODELS[4], MODELS[5]])
def test_compiled_path_equals_tf_keras_vis(kind, act, n):
    model, x = tiny(kind, act, n, seed=3), noise(5, seed=1)
    cls = [0, 1, 1, 0, 1]
    for method in E.COMPILED:
        fast = E.cam(model, x, cls, method)
        ref = toolkit_cam(model, x, cls, method)
        np.testing.assert_allclose(fast, ref, atol=1e-5, err_msg=method)


def test_sigmoid_negative_class_flips_the_sign():
    model, x = tiny("functional", "sigmoid", 1), noise(2)
    ex = E.explainer(model)
    z = ex.logits(x)[:, 0]
    s0 = np.asarray(ex.score(ex.logit_model([x]), np.array([0, 0], np.int32)))
    np.testing.assert_allclose(s0, -z, rtol=1e-5)
    p = ex.probabilities(x)
    np.testing.assert_allclose(p[:, 1], np.asarray(model(x))[:, 0], rtol=1e-5)


# ---- orientation: a model that only sees a bright square in the top-right corner -----------

def corner_model() -> keras.Model:
    """Bright pixels (> 0.5) light a 1x1 conv; 4x4 max-pooled cells; only the top-right 2x2 cells
    of the 8x8 grid feed class 1 (their negative feeds class 0)."""
    inp = keras.Input((S, S, 1))
    a = keras.layers.Conv2D(1, 1, activation="relu", name="bright")(inp)
    c = keras.layers.MaxPooling2D(4, name="cells")(a)
    z = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(c))
    model = keras.Model(inp, keras.layers.Activation("softmax")(z))
    model.get_layer("bright").set_weights([np.full((1, 1, 1, 1), 4.0), np.array([-2.0])])
    w = np.zeros((8, 8))
    w[:2, 6:] = 1.0
    model.get_layer("logits").set_weights([np.stack([-w.ravel(), w.ravel()], 1), np.zeros(2)])
    return model


def square(*corners: str) -> np.ndarray:
    x = np.full((1, S, S, 1), 0.2, np.float32)
    for c in corners:
        r = slice(2, 7) if c[0] == "t" else slice(S - 7, S - 2)
        k = slice(S - 7, S - 2) if c[1] == "r" else slice(2, 7)
        x[0, r, k] = 1.0
    return x


def peak(m: np.ndarray) -> tuple[int, int]:
    return np.unravel_index(np.argmax(m[0]), m[0].shape)


def test_cam_peak_is_in_the_corner_the_model_responds_to():
    model = corner_model()
    for method in E.METHODS:
        r, c = peak(E.cam(model, square("tr"), 1, method, layer="cells"))
        assert r < 8 and c >= S - 8, f"{method}: peak at {(r, c)}, not top-right"
    for method in ("layercam", "smoothgrad"):  # a second, ignored square does not attract the peak
        r, c = peak(E.cam(model, square("bl", "tr"), 1, method, layer="cells"))
        assert r < 8 and c >= S - 8, f"{method}: peak at {(r, c)}, not top-right"



def test_a_cells_value_lands_on_the_centre_of_the_patch_it_summarises():
    # One hot cell of an 8 x 8 grid over 64 px: its patch is pixels 8k .. 8k + 7 (centre 8k + 3.5).
    # Corner-aligned upsampling (SciPy's default zoom) put the last cell's peak on pixel 63 and the
    # first cell's on pixel 0, half a cell outside the patch; the maps must match cv2.resize.
    for k in (0, 2, 7):
        raw = np.zeros((1, 8, 8), np.float32)
        raw[0, k, 7 - k] = 1.0
        up = E._expand(raw, (64, 64))
        top = np.isclose(up[0], up[0].max())
        rows, cols = np.flatnonzero(top.any(axis=1)), np.flatnonzero(top.any(axis=0))
        assert 8 * k <= rows.min() and rows.max() <= 8 * k + 7, (k, rows)
        assert 8 * (7 - k) <= cols.min() and cols.max() <= 8 * (7 - k) + 7, (k, cols)
        ref = cv2.resize(raw[0], (64, 64), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(up[0], ref / ref.max(), atol=1e-5)  # `_expand` scales to [0, 1]

# ---- localisation scores on a constructed case --------------------------------------------

def test_localisation_scores_known_answer():
    lung = np.zeros((2, 8, 8), np.uint8)
    lung[:, :, :4] = 255                       # left half: area share 0.5
    lesion = np.zeros((2, 8, 8), np.uint8)
    lesion[0, 1:3, 1:3] = 255                  # image 1 has no lesion
    perfect = (lesion > 0).astype(np.float32)
    perfect[1, 5, 5] = 1.0
    half = np.zeros((2, 8, 8), np.float32)
    half[:, 2, 2], half[:, 2, 6] = 3.0, 1.0    # 3/4 of the energy left, peak at (2, 2)
    np.testing.assert_allclose(E.energy_share(half, lung), [0.75, 0.75])
    assert E.pointing_game(half, lesion).tolist() == [True, False]
    assert E.POINTING_TOLERANCE * 8 < 1                      # on an 8 px film: strictly inside
    t = E.localisation({"perfect": perfect, "half": half}, lung, lesion, n_random=50)
    assert t.loc["perfect", "lesion_energy"] == 1.0 and t.loc["perfect", "pointing_game"] == 1.0
    assert t.loc["half", "lung_energy"] == 0.75 and t.loc["half", "pointing_game"] == 1.0
    assert t.loc["random map", "lung_energy"] == pytest.approx(0.5, abs=0.03)
    assert t.loc["random map", "lesion_energy"] == pytest.approx(4 / 64, abs=0.02)
    assert t.loc["random map", "pointing_game"] == pytest.approx(4 / 64, abs=0.05)
    assert t["n_lesion"].iloc[0] == 1
    assert t.loc["perfect", "lesion_area"] == 4 / 64 and t.loc["perfect", "lesion_energy_ratio"] == 16.0
    assert t.loc["random map", "lesion_energy_ratio"] == pytest.approx(1.0, abs=0.3)
    blank = E.localisation({"blank": np.zeros_like(half)}, lung, lesion)  # no energy, no peak: not scored
    assert blank.loc["blank", ["lung_energy", "lesion_energy", "pointing_game"]].isna().all()
    none = E.localisation({"half": half}, lung, np.zeros_like(lesion))     # no film with a lesion
    assert none.loc["half", "lung_energy"] == 0.75 and none.loc["half", "lesion_energy":].iloc[:-2].isna().all()


def test_pointing_game_counts_a_peak_within_the_published_tolerance_of_the_mask():
    lesion = np.zeros((4, 64, 64), np.uint8)
    lesion[:, 20:30, 20:30] = 255                            # tolerance at 64 px: 15 / 224 * 64 = 4.3 px
    maps = np.zeros((4, 64, 64), np.float32)
    for i, (y, x) in enumerate([(25, 25), (25, 33), (33, 33), (25, 40)]):  # inside, 4 px right, 4 px diagonal, 11 px
        maps[i, y, x] = 1.0
    assert E.pointing_game(maps, lesion).tolist() == [True, True, False, False]   # 4 * sqrt(2) = 5.7 px > 4.3
    assert E.pointing_game(maps, lesion, tolerance=0).tolist() == [True, False, False, False]
    np.testing.assert_allclose(E.peak_distance(maps, lesion), [0, 4, np.sqrt(32), 11])
    assert E.pointing_radius(maps.shape) == pytest.approx(15 / 224 * 64)
    assert np.isinf(E.peak_distance(maps, np.zeros_like(lesion))).all()
    assert E.pointing_game(maps, np.zeros_like(lesion)).tolist() == [False] * 4  # no lesion: no hit
    t = E.localisation({"cam": maps}, None, lesion, n_random=5, n_boot=0)
    assert t.loc["cam", "pointing_game"] == 0.5 and t.loc["cam", "pointing_strict"] == 0.25


def test_random_maps_are_smooth_seeded_blobs_unless_each_cell_is_a_pixel():
    m = E.random_maps((3, S, S), seed=5)
    assert m.shape == (3, S, S) and m.dtype == np.float32
    assert np.allclose(m.min(axis=(1, 2)), 0) and np.allclose(m.max(axis=(1, 2)), 1, atol=1e-6)
    np.testing.assert_array_equal(m, E.random_maps((3, S, S), seed=5))
    assert not np.allclose(m, E.random_maps((3, S, S), seed=6))

    def neighbours(maps):  # correlation of horizontally adjacent pixels
        return np.corrcoef(maps[:, :, :-1].ravel(), maps[:, :, 1:].ravel())[0, 1]

    assert neighbours(m) > 0.9 and neighbours(E.random_maps((3, S, S), cells=(4, 6))) > 0.9
    assert abs(neighbours(E.random_maps((3, S, S), cells=S))) < 0.1   # i.i.d. pixels, the old kind
    for bad in (1, S + 1, (0, 4)):
        with pytest.raises(ValueError, match="cells must be a grid of 2 to 32x32 cells"):
            E.random_maps((1, S, S), cells=bad)


def test_smooth_random_maps_put_the_mask_area_share_on_a_mask_on_average():
    yy, xx = np.mgrid[:64, :64]
    masks = {"lesion": (yy - 20) ** 2 / 36 + (xx - 45) ** 2 / 64 < 1,   # 3 % of the film, off the grid
             "lungs": ((yy - 34) ** 2 / 400 + (np.abs(xx - 32) - 14) ** 2 / 100) < 1,
             "corner": (yy < 6) & (xx < 6)}
    maps = E.random_maps((600, 64, 64), seed=3)
    for name, mask in masks.items():
        share = E.energy_share(maps, np.broadcast_to(mask, maps.shape))
        assert share.std() > 0.05 * mask.mean(), name                  # each map is not uniform...
        assert share.mean() == pytest.approx(mask.mean(), rel=0.05), name  # ...their mean is the area


def test_localisation_intervals_cover_the_estimate_and_widen_when_films_share_a_patient():
    rng = np.random.default_rng(0)
    lesion = np.zeros((12, S, S), np.uint8)
    lesion[:, 4:12, 20:28] = 255                              # 1/16 of the film
    maps = E.random_maps(lesion.shape, seed=1, cells=4) * 0.5
    maps[:, 4:12, 20:28] += rng.random((12, 1, 1)) * 0.5       # some films light the lesion more
    maps[:6] = maps[0]                                        # six copies of one patient's film
    t = E.localisation({"cam": maps}, None, lesion, n_boot=400, n_random=5)
    g = E.localisation({"cam": maps}, None, lesion, n_boot=400, n_random=5,
                       groups=["p0"] * 6 + [f"p{i}" for i in range(1, 7)])
    for col in ("lesion_energy", "pointing_game", "lesion_energy_ratio"):
        for table in (t, g):
            r = table.loc["cam"]
            assert r[f"{col}_low"] <= r[col] <= r[f"{col}_high"], col
    assert t.loc["cam", "lesion_energy_ratio"] == pytest.approx(t.loc["cam", "lesion_energy"] * 16)
    assert t.loc["cam", "lesion_energy_ratio_low"] > 1.5            # well above the area share
    width = {name: x.loc["cam", "lesion_energy_high"] - x.loc["cam", "lesion_energy_low"]
             for name, x in (("films", t), ("patients", g))}
    assert width["patients"] > 1.2 * width["films"]
    assert list(E.localisation({"cam": maps}, None, lesion, n_boot=400, n_random=5).columns) == list(t.columns)
    assert t.loc["random map", "lesion_energy_ratio_low"] < 1 < t.loc["random map", "lesion_energy_ratio_high"]


def test_faithfulness_ranks_the_true_map_above_random():
    model = corner_model()
    x = np.concatenate([square("tr"), square("tr", "bl")])
    truth = np.zeros((2, S, S), np.float32)
    truth[:, 2:7, S - 7:S - 2] = 1.0
    table, curves = E.faithfulness(model, x, 1, {"truth": truth, "inverse": 1 - truth},
                                   steps=8, reference="mean", n_random=2)
    assert table.loc["truth", "deletion_auc"] < table.loc["random map", "deletion_auc"]
    assert table.loc["truth", "insertion_auc"] > table.loc["random map", "insertion_auc"]
    assert table.loc["inverse", "deletion_auc"] > table.loc["truth", "deletion_auc"]
    c = curves["truth"]
    assert c.deletion.shape == (2, 9) and c.deletion[:, 0] == pytest.approx(c.insertion[:, -1])
    smooth = [E.deletion_insertion(model, x, 1, E.random_maps((2, S, S), seed=r), steps=8, reference="mean")
              for r in range(2)]                               # the random row: smooth blobs
    np.testing.assert_allclose(curves["random map"].deletion, np.mean([s.deletion for s in smooth], 0))
    pd.testing.assert_frame_equal(E.faithfulness_table(curves), table)
    by = E.faithfulness_table(curves, groups=["one square", "two squares"], name="film")
    assert by.index.names == ["film", "method"] and len(by) == 2 * len(table)
    assert by.loc[("two squares", "truth"), "deletion_auc"] == pytest.approx(float(c.deletion_auc[1]))
    assert by.loc[("one square", "inverse"), "insertion_auc"] == pytest.approx(float(curves["inverse"].insertion_auc[0]))


# ---- sanity check ------------------------------------------------------------------------

@functools.cache
def trained_model(shuffle: bool = False) -> tuple[keras.Model, np.ndarray]:
    """A tiny CNN trained briefly to tell films with a bright square (anywhere) from films without,
    or (`shuffle`) the same architecture trained on the same films with the labels shuffled."""
    rng = np.random.default_rng(0)
    x = rng.random((160, S, S, 1), dtype=np.float32) * 0.4
    y = np.arange(160) % 2
    for i in np.flatnonzero(y):
        r, c = rng.integers(0, S - 8, 2)
        x[i, r:r + 8, c:c + 8] = 0.9
    model = tiny("functional", "softmax", 2, seed=1)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    labels = rng.permutation(y) if shuffle else y
    model.fit(x, labels, epochs=6, batch_size=32, verbose=0)
    assert (model.evaluate(x, y, verbose=0)[1] > 0.9) != shuffle
    return model, x[1:12:2]


def blank_when_randomised(model: keras.Model):
    """A method whose maps are Grad-CAM's on `model` and constant (all zero) on any other model."""
    return lambda ex, im, c: E.cam(ex, im, c, "gradcam") if ex.model is model else np.zeros(im.shape[:3])


def test_sanity_check_passes_gradcam_and_fails_a_map_that_ignores_the_weights():
    model, x = trained_model()
    before = [w.copy() for w in model.get_weights()]
    methods = {"gradcam": lambda ex, im, c: E.cam(ex, im, c, "gradcam"),
               "gradcam++": lambda ex, im, c: E.cam(ex, im, c, "gradcam++"),
               "intensity": lambda ex, im, c: im[..., 0], "blank": blank_when_randomised(model)}
    sim, verdict = E.randomisation_check(model, x, 1, methods)
    assert verdict.loc["gradcam", "passes"] and not verdict.loc["intensity", "passes"]
    assert verdict.loc["intensity", "verdict"].startswith("FAIL")
    assert sim["randomised_to"].iloc[0] == "logits"                  # from the top
    assert set(sim["step"]) == {1, 2, 3}                               # every layer with weights
    assert (sim[sim["method"] == "intensity"]["spearman"] > 0.999).all()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # on a copy
    # the cascade: the step where each CAM first falls below the threshold; the control never does
    for method in ("gradcam", "gradcam++"):
        g = sim[sim["method"] == method].set_index("step")
        first = verdict.loc[method, "first_step_below"]
        assert g.loc[first, "spearman"] < 0.5 and (g.loc[:first - 1, "spearman"] >= 0.5).all()
        assert verdict.loc[method, "first_layer_below"] == g.loc[first, "randomised_to"]
    assert pd.isna(verdict.loc["intensity", "first_step_below"])
    # a constant map has no rank correlation: undefined, not a pass (nan_to_num counted it as 0)
    assert (sim[sim["method"] == "blank"]["n_undefined"] == len(x)).all()
    assert sim[sim["method"] == "blank"]["spearman"].isna().all()
    assert pd.isna(verdict.loc["blank", "passes"])
    assert verdict.loc["blank", "verdict"] == f"UNDEFINED: constant maps ({len(x)} of {len(x)} films)"
    # the verdict reads the whole cascade: the lowest defined step, not only the last one
    for method in ("gradcam", "intensity"):
        g = sim[(sim["method"] == method) & (sim["n_undefined"] <= len(x) / 2)]
        assert verdict.loc[method, "spearman_lowest"] == pytest.approx(g["spearman"].min())


def test_a_map_that_changes_then_goes_blank_passes_and_one_blank_from_the_start_is_undefined():
    model, x = trained_model()
    calls = {"n": 0}

    def late_blank(ex, im, c):  # the trained maps, then their mirror image, then nothing
        calls["n"] += 1
        maps = E.cam(ex, im, c, "gradcam")
        return maps if calls["n"] == 1 else maps[:, ::-1, ::-1] if calls["n"] == 2 else np.zeros(im.shape[:3])

    sim, verdict = E.randomisation_check(model, x, 1, {"late blank": late_blank})
    assert sim["spearman"].isna().iloc[-1] and verdict.loc["late blank", "first_step_below"] == 1
    assert verdict.loc["late blank", "passes"] and verdict.loc["late blank", "verdict"].startswith("PASS")
    _, blank = E.randomisation_check(model, x, 1, {"blank": blank_when_randomised(model)})
    assert pd.isna(blank.loc["blank", "spearman_lowest"]) and pd.isna(blank.loc["blank", "passes"])


def test_rank_correlation_is_spearman_and_undefined_for_a_constant_map():
    a, b = np.random.default_rng(0).random((2, 3, 6, 6))
    b[1] = a[1] ** 3                                           # same ranks
    b[2] = 0.5                                                 # constant
    rho = E.rank_correlation(a, b)
    assert rho[0] == pytest.approx(spearmanr(a[0].ravel(), b[0].ravel()).statistic)
    assert rho[1] == pytest.approx(1.0) and np.isnan(rho[2])


def test_data_randomisation_tells_a_model_of_real_labels_from_one_of_shuffled_labels():
    model, x = trained_model()
    shuffled, _ = trained_model(shuffle=True)
    methods = {"gradcam": lambda ex, im, c: E.cam(ex, im, c, "gradcam"),
               "intensity": lambda ex, im, c: im[..., 0], "blank": blank_when_randomised(model)}
    films, verdict = E.data_randomisation_check(model, shuffled, x, 1, methods)
    assert len(films) == 3 * len(x) and set(films["method"]) == set(methods)
    assert verdict.loc["gradcam", "passes"] and verdict.loc["gradcam", "verdict"].startswith("PASS")
    g = films[films["method"] == "gradcam"]
    assert verdict.loc["gradcam", "spearman"] == pytest.approx(g["spearman"].mean())
    assert verdict.loc["gradcam", "ssim"] == pytest.approx(g["ssim"].mean())
    assert verdict.loc["intensity", "spearman"] == pytest.approx(1.0)  # ignores the model: fails
    assert verdict.loc["intensity", "verdict"].startswith("FAIL")
    assert pd.isna(verdict.loc["blank", "passes"]) and verdict.loc["blank", "verdict"].startswith("UNDEFINED")
    _, same = E.data_randomisation_check(model, model, x, 1, ["gradcam"])  # one model twice: no change
    assert same.loc["gradcam", "spearman"] == pytest.approx(1.0) and not same.loc["gradcam", "passes"]
    with pytest.raises(ValueError, match="shuffled model takes .* with 3 classes but the model .* with 2"):
        E.data_randomisation_check(model, tiny("functional", "softmax", 3), x, 1)


# ---- bad inputs --------------------------------------------------------------------------

def test_bad_inputs_are_named():
    model, x = tiny("functional", "softmax", 3), noise(2)
    with pytest.raises(ValueError, match="layer 'logits' is not spatial"):
        E.cam(model, x, 0, layer="logits")
    with pytest.raises(ValueError, match="has no layer 'nope'"):
        E.cam(model, x, 0, layer="nope")
    flat = keras.Sequential([keras.Input((S, S, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no spatial layer"):
        E.cam(flat, x, 0)
    with pytest.raises(ValueError, match="images are 16x16 but model .* expects 32x32"):
        E.cam(model, x[:, :16, :16], 0)
    with pytest.raises(ValueError, match="images have 3 channel\\(s\\) but model .* expects 1"):
        E.cam(model, np.repeat(x, 3, -1), 0)
    with pytest.raises(ValueError, match="class index 3 out of range: model .* has 3 classes"):
        E.cam(model, x, 3)
    with pytest.raises(ValueError, match="class index 2 out of range: .* has 2 classes"):
        E.cam(tiny("functional", "sigmoid", 1), x, [0, 2])
    with pytest.raises(ValueError, match="images must be floats in \\[0, 1\\]"):
        E.cam(model, (x * 255).astype(np.uint8), 0)
    with pytest.raises(ValueError, match=re.escape("unknown CAM method 'gradcam+'")):
        E.cam(model, x, 0, "gradcam+")
    unbuilt = keras.Sequential([keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no defined input"):
        E.cam(unbuilt, x, 0)
    maps = np.zeros((2, S, S), np.float32)
    with pytest.raises(ValueError, match="lesion masks have shape \\(2, 16, 16\\) but the maps are"):
        E.localisation({"m": maps}, None, np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="maps have shape \\(2, 16, 16\\) but the images are"):
        E.deletion_insertion(model, x, 0, maps[:, :16, :16])


def test_figures_draw_aligned_maps():
    x = square("tr")[0]
    m = E.cam(corner_model(), square("tr"), 1)
    lung = np.zeros((S, S), np.uint8)
    lung[8:24, 4:28] = 255
    assert len(plots.cam_overlay(x, m[0], lung=lung, lesion=lung).axes) == 2  # film + colour bar
    f = plots.cam_methods(np.stack([x, x]), {"a": np.stack([m[0], m[0]]), "b": np.stack([m[0], m[0]])})
    assert len(f.axes) == 7
    g = plots.cam_grid(np.stack([x, x]), np.stack([m[0], m[0]]), ["a", "b"], ["a", "a"], ["a", "b"],
                       n_per_class=1)
    assert [ax.get_title() for ax in g.axes[:4]] == ["a -> a (ok)", "", "", "b -> a (WRONG)"]
    with pytest.raises(ValueError, match="CAM of shape \\(16, 16\\) does not match the image \\(32, 32\\)"):
        plots.cam_overlay(x, m[0, :16, :16])


def test_cam_grid_takes_class_indexes_as_notebook_04_passes_them():
    films = np.stack([square("tr")[0]] * 4)
    maps = np.stack([E.cam(corner_model(), square("tr"), 1)[0]] * 4)
    truth, predicted = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])  # ints, as argmax gives them
    g = plots.cam_grid(films, maps, truth, predicted, ["normal", "pneumonia"], n_per_class=1)
    assert [ax.get_title() for ax in g.axes[:4]] == [
        "normal -> normal (ok)", "", "pneumonia -> pneumonia (ok)", "pneumonia -> normal (WRONG)"]
    by_name = plots.cam_grid(films, maps, ["normal", "pneumonia", "pneumonia", "normal"],
                             ["normal", "pneumonia", "normal", "normal"], ["normal", "pneumonia"],
                             n_per_class=1)
    assert [ax.get_title() for ax in by_name.axes] == [ax.get_title() for ax in g.axes]
    with pytest.raises(ValueError, match="class index 2 out of range for the 2 classes"):
        plots.cam_grid(films, maps, truth, np.array([0, 2, 0, 0]), ["normal", "pneumonia"])


def test_nested_backbone_and_reloaded_models(tmp_path):
    keras.utils.set_random_seed(0)
    bi = keras.Input((S, S, 1))
    backbone = keras.Model(bi, keras.layers.Conv2D(8, 3, activation="relu")(bi), name="backbone")
    inp = keras.Input((S, S, 1))
    z = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    model = keras.Model(inp, keras.layers.Activation("softmax", name="probabilities")(z))
    x = noise(2)
    assert E.find_spatial_layer(model).name == "backbone"
    fast = E.cam(model, x, 1)
    np.testing.assert_allclose(fast, toolkit_cam(model, x, 1), atol=1e-5)
    seq = tiny("sequential", "softmax", 3)
    for m in (model, seq):
        m.save(tmp_path / "m.keras")
        back = keras.models.load_model(tmp_path / "m.keras")
        np.testing.assert_allclose(E.cam(back, x, 1), E.cam(m, x, 1), atol=1e-6)


def test_a_new_cam_method_is_one_class_and_one_registry_line(monkeypatch):
    """Grad-CAM's family differs only in its weights: a subclass that gives Grad-CAM's weights
    reproduces Grad-CAM exactly, another weighting gives another map, and once registered a
    method works in `cams` (sharing the gradient pass) and in the sanity checks."""
    import tensorflow as tf

    class MeanGradient(E.GradientCAM):
        name = "mean-gradient"

        def weights(self, a, g, s):
            return tf.reduce_mean(g, axis=(1, 2), keepdims=True)

    class AbsoluteGradient(E.GradientCAM):
        name = "absolute-gradient"

        def weights(self, a, g, s):
            return tf.reduce_mean(tf.abs(g), axis=(1, 2), keepdims=True)

    model, x = tiny("functional", "softmax", 3, seed=3), noise(4, seed=2)
    with pytest.raises(ValueError, match="unknown CAM method 'mean-gradient'"):
        E.cams(model, x, 1, ["mean-gradient"])
    for method in (MeanGradient(), AbsoluteGradient()):
        monkeypatch.setitem(E.REGISTRY, method.name, method)
    maps = E.cams(model, x, 1, ["gradcam", "mean-gradient", "absolute-gradient"])
    np.testing.assert_array_equal(maps["mean-gradient"], maps["gradcam"])
    assert not np.allclose(maps["absolute-gradient"], maps["gradcam"])
    sim, verdict = E.randomisation_check(model, x, 1, ("absolute-gradient",), seed=0)
    assert set(sim["method"]) == {"absolute-gradient"}
