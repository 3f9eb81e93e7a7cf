"""The model zoo: the reference articles' networks, built for cxrnb batches.

Every builder returns an *uncompiled* Functional `keras.Model` with one explicit `keras.Input`
of shape ``(H, W, channels)`` taking what `cxrnb.pipeline.make_dataset` yields: float32 in
[0, 1], grayscale (``channels=1``) or gray repeated (``channels=3``). Everything the input needs
happens inside the model, so a user never has to remember it::

    Input -> [class_names] -> [minmax] -> [to_rgb] -> [imagenet preprocess] -> body
          -> Dense "logits" -> [Activation softmax "probabilities"]

* ``to_rgb`` repeats a grayscale channel three times for the ImageNet backbones (vgg16,
  densenet121), whose first convolution expects RGB.
* ``normalization``: ``"unit"`` feeds the [0, 1] input as it is (the own CNNs' ``"auto"``);
  ``"minmax"`` stretches each image to its own [0, 1] range (article 003 normalises by the
  image's min and max, not by 255: `MinMaxNormalize`); ``"imagenet"`` (the backbones' ``"auto"``)
  applies the backbone's own ``keras.applications.<net>.preprocess_input`` to ``x * 255``, the
  scale its ImageNet weights were trained on (`ImageNetPreprocess`).
* The final Dense layer is always named ``"logits"``; with ``logits=False`` a separate softmax
  layer ``"probabilities"`` follows, so Grad-CAM can take the class score before the softmax
  (article 004 had to edit the last activation to linear to get gradients at all).
* ``class_names`` travel inside the saved ``.keras`` file, in the config of the identity layer
  `ClassNames`; `model_class_names` reads them back from a loaded model.
* All layers live in one flat graph (backbones are built on the model's own tensors, not nested
  as a sub-model), so `cxrnb.explain.find_spatial_layer` and CAM tools reach every convolution by name.

Custom layers are registered (package ``"cxrnb"``) when this module is imported; `load` reads a
saved model and its class names. Plain ``keras.saving.load_model`` in a process that has not
imported ``cxrnb.models`` cannot rebuild them: Keras imports no module a file names except its
own, and no built-in layer carries class names or per-image min-max scaling.
"""
from __future__ import annotations

import inspect
import numbers
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers, ops

__all__ = [
    "MODELS", "Architecture", "NORMALIZATIONS", "VGG16_TRAINABLE", "build_model",
    "model_class_names", "load", "output_activation", "probabilities", "as_probabilities", "small_cnn", "cnn4",
    "compact", "resnet18", "vgg16", "densenet121", "ClassNames", "MinMaxNormalize",
    "ImageNetPreprocess",
]

NORMALIZATIONS = ("auto", "unit", "minmax", "imagenet")
#: Seconds a stalled download socket may wait before the download counts as failed.
DOWNLOAD_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------------
# Custom layers (weightless, registered so a saved model loads after `import cxrnb.models`)
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="cxrnb")
class ClassNames(layers.Layer):
    """Identity layer whose config carries the class names, so they travel in the .keras file
    (a model's outputs are just indices; without names a loaded model cannot say what index 1
    means)."""

    def __init__(self, class_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "class_names": list(self.class_names)}


@keras.saving.register_keras_serializable(package="cxrnb")
class MinMaxNormalize(layers.Layer):
    """Per-image min-max scaling to [0, 1] (article 003): ``(x - min) / (max - min)`` over each
    image's pixels and channels. A constant image maps to 0 (no division by zero)."""

    def __init__(self, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        lo = ops.min(x, axis=(1, 2, 3), keepdims=True)
        hi = ops.max(x, axis=(1, 2, 3), keepdims=True)
        return (x - lo) / ops.maximum(hi - lo, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="cxrnb")
class ImageNetPreprocess(layers.Layer):
    """A backbone's own ``keras.applications.<net>.preprocess_input`` applied to ``x * 255``:
    cxrnb batches are in [0, 1], the ImageNet weights were trained on that function of 0..255."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"ImageNetPreprocess: unknown backbone {backbone!r}; "
                             f"valid: {', '.join(BACKBONES)}")
        self.backbone = backbone

    def call(self, inputs):
        return MODELS[self.backbone].preprocess(ops.cast(inputs, "float32") * 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


# ---------------------------------------------------------------------------------------------
# Shared argument checks, input side and head
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    """The validated common arguments of every builder."""
    model: str
    hw: tuple[int, int]
    channels: int
    num_classes: int
    logits: bool
    weights: str | None
    class_names: tuple[str, ...] | None
    normalization: str


def _is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _spec(model: str, *, input_size: int | tuple[int, int] = 128, channels: int = 1,
          num_classes: int = 2, logits: bool = False, weights: str | os.PathLike | None = None,
          class_names: Sequence[str] | None = None, normalization: str = "auto") -> _Spec:
    """Check the common arguments once, with messages that name the option and the model."""
    size = (input_size, input_size) if _is_int(input_size) else input_size
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(map(_is_int, size)):
        raise ValueError(f"input_size must be an int or a (height, width) pair of ints: got {input_size!r}")
    least, why = MODELS[model].min_size, MODELS[model].why
    if min(size) < least:
        raise ValueError(f"input_size {input_size!r} is too small for {model!r}: it needs at least "
                         f"{least} px per side ({why})")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (gray repeated), as cxrnb.pipeline "
                         f"makes them: got {channels!r}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (a softmax over one class is always 1): "
                         f"got {num_classes!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")
    if normalization == "auto":
        normalization = "imagenet" if model in BACKBONES else "unit"
    if normalization == "imagenet" and model not in BACKBONES:
        raise ValueError(f"normalization='imagenet' applies an ImageNet backbone's preprocess_input; "
                         f"{model!r} has no ImageNet backbone: use 'unit' or 'minmax'")
    if class_names is not None:
        if isinstance(class_names, str):
            raise ValueError(f"class_names must be a sequence of names, not the string {class_names!r}")
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names {list(class_names)} but "
                             f"num_classes is {num_classes}")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names must be unique: got {list(class_names)}")
    if weights is not None:
        weights = os.fspath(weights)
        if weights == "imagenet":
            if model not in BACKBONES:
                extra = (" (no ImageNet ResNet-18 ships with Keras: keras.applications starts at "
                         "ResNet50)" if model == "resnet18" else "")
                raise ValueError(f"weights='imagenet': {model!r} has no ImageNet weights{extra}; pass "
                                 f"weights=None (random initialisation) or a weights file saved from "
                                 f"this model")
        elif not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file for {model!r} not found: {weights}")
    if not isinstance(logits, bool):
        raise ValueError(f"logits must be True or False: got {logits!r}")
    return _Spec(model, (int(size[0]), int(size[1])), int(channels), int(num_classes), logits, weights,
                 class_names, normalization)


def _inputs(s: _Spec, rgb: bool = False):
    """The input side: Input, class names, normalisation (and RGB + ImageNet scaling for
    backbones). Returns (input tensor, preprocessed tensor)."""
    inputs = keras.Input(shape=(*s.hw, s.channels), name="image")
    x = inputs
    if s.class_names is not None:
        x = ClassNames(s.class_names, name="class_names")(x)
    if s.normalization == "minmax":
        x = MinMaxNormalize(name="minmax")(x)
    if rgb and s.channels == 1:
        x = layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
    if s.normalization == "imagenet":
        x = ImageNetPreprocess(s.model, name="imagenet_preprocess")(x)
    return inputs, x


def _finish(s: _Spec, inputs, features) -> keras.Model:
    """The output side shared by all models: Dense "logits", then softmax "probabilities" unless
    ``logits``. Own CNNs given a weights file load it here."""
    out = layers.Dense(s.num_classes, name="logits")(features)
    if not s.logits:
        out = layers.Activation("softmax", name="probabilities")(out)
    model = keras.Model(inputs, out, name=s.model)
    if s.weights is not None and s.model not in BACKBONES:
        model.load_weights(s.weights)
    return model


def _positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int: got {value!r}")
    return int(value)


def _dropout(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"dropout must be a rate in [0, 1): got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Own CNNs
# ---------------------------------------------------------------------------------------------

def small_cnn(*, dense_units: int = 128, **common: Any) -> keras.Model:
    """Article 001's CNN: 2x Conv2D(32, 3x3, relu), MaxPool(2x2), Flatten, Dense(relu), Dense.

    The article lists the layers but not the hidden Dense width; ``dense_units=128`` is the usual
    Keras example's. Its flatten feeds that Dense layer, whose weights grow with the square of the
    input side: keep inputs small. ``common``: the arguments of `build_model`.
    """
    s = _spec("small_cnn", **common)
    inputs, x = _inputs(s)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_positive_int("dense_units", dense_units), activation="relu", name="dense")(x)
    return _finish(s, inputs, x)


def cnn4(*, filters: Sequence[int] = (32, 64, 128, 128), dense_units: int = 512,
         dropout: float = 0.5, **common: Any) -> keras.Model:
    """Article 002's CNN: four blocks of Conv2D(3x3, relu) + MaxPool(2x2), dropout, softmax.

    The article gives no numbers. The defaults (32-64-128-128 filters, Flatten, Dropout(0.5),
    Dense(512, relu)) are the convnet of Chollet's "Deep Learning with Python" for 150 px
    cats-vs-dogs, the one the widespread Kaggle "pneumonia CNN" notebooks copy (article 002 also
    trains at 150 px). ``common``: the arguments of `build_model`.
    """
    s = _spec("cnn4", **common)
    if len(filters) != 4:
        raise ValueError(f"cnn4 has four blocks: filters must hold 4 ints, got {list(filters)!r}")
    inputs, x = _inputs(s)
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(_positive_int("filters", f), 3, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(_dropout(dropout), name="dropout")(x)
    x = layers.Dense(_positive_int("dense_units", dense_units), activation="relu", name="dense")(x)
    return _finish(s, inputs, x)


def compact(*, filters: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.3,
            bn_momentum: float = 0.7, pooled_blocks: int = 2, stem_stride: int = 2,
            **common: Any) -> keras.Model:
    """cxrnb's CPU-friendly default (not from an article): 4 blocks Conv(3x3)-BN-ReLU, the first
    convolution with stride `stem_stride` (2), max-pooling after the first `pooled_blocks` (2),
    GlobalAveragePooling, Dropout, Dense. The last convolution keeps 1/8 of the input's side: an
    8 x 8 grid for CAMs at 64 px, 16 x 16 at 128 px.

    Why a stride-2 first convolution: at full resolution the first block (one input channel, 16
    filters) is memory-bound and took most of the training time; striding it trains about twice
    as many films per second on a 2-core CPU (660 against 300 at 64 px) for the same grid.
    ``stem_stride=1, pooled_blocks=3`` is the earlier layout (same grid, slower);
    ``pooled_blocks=1`` a finer grid whose small receptive field localised worse on the embedded
    data.
    Few weights (no flatten-to-dense), so it trains quickly at 64-128 px on a laptop CPU.
    `bn_momentum` is far below Keras' 0.99: a small set gives ten or so steps per epoch while the
    weights move fast, and the moving statistics that validation and inference use lag behind
    them (at 0.9, validation accuracy swung between 0.3 and 0.8 from epoch to epoch and one seed
    stopped early at chance; at 0.7 they follow within an epoch).
    ``common``: the arguments of `build_model`.
    """
    s = _spec("compact", **common)
    if len(filters) != 4:
        raise ValueError(f"compact has four blocks: filters must hold 4 ints, got {list(filters)!r}")
    if pooled_blocks not in (0, 1, 2, 3):
        raise ValueError(f"compact: pooled_blocks must be 0..3 (blocks followed by max-pooling), got {pooled_blocks!r}")
    if stem_stride not in (1, 2):
        raise ValueError(f"compact: stem_stride must be 1 or 2 (the first convolution's stride), got {stem_stride!r}")
    inputs, x = _inputs(s)
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(_positive_int("filters", f), 3, strides=stem_stride if i == 1 else 1, padding="same",
                          use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        if i <= pooled_blocks:
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(_dropout(dropout), name="dropout")(x)
    return _finish(s, inputs, x)


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet basic block: two 3x3 conv-BN, identity shortcut (1x1 conv-BN when the shape
    changes), add, ReLU."""
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_down_conv")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_down_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def resnet18(**common: Any) -> keras.Model:
    """Article 003's ResNet-18 (He et al. 2016): 7x7/2 conv-BN-ReLU stem, 3x3/2 max-pool, basic
    blocks [2, 2, 2, 2] with 64-128-256-512 filters, GlobalAveragePooling, Dense.

    Keras ships no ResNet-18, so it is written here; there are no ImageNet weights for it
    (``weights`` is None or a file saved from this model). ``common``: the arguments of
    `build_model`.
    """
    s = _spec("resnet18", **common)
    inputs, x = _inputs(s)
    x = layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    for stage, f in enumerate((64, 128, 256, 512), start=1):
        for block in (1, 2):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, f, stride, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return _finish(s, inputs, x)


# ---------------------------------------------------------------------------------------------
# ImageNet backbones
# ---------------------------------------------------------------------------------------------

def _backbone(s: _Spec, x) -> keras.Model:
    """The model's ``keras.applications`` network (no top) on `x`, with its weights: none, a local
    file, or ImageNet's, which Keras downloads from its own URL into its cache. Offline, that
    download fails deep inside model building with a bare ``Exception``; here it fails fast (a
    socket timeout) with one `ConnectionError` sentence saying what to do instead."""
    net = MODELS[s.model].backbone
    display = net.__name__  # keras.applications' own name: VGG16, DenseNet121
    kwargs = dict(include_top=False, input_tensor=x, input_shape=(*s.hw, 3))
    if s.weights != "imagenet":
        return net(weights=s.weights, **kwargs)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urlretrieve has no timeout of its own
    try:
        return net(weights="imagenet", **kwargs)
    except Exception as e:  # get_file wraps every URL error in a bare Exception
        if type(e) is not Exception or not isinstance(e.__context__, OSError):
            raise
        raise ConnectionError(
            f"weights='imagenet' needs to download the {display} ImageNet weights, which failed "
            f"({e}): run where the network is reachable (e.g. Colab), pass a local weights file "
            f"(the no-top .h5 that keras.applications.{display} downloads into ~/.keras/models), "
            f"or weights=None for random initialisation") from e
    finally:
        socket.setdefaulttimeout(previous)


# Which VGG16 layers train. Article 004's TEXT describes the usual fine-tuning: freeze the first
# layers (generic edges and curves), train the last ones. Its CODE does the opposite: it sets
# every layer trainable, then freezes `pretrain_model.layers[-4:]`, i.e. block5_conv1..3 and
# block5_pool; its printed "Non-trainable params: 7,079,424" is exactly block 5's three
# convolutions (3 x (3*3*512*512 + 512)). Its next paragraph says fine-tuning the *first* layers
# worked better for that project, which is what the code does. "last_block" (the default) is what
# the text intends; "article_code" reproduces the code.
VGG16_TRAINABLE = {
    "last_block": "freeze blocks 1-4, train block 5 and the head (the usual fine-tuning; the text)",
    "article_code": "train everything except block 5 (what article 004's code does)",
    "all": "train every layer",
    "head": "freeze the whole VGG16 base, train only the head",
}


def vgg16(*, trainable: str = "last_block", **common: Any) -> keras.Model:
    """Article 004: VGG16 base (``keras.applications.VGG16``, no top) + its head:
    AveragePooling2D(3x3), Flatten, Dense(64, relu), Dropout(0.5), Dense(num_classes).

    ``trainable``: see `VGG16_TRAINABLE`. ``weights``: None, "imagenet" (downloaded) or the path
    of weights for Keras' no-top VGG16 (the downloaded ``.h5``, or a ``.weights.h5`` saved from
    ``keras.applications.VGG16(include_top=False)``). Below 96 px block 5 is smaller than the 3x3 pooling
    window, so the pooling pads ("same") instead of failing; from 96 px it is the article's.
    ``common``: the arguments of `build_model`.
    """
    if trainable not in VGG16_TRAINABLE:
        raise ValueError(f"unknown trainable {trainable!r} for 'vgg16'; valid: {', '.join(VGG16_TRAINABLE)}")
    s = _spec("vgg16", **common)
    inputs, x = _inputs(s, rgb=True)
    base = _backbone(s, x)
    for layer in base.layers:  # article 004's code, literally
        layer.trainable = True
    if trainable == "article_code":
        for layer in base.layers[-4:]:
            layer.trainable = False
    elif trainable == "last_block":
        for layer in base.layers:
            layer.trainable = not layer.name.startswith(("block1", "block2", "block3", "block4"))
    elif trainable == "head":
        for layer in base.layers:
            layer.trainable = False
    padding = "same" if min(base.output.shape[1:3]) < 3 else "valid"
    x = layers.AveragePooling2D((3, 3), padding=padding, name="head_avg_pool")(base.output)
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(64, activation="relu", name="head_dense")(x)
    x = layers.Dropout(0.5, name="head_dropout")(x)
    return _finish(s, inputs, x)


def densenet121(**common: Any) -> keras.Model:
    """CheXNet (Rajpurkar et al. 2017): ``keras.applications.DenseNet121`` (no top),
    GlobalAveragePooling, Dense(num_classes). ``weights``: None, "imagenet" (downloaded) or the
    path of weights for Keras' no-top DenseNet121 (as for `vgg16`). ``common``: the arguments of
    `build_model`.
    """
    s = _spec("densenet121", **common)
    inputs, x = _inputs(s, rgb=True)
    base = _backbone(s, x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    return _finish(s, inputs, x)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    """A registered model, the one record `build_model`, `TrainConfig` and the tests read.

    `build(**common, **options)` makes it; `min_size` is its smallest input side in px and `why`
    says why (own CNNs: the side at which the last feature map is still >= 1 px; tests build each
    model at its minimum and fail one pixel below). ImageNet backbones name their
    ``keras.applications`` network and its ``preprocess_input`` (None for the own CNNs).
    """

    build: Callable[..., keras.Model]
    min_size: int
    why: str
    backbone: Callable[..., keras.Model] | None = None
    preprocess: Callable | None = None


#: Every model by name: a new model is one builder and one line here.
MODELS: dict[str, Architecture] = {
    "small_cnn": Architecture(small_cnn, 6, "two unpadded 3x3 convolutions and a 2x2 max-pool"),
    "cnn4": Architecture(cnn4, 46, "four blocks of an unpadded 3x3 convolution and a 2x2 max-pool"),
    "compact": Architecture(compact, 7, "a stride-2 convolution ('same' padding rounds up) and two 2x2 max-pools"),
    "resnet18": Architecture(resnet18, 32, "five stride-2 steps take 32 px down to 1 px"),
    "vgg16": Architecture(vgg16, 32, "Keras' VGG16 minimum: five 2x2 max-pools", keras.applications.VGG16,
                          keras.applications.vgg16.preprocess_input),  # "caffe": RGB->BGR, minus mean
    "densenet121": Architecture(densenet121, 32, "Keras' DenseNet121 minimum: five stride-2 steps",
                                keras.applications.DenseNet121,
                                keras.applications.densenet.preprocess_input),  # "torch": /255, mean/std
}
#: The models with an ImageNet backbone (``weights="imagenet"``, ``normalization="imagenet"``).
BACKBONES = tuple(k for k, m in MODELS.items() if m.backbone is not None)


def _options(name: str) -> list[str]:
    """The model-specific keyword options of a builder (everything but ``**common``)."""
    params = inspect.signature(MODELS[name].build).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_model(name: str, *, input_size: int | tuple[int, int] = 128, channels: int = 1,
                num_classes: int = 2, logits: bool = False, weights: str | None = None,
                class_names: Sequence[str] | None = None, normalization: str = "auto",
                **options: Any) -> keras.Model:
    """Build the registered model ``name`` (uncompiled) for cxrnb batches.

    ``input_size``: side (or (height, width)) in px; ``channels``: 1 or 3; ``logits``: linear
    outputs (for CAMs and ``from_logits=True`` losses) instead of softmax probabilities;
    ``weights``: None (random), "imagenet" (backbones only; downloaded), or a local file (a
    backbone's Keras no-top ``.h5``; for the own CNNs a ``.weights.h5`` saved from the same
    model); ``class_names``: stored in the model (see `model_class_names`); ``normalization``:
    one of `NORMALIZATIONS`; ``options``: the model's own (e.g. vgg16's ``trainable``).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    unknown = sorted(set(options) - set(_options(name)))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; it takes: "
                         f"{', '.join(_options(name)) or 'no options'}")
    return MODELS[name].build(input_size=input_size, channels=channels, num_classes=num_classes,
                              logits=logits, weights=weights, class_names=class_names,
                              normalization=normalization, **options)


def model_class_names(model: keras.Model) -> list[str] | None:
    """The class names stored in ``model`` by `build_model` (also after save and load), or
    None when it was built without them."""
    for layer in model.layers:
        if isinstance(layer, ClassNames):
            return list(layer.class_names)
    return None


def output_activation(model: keras.Model) -> str | None:
    """The activation that makes `model`'s output: ``"softmax"``, ``"sigmoid"``, ``"linear"``
    (logits), ...; None when the model has no graph to read it from (a subclassed model). The one
    rule for it: `probabilities` and `cxrnb.explain` (which takes scores before it) both ask here."""
    try:
        last = model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if isinstance(last, layers.Softmax):
        return "softmax"
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", "linear") if act is not None else "linear"


def probabilities(model: keras.Model, images, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K), K >= 2, of float model inputs (N, H, W, C): the one way cxrnb
    predicts (a run's predictions, `cxrnb.train.predict_split`; `cxrnb.explain.Explainer.probabilities`;
    the shortcut lessons). `model.predict` (compiled, in inference mode), then `as_probabilities`.
    Integer images are refused: `cxrnb.pipeline.model_input` makes uint8 films the [0, 1] floats
    the models take.
    """
    x = np.asarray(images)
    if x.dtype.kind != "f":
        raise ValueError(f"images must be model inputs (floats in [0, 1]), got dtype {x.dtype}; "
                         "cxrnb.pipeline.model_input converts uint8 films")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not len(x):
        return np.zeros((0, max(2, int(model.output_shape[-1]))), np.float32)
    return as_probabilities(model, model.predict(x, batch_size=batch_size, verbose=0))


def as_probabilities(model: keras.Model, outputs) -> np.ndarray:
    """`model`'s outputs (N, K) as class probabilities (N, max(K, 2)): an output that ends in a
    softmax is used as it is; logits (a linear output) go through a softmax; one sigmoid unit p,
    or one logit z with p = sigmoid(z), becomes (1 - p, p), class 1 the positive class. A model
    whose output activation cannot be read (`output_activation` None) is taken to output
    probabilities.
    """
    out = np.asarray(outputs, np.float32)
    if out.ndim != 2:
        raise ValueError(f"model {model.name!r} output must be (batch, classes), got shape {out.shape}")
    act = output_activation(model)
    if act not in ("softmax", "sigmoid", "linear", None):
        raise ValueError(f"model {model.name!r} ends in a {act!r} activation: its outputs are no class probabilities")
    if out.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-out[:, 0])) if act == "linear" else out[:, 0]
        return np.stack([1 - p, p], axis=1)
    if act == "sigmoid":
        raise ValueError(f"model {model.name!r} has {out.shape[1]} sigmoid units: independent (multi-label) "
                         "scores, not class probabilities")
    if act == "linear":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return out


def load(path: str | os.PathLike) -> tuple[keras.Model, list[str] | None]:
    """A saved model (a run's ``model.keras``) and its class names, in output order (None for a
    model built without them). Not compiled: ready to predict and for CAMs; compile it to train on.

    One import does it (``from cxrnb.models import load``): importing this module registers the
    cxrnb layers the file holds, which Keras alone cannot rebuild."""
    model = keras.saving.load_model(path, compile=False)
    return model, model_class_names(model)


