"""The model zoo: every model trains one step, outputs, input handling, save/load, vgg16's
trainable modes, Grad-CAM layer lookup and every bad input. Tiny inputs, CPU, weights=None."""
from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from cxrnb import models
from cxrnb.explain import find_spatial_layer
from cxrnb.models import (MODELS, VGG16_TRAINABLE, ImageNetPreprocess, MinMaxNormalize,
                          build_model, model_class_names)

# model -> (tiny input side, expected Grad-CAM layer)
TINY = {
    "small_cnn": (32, "conv2"),
    "cnn4": (48, "conv4"),
    "compact": (32, "block4_relu"),
    "resnet18": (64, "stage4_block2_out"),  # at 32 px its last map is 1 x 1: no CAM (tested below)
    "vgg16": (32, "block5_conv3"),
    "densenet121": (64, "relu"),  # at 32 px its last map is 1 x 1
}
ALL_COMBOS = [(1, 2, "auto"), (3, 3, "auto"), (1, 3, "minmax"), (3, 2, "unit")]  # channels, classes, normalization
CASES = ([(m, *c) for m in ("small_cnn", "cnn4", "compact", "vgg16") for c in ALL_COMBOS]
         + [("resnet18", 1, 2, "minmax"), ("resnet18", 3, 3, "auto"), ("densenet121", 1, 3, "auto")])
EAGER = ("small_cnn", "cnn4", "vgg16", "resnet18", "densenet121")  # graph-mode steps: compact only (tracing costs seconds)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _batch(size: int, channels: int, n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def _non_trainable(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


@pytest.mark.parametrize("name,channels,num_classes,normalization", CASES)
def test_every_model_builds_and_takes_a_training_step(name, channels, num_classes, normalization):
    size, cam_layer = TINY[name]
    names = [f"class{i}" for i in range(num_classes)]
    model = build_model(name, input_size=size, channels=channels, num_classes=num_classes,
                        class_names=names, normalization=normalization)
    assert model.input.shape == (None, size, size, channels)
    assert model.layers[-1].name == "probabilities" and model.layers[-2].name == "logits"
    assert find_spatial_layer(model).name == cam_layer  # the one rule every CAM uses
    assert model_class_names(model) == names
    x = _batch(size, channels)
    y = np.arange(4) % num_classes
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(), run_eagerly=name in EAGER)
    before = model.get_layer("logits").kernel.numpy().copy()
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss)
    assert not np.allclose(before, model.get_layer("logits").kernel.numpy())
    p = model.predict_on_batch(x)
    assert p.shape == (4, num_classes)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["compact", "vgg16"])
def test_logits_model_gives_the_pre_softmax_scores_of_the_same_weights(name):
    size = TINY[name][0]
    probs = build_model(name, input_size=size, num_classes=3)
    logits = build_model(name, input_size=size, num_classes=3, logits=True)
    assert logits.layers[-1].name == "logits"
    logits.set_weights(probs.get_weights())  # softmax has no weights: same structure
    x = _batch(size, 1)
    z = keras.ops.convert_to_numpy(logits(x, training=False))
    p = keras.ops.convert_to_numpy(probs(x, training=False))
    pre = keras.Model(probs.input, probs.get_layer("logits").output)
    np.testing.assert_allclose(z, keras.ops.convert_to_numpy(pre(x, training=False)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p, keras.ops.convert_to_numpy(keras.ops.softmax(z)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(z.sum(axis=1), 1.0)  # really logits, not probabilities


@pytest.mark.parametrize("name,kwargs", [
    ("compact", {"normalization": "minmax", "channels": 3}),
    ("vgg16", {"trainable": "article_code"}),
])
def test_save_load_round_trip_keeps_predictions_class_names_and_frozen_layers(tmp_path, name, kwargs):
    size = TINY[name][0]
    model = build_model(name, input_size=size, num_classes=3, class_names=["normal", "covid", "bacteria"],
                        **kwargs)
    x = _batch(size, kwargs.get("channels", 1))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    assert model_class_names(loaded) == ["normal", "covid", "bacteria"]
    assert _non_trainable(loaded) == _non_trainable(model)
    assert model_class_names(build_model(name, input_size=size, **kwargs)) is None


def _vgg16_conv_params(blocks: range) -> int:
    """Parameters of VGG16's convolutions in the given blocks, from the architecture's table."""
    convs = {1: [(3, 64), (64, 64)], 2: [(64, 128), (128, 128)], 3: [(128, 256)] + [(256, 256)] * 2,
             4: [(256, 512)] + [(512, 512)] * 2, 5: [(512, 512)] * 3}
    return sum(3 * 3 * cin * cout + cout for b in blocks for cin, cout in convs[b])


@pytest.mark.parametrize("size", [32, 100])
def test_vgg16_trainable_modes_freeze_the_right_layers(size):
    counts = {mode: _non_trainable(build_model("vgg16", input_size=size, trainable=mode))
              for mode in VGG16_TRAINABLE}
    assert counts["article_code"] == 7_079_424 == _vgg16_conv_params(range(5, 6))  # article 004's print
    assert counts["last_block"] == _vgg16_conv_params(range(1, 5)) == 7_635_264
    assert counts["head"] == _vgg16_conv_params(range(1, 6))
    assert counts["all"] == 0
    code = build_model("vgg16", input_size=size, trainable="article_code")
    assert [l.name for l in code.layers if not l.trainable] == [
        "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]


def test_vgg16_at_the_articles_100px_has_its_printed_parameter_count():
    model = build_model("vgg16", input_size=100, num_classes=3, trainable="article_code")
    assert model.count_params() == 14_747_715  # article 004: "Total params: 14,747,715"
    assert model.get_layer("head_avg_pool").padding == "valid"


def test_minmax_layer_maps_each_image_to_its_own_unit_range():
    a = np.linspace(0.2, 0.6, 16, dtype=np.float32).reshape(1, 4, 4, 1)
    b = np.linspace(0.5, 0.9, 16, dtype=np.float32).reshape(1, 4, 4, 1)
    flat = np.full((1, 4, 4, 1), 0.7, np.float32)
    out = keras.ops.convert_to_numpy(MinMaxNormalize()(np.concatenate([a, b, flat])))
    expected = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4, 1)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    np.testing.assert_allclose(out[1], expected, atol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)  # a constant image: no division by zero


def test_imagenet_backbone_gets_rgb_repeat_and_its_own_preprocess_on_0_255():
    model = build_model("vgg16", input_size=32, channels=1)
    x = _batch(32, 1, n=2)
    seen = keras.Model(model.input, model.get_layer("imagenet_preprocess").output)(x)
    expected = keras.applications.vgg16.preprocess_input(np.repeat(x, 3, axis=-1) * 255.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(seen), expected, rtol=1e-5, atol=1e-3)
    torch = keras.ops.convert_to_numpy(ImageNetPreprocess("densenet121")(np.repeat(x, 3, axis=-1)))
    np.testing.assert_allclose(torch, keras.applications.densenet.preprocess_input(np.repeat(x, 3, -1) * 255.0),
                               rtol=1e-5, atol=1e-5)
    assert "imagenet_preprocess" not in [l.name for l in build_model("compact", input_size=32).layers]


def test_local_weights_files_load(tmp_path):
    own = build_model("compact", input_size=32)
    own.save_weights(tmp_path / "compact.weights.h5")
    again = build_model("compact", input_size=32, weights=str(tmp_path / "compact.weights.h5"))
    x = _batch(32, 1)
    np.testing.assert_allclose(again.predict_on_batch(x), own.predict_on_batch(x), rtol=1e-6)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(tmp_path / "vgg16_notop.weights.h5")
    vgg = build_model("vgg16", input_size=32, weights=tmp_path / "vgg16_notop.weights.h5")
    np.testing.assert_array_equal(vgg.get_layer("block5_conv3").kernel.numpy(),
                                  base.get_layer("block5_conv3").kernel.numpy())


@pytest.mark.parametrize("name", [m for m in MODELS if m not in ("vgg16", "densenet121")])
def test_own_models_build_at_their_minimum_size_and_refuse_one_pixel_less(name):
    least = MODELS[name].min_size
    assert build_model(name, input_size=least).output.shape == (None, 2)
    with pytest.raises(ValueError, match=rf"too small for '{name}': it needs at least {least} px"):
        build_model(name, input_size=least - 1)


def test_the_cam_layer_is_spatial_skips_pooling_and_refuses_a_model_without_convolutions():
    model = build_model("compact", input_size=128)
    assert find_spatial_layer(model).output.shape == (None, 16, 16, 128)
    assert build_model("compact", input_size=(64, 48)).input.shape == (None, 64, 48, 1)
    pooled = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                               keras.layers.AveragePooling2D(3, name="pool")], name="pooled")
    assert find_spatial_layer(pooled).name == "conv"  # the 2x2 pooled map adds no detail
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mlp")
    with pytest.raises(ValueError, match="model 'mlp' has no spatial layer"):
        find_spatial_layer(dense)
    with pytest.raises(ValueError, match=r"'stage4_block2_out' leaves a \(1, 1\) map .*larger input size"):
        find_spatial_layer(build_model("resnet18", input_size=32))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "resnet50"}, ValueError, r"unknown model 'resnet50'; valid: small_cnn, cnn4, compact, resnet18"),
    ({"name": "small_cnn", "depth": 3}, ValueError, r"unknown option\(s\) \['depth'\] for model 'small_cnn'; it takes: dense_units"),
    ({"name": "resnet18", "trainable": "all"}, ValueError, r"unknown option\(s\) \['trainable'\] for model 'resnet18'; it takes: no options"),
    ({"name": "vgg16", "trainable": "first"}, ValueError, r"unknown trainable 'first' for 'vgg16'; valid: last_block, article_code"),
    ({"name": "vgg16", "input_size": 31}, ValueError, r"too small for 'vgg16': it needs at least 32 px"),
    ({"name": "densenet121", "input_size": (64, 16)}, ValueError, r"too small for 'densenet121': it needs at least 32 px"),
    ({"name": "compact", "input_size": 32.0}, ValueError, r"input_size must be an int or a \(height, width\) pair"),
    ({"name": "compact", "channels": 2}, ValueError, r"channels must be 1 \(grayscale\) or 3 .*got 2"),
    ({"name": "compact", "num_classes": 1}, ValueError, r"num_classes must be an int >= 2.*got 1"),
    ({"name": "compact", "normalization": "zscore"}, ValueError, r"unknown normalization 'zscore'; valid: auto, unit, minmax, imagenet"),
    ({"name": "cnn4", "normalization": "imagenet"}, ValueError, r"'cnn4' has no ImageNet backbone: use 'unit' or 'minmax'"),
    ({"name": "resnet18", "weights": "imagenet"}, ValueError, r"no ImageNet ResNet-18 ships with Keras"),
    ({"name": "small_cnn", "weights": "imagenet"}, ValueError, r"'small_cnn' has no ImageNet weights; pass weights=None"),
    ({"name": "vgg16", "weights": "nowhere/vgg16.h5"}, FileNotFoundError, r"weights file for 'vgg16' not found: nowhere/vgg16.h5"),
    ({"name": "compact", "num_classes": 3, "class_names": ["normal", "covid"]}, ValueError,
     r"class_names has 2 names \['normal', 'covid'\] but num_classes is 3"),
    ({"name": "compact", "class_names": "ab"}, ValueError, r"class_names must be a sequence of names"),
    ({"name": "compact", "class_names": ["a", "a"]}, ValueError, r"class_names must be unique"),
    ({"name": "compact", "dropout": 1.0}, ValueError, r"dropout must be a rate in \[0, 1\): got 1.0"),
    ({"name": "cnn4", "filters": (32, 64)}, ValueError, r"cnn4 has four blocks: filters must hold 4 ints"),
])
def test_bad_input_is_refused_with_a_clear_message(kwargs, error, match):
    kwargs = dict(kwargs)
    with pytest.raises(error, match=match):
        build_model(kwargs.pop("name"), **kwargs)


@pytest.mark.parametrize("name,display,module,url", [
    ("vgg16", "VGG16", "vgg16", "WEIGHTS_PATH_NO_TOP"),
    ("densenet121", "DenseNet121", "densenet", "DENSENET121_WEIGHT_PATH_NO_TOP")])
def test_imagenet_weights_offline_fail_fast_with_one_sentence(monkeypatch, tmp_path, name, display, module, url):
    # Keras' own download code, pointed at an unreachable origin (connection refused on the
    # discard port) with an empty cache: it fails on any machine in well under a second.
    import importlib

    from keras.src.backend import config

    monkeypatch.setattr(importlib.import_module(f"keras.src.applications.{module}"), url, "http://127.0.0.1:9/w.h5")
    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path))
    monkeypatch.setattr(models, "DOWNLOAD_TIMEOUT_S", 2.0)
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=(
            rf"weights='imagenet' needs to download the {display} ImageNet weights, which failed "
            rf"\(.+\): run where the network is reachable \(e.g. Colab\), pass a local weights "
            rf"file .*, or weights=None for random initialisation")):
        build_model(name, input_size=32, weights="imagenet")
    assert not list(tmp_path.rglob("*.h5"))  # nothing half-downloaded left in the cache
    assert time.perf_counter() - start < 10


# ---- one way to class probabilities ---------------------------------------------------------

def _tiny(act: str, n: int, side: int) -> keras.Model:
    """A small convolutional model whose output is `n` units of activation `act`."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((side, side, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp))
    z = keras.layers.Dense(n, name="logits", kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))(x)
    return keras.Model(inp, z if act == "linear" else keras.layers.Activation(act, name="probabilities")(z))


def test_one_way_to_class_probabilities_and_the_three_callers_agree(tmp_path):
    """`models.probabilities` is what a run's predictions (`train.predict_split`), the Explainer and
    the shortcut lessons use; it equals the old ways, Keras' predict over the evaluation pipeline
    and the softmax of the logits, to float precision, for softmax, sigmoid and logit outputs."""
    from cxrnb.explain import explainer
    from cxrnb.lessons import shortcuts
    from cxrnb.pipeline import load_images, make_dataset, model_input
    from cxrnb.sources import read_synthetic
    from cxrnb.synthetic import generate
    from cxrnb.train import predict_split

    side, classes = 32, ["normal", "pneumonia"]
    generate(tmp_path, n_patients=6, size=side, layout="kaggle-pneumonia", classes=classes, split_fractions=(0.7, 0.0, 0.3),
             progress=False)
    split = read_synthetic(tmp_path).assign(split="test")
    films = load_images(split, side, progress=False)
    x = model_input(films)
    for act, n in (("softmax", 2), ("sigmoid", 1), ("linear", 2), ("linear", 1)):
        model = _tiny(act, n, side)
        p = models.probabilities(model, x, batch_size=5)  # batches of 5: the batching changes nothing
        assert p.shape == (len(x), 2) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
        np.testing.assert_allclose(models.probabilities(model, x), p, atol=1e-7)
        z = explainer(model).logits(x)                   # the old Explainer way: softmax of the logits
        e = np.exp(np.concatenate([np.zeros_like(z), z], 1) if n == 1 else z - z.max(1, keepdims=True))
        np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), atol=1e-6)
        if act != "linear":                              # the old predict_split way: Keras' predict
            old = model.predict(make_dataset(split, classes, image_size=side, batch_size=4, progress=False), verbose=0)
            np.testing.assert_allclose(p, np.concatenate([1 - old, old], 1) if n == 1 else old, atol=1e-6)
        assert np.ptp(p[:, 1]) > 0.01                    # the films get different answers
        # the three callers
        preds = predict_split(model, split, classes, batch_size=4)
        np.testing.assert_allclose(preds[["p_normal", "p_pneumonia"]].to_numpy(), p, atol=1e-6)
        np.testing.assert_allclose(explainer(model).probabilities(x), p, atol=1e-7)
        np.testing.assert_allclose(shortcuts._probabilities(model, films, classes), p, atol=1e-7)
        assert (shortcuts.predict_labels(model, films, classes) == np.asarray(classes)[p.argmax(1)]).all()
    with pytest.raises(ValueError, match="images must be model inputs"):
        models.probabilities(model, films)
    with pytest.raises(ValueError, match=r"3 class names \['a', 'b', 'c'\] for a model with 2 classes"):
        shortcuts.predict_labels(model, films, ["a", "b", "c"])
    assert models.probabilities(model, x[:0]).shape == (0, 2)
    assert [models.output_activation(_tiny(a, 2, side)) for a in ("softmax", "sigmoid", "linear")] == [
        "softmax", "sigmoid", "linear"]
