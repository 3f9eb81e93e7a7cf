"""Training: `TrainConfig` presets (the reference articles' recipes), one `train` function, run folders.

    split index --check--> tf.data (cxrnb.pipeline) --> model (cxrnb.models) --fit--> run folder
                                                                                     model.keras
                                                                                     config.json
                                                                                     history.csv
                                                                                     split.csv
                                                                                     predictions.csv
                                                                                     metrics.json

Everything that can be wrong with the inputs (an empty split, a class missing from train, a
label in val/test the model cannot predict, an image size too small for the backbone, an
unknown preset or model, ImageNet weights without a network, a run folder holding another run)
fails *before* training starts, with a sentence naming the problem. A run folder is marked
``INCOMPLETE`` while training runs; `metrics.json` is written last and atomically, so a folder
with a `metrics.json` is always a finished run.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .index import SPLITS, atomic_write, check_index, check_output, write_index
from .splits import group_column

#: Ways to weight the loss for class imbalance (see `TrainConfig.loss_weighting`).
LOSS_WEIGHTINGS = ("none", "balanced", "mistakes")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
#: What the best epoch, early stopping and learning-rate drops watch (larger is better for *accuracy/*auc).
MONITORS = ("val_loss", "val_accuracy", "val_auc", "loss")
NORMALIZATIONS = ("auto", "unit", "minmax", "imagenet")
INCOMPLETE = "INCOMPLETE"
RUN_FILES = ("model.keras", "config.json", "history.csv", "metrics.json", "predictions.csv", "split.csv")


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model. Immutable, validated, JSON-serialisable (like `AugmentPolicy`).

    model / model_options: a `cxrnb.models.MODELS` name and its keyword options.
    image_size: model input side in pixels; channels: 1 (grayscale) or 3 (gray repeated).
    normalization: done inside the model ("auto": ImageNet scaling for ImageNet backbones, the
        pipeline's [0, 1] otherwise; "minmax": per-image min-max, article 003).
    weights: None (random init) or "imagenet" / a weights file, for backbones that take them.
    augment: a `cxrnb.augment` preset name, applied to the training split only.
    optimizer, learning_rate, batch_size, epochs: as in Keras.
    loss_weighting: "none"; "balanced" = inverse-frequency class weights from the training split
        (scikit-learn's ``compute_class_weight("balanced")``); "mistakes" = article 003's
        weighted loss, every misclassified image's loss times `mistake_weight`, whatever its class.
    defer_weights: epochs of plain training before class weights switch on ("balanced" only):
        deferred re-weighting (Cao et al. 2019, "DRW"). Weights applied from the first step
        over-correct a model that has not learned the finding yet: on a 95 % / 5 % collection a
        2-epoch run called every film the rare class. The best epoch is chosen among the weighted
        epochs (their validation loss is the weighted one), and the optimiser starts them afresh
        (`_reset_optimizer`); a run no longer than `defer_weights` epochs trains without weights,
        and says so.
    early_stopping / reduce_lr: patience in epochs on `monitor` (None switches the callback off);
        the weights of the best epoch are kept. "val_auc" (ROC AUC on val, one-vs-rest pooled)
        ranks epochs by what they tell apart: unlike the (weighted) val loss it does not prefer an
        undecided early epoch to a confident one with a few mistakes on a handful of rare films.
    seed: seeds Python, NumPy, TensorFlow, the shuffle order and the augmentation draws.
    """

    name: str = "custom"
    model: str = "compact"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    image_size: int = 128
    channels: int = 1
    normalization: str = "auto"
    weights: str | None = None
    augment: str = "default"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    loss_weighting: str = "balanced"
    mistake_weight: float = 5.0
    defer_weights: int = 0
    early_stopping: int | None = 4
    reduce_lr: int | None = 2
    reduce_lr_factor: float = 0.5
    monitor: str = "val_loss"
    seed: int = 0

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, allow_none: bool = False, minimum: int = 1) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"TrainConfig.{name} must be {'a positive integer' if minimum else 'an integer >= 0'}"
                                 f"{' or None' if allow_none else ''}, got {value!r}")

        from .models import MODELS  # noqa: PLC0415 - keep `import cxrnb.train` light for the CLI

        if self.model not in MODELS:
            raise ValueError(f"TrainConfig.model: unknown model {self.model!r}; choose one of {sorted(MODELS)}")
        if not isinstance(self.model_options, Mapping):
            raise ValueError(f"TrainConfig.model_options must be a mapping, got {self.model_options!r}")
        object.__setattr__(self, "model_options", dict(self.model_options))
        for name in ("image_size", "batch_size", "epochs"):
            positive_int(name, getattr(self, name))
        positive_int("seed", self.seed, minimum=0)
        positive_int("defer_weights", self.defer_weights, minimum=0)
        positive_int("early_stopping", self.early_stopping, allow_none=True)
        positive_int("reduce_lr", self.reduce_lr, allow_none=True)
        if self.channels not in (1, 3):
            raise ValueError(f"TrainConfig.channels must be 1 or 3, got {self.channels!r}")
        choices = {"normalization": NORMALIZATIONS, "optimizer": OPTIMIZERS, "loss_weighting": LOSS_WEIGHTINGS,
                   "monitor": MONITORS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}: unknown value {getattr(self, name)!r}; choose one of {list(allowed)}")
        from .augment import PRESETS as AUGMENT_PRESETS

        if self.augment not in AUGMENT_PRESETS:
            raise ValueError(f"TrainConfig.augment: unknown augmentation preset {self.augment!r}; "
                             f"choose one of {sorted(AUGMENT_PRESETS)}")
        for name in ("learning_rate", "mistake_weight", "reduce_lr_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"TrainConfig.{name} must be a number > 0, got {v!r}")
        if not self.reduce_lr_factor < 1:
            raise ValueError(f"TrainConfig.reduce_lr_factor must be below 1, got {self.reduce_lr_factor!r}")

    # -- conversions (the shape of AugmentPolicy's) ------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly fields."""
        return {f.name: (dict(getattr(self, f.name)) if f.name == "model_options" else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}; fields are {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some fields changed (e.g. ``epochs=3``)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "TrainConfig":
        """A named recipe from `PRESETS`, optionally with fields changed."""
        if name not in _PRESETS:
            raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(name=name, **{**_PRESETS[name], **changes})


# Each preset is a reference article's recipe. Where the article gives no number, the comment
# says so and where our value comes from. Optimiser defaults are Keras' own (Adam, lr 1e-3).
_PRESETS: dict[str, dict[str, Any]] = {
    # Ours, not an article's: fast on a laptop CPU (a small conv net with batch norm and global
    # average pooling), mild augmentation, inverse-frequency class weights. 64 px: four times
    # less work than 128 px, and the embedded findings and the real Kaggle subset are learned at
    # that size (test AUC >= 0.9 in every run of docs/lessons.md); raise it for subtler findings.
    # Learning rate 3e-3 and patience 6 / 3: on the embedded data, Adam's 1e-3 had not converged
    # after 20 epochs, and validation loss is noisy on sets this small (patience 4 stopped too early).
    # Class weights from epoch 4 (deferred re-weighting, Cao et al. 2019): from the first step, on
    # a 95 % / 5 % collection they pushed an untrained model onto the rare class, and on the 10 %
    # effusion lesson they let the weighted validation loss prefer an undecided first epoch.
    "default": dict(model="compact", image_size=64, augment="default", epochs=20, learning_rate=3e-3,
                    loss_weighting="balanced", defer_weights=3, early_stopping=6, reduce_lr=3),
    # Article 001 (COVID-19 vs normal): 2 conv layers + dense, 16 epochs. It gives no input size,
    # optimiser, batch size or augmentation: 128 px (its flatten layer makes larger inputs very
    # slow on a CPU), Keras' Adam defaults, batch 32, no augmentation, no callbacks.
    "article001": dict(model="small_cnn", image_size=128, augment="none", epochs=16,
                       loss_weighting="none", early_stopping=None, reduce_lr=None),
    # Article 002 (pneumonia vs normal): 4-block CNN with dropout, 150x150, pixels / 255, Adam,
    # rotation 20 + zoom 30 %, 80 epochs (experiment V). No batch size or callbacks given: 32, none.
    "article002": dict(model="cnn4", image_size=150, augment="article002", epochs=80,
                       loss_weighting="none", early_stopping=None, reduce_lr=None),
    # Article 003 (effusion vs no finding, 10 % / 90 %): ResNet-18 on 1024 px films shrunk to 256,
    # per-image min-max normalisation (not / 255), rotation 10, and a loss multiplied by 5 for
    # every mistake. No optimiser, batch size or epoch count given: Adam defaults, 32, 20 epochs.
    "article003": dict(model="resnet18", image_size=256, normalization="minmax", augment="article003",
                       epochs=20, loss_weighting="mistakes", mistake_weight=5.0,
                       early_stopping=None, reduce_lr=None),
    # Article 004 (normal / COVID-19 / bacterial, 3 classes): VGG16 from ImageNet at 100x100 with
    # its own head, Adam, categorical cross-entropy, reduce-LR-on-plateau and early stopping,
    # imgaug gamma + crop. No learning rate, batch size, epochs or patiences given: 1e-4 (a usual
    # fine-tuning rate), 32, 30 epochs, patience 5 / 2. Which layers train: see cxrnb.models
    # (`trainable`): the default is the text's "freeze the early layers".
    "article004": dict(model="vgg16", image_size=100, weights="imagenet", augment="article004",
                       learning_rate=1e-4, epochs=30, loss_weighting="none", early_stopping=5,
                       reduce_lr=2),
}
PRESETS: tuple[str, ...] = tuple(_PRESETS)


# --------------------------------------------------------------------------- losses

def _register(cls):
    import keras

    return keras.saving.register_keras_serializable(package="cxrnb")(cls)


def mistake_weighted_loss(weight: float):
    """Article 003's loss: sparse cross-entropy, times `weight` for every image the model gets wrong.

    The article's table: right answers weigh 1, wrong answers 5, *whichever* class was missed.
    It punishes mistakes, not the minority class: on a 10/90 task most mistakes early in
    training are majority-class images, so it does not by itself push the model towards the
    rare class (compare with loss_weighting="balanced" in notebook 03).
    """
    import keras

    @_register
    class MistakeWeightedLoss(keras.losses.Loss):
        def __init__(self, weight: float = 5.0, name: str = "mistake_weighted_ce", **kwargs):
            super().__init__(name=name, **kwargs)
            self.weight = float(weight)

        def call(self, y_true, y_pred):
            from keras import ops

            y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
            wrong = ops.not_equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true)
            return ce * ops.where(wrong, self.weight, 1.0)

        def get_config(self):
            return {**super().get_config(), "weight": self.weight}

    return MistakeWeightedLoss(weight)


def class_weights(labels: Sequence[str] | pd.Series, classes: Sequence[str]) -> dict[int, float]:
    """Inverse-frequency weights {class id: weight} (scikit-learn's "balanced"): n / (k * n_c)."""
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(pd.Series(list(labels)).astype(str))
    w = compute_class_weight("balanced", classes=np.asarray(list(classes)), y=y)
    return {i: float(v) for i, v in enumerate(w)}


# --------------------------------------------------------------------------- checks

def check_split(split: pd.DataFrame, classes: Sequence[str] | None = None) -> list[str]:
    """The class names to train on, after checking the split can be trained and evaluated on.

    Raises ValueError naming the problem: no `split` column, an empty train or val split, a
    class with no training image, a val/test label the model would never predict.
    """
    if not isinstance(split, pd.DataFrame):
        raise TypeError(f"split must be a pandas DataFrame with a 'split' column, got {type(split).__name__}")
    check_index(split, where="split")
    if "split" not in split.columns:
        raise ValueError("the index has no 'split' column: split it first (cxrnb.splits.split_by_patient)")
    bad = sorted(set(split["split"].astype(str)) - set(SPLITS))
    if bad:
        raise ValueError(f"unknown split name(s) {bad}: use {list(SPLITS)}")
    parts = {s: split[split["split"] == s] for s in SPLITS}
    for s in ("train", "val"):
        if len(parts[s]) == 0:
            raise ValueError(f"the {s} split is empty ({len(split)} images in all): "
                             f"re-split with a non-zero {s} fraction")
    train_labels = set(parts["train"]["label"].astype(str))
    classes = sorted(train_labels) if classes is None else [str(c) for c in classes]
    if len(classes) < 2:
        raise ValueError(f"the train split holds only the class(es) {sorted(train_labels)}: a classifier needs 2 or more")
    absent = [c for c in classes if c not in train_labels]
    if absent:
        raise ValueError(f"class(es) {absent} have no image in the train split: the model cannot learn them; "
                         "re-split, or drop them from the task")
    for s in ("val", "test"):
        unseen = sorted(set(parts[s]["label"].astype(str)) - set(classes))
        if unseen:
            n = int(parts[s]["label"].astype(str).isin(unseen).sum())
            raise ValueError(f"the {s} split has label(s) {unseen} ({n} images) that are not among the "
                             f"trained classes {classes}: the model can never predict them")
    return classes


def _check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a run folder holding another run (or a file), unless `overwrite`."""
    check_output(run_dir, "run folder", folder=True)  # not a file; writable (probed)
    if run_dir.is_dir():
        present = [f for f in (*RUN_FILES, INCOMPLETE) if (run_dir / f).exists()]
        if present and not overwrite:
            raise ValueError(f"run folder {run_dir} already holds a run ({', '.join(present)}): "
                             "choose a new folder, or pass overwrite=True (--overwrite) to replace it")
        others = [p.name for p in run_dir.iterdir() if p.name not in (*RUN_FILES, INCOMPLETE, "best.weights.h5")]
        if others and overwrite:
            raise ValueError(f"run folder {run_dir} holds other files ({', '.join(sorted(others)[:5])}): "
                             "refusing to overwrite a folder that is not a cxrnb run")


def write_text(path: Path, text: str) -> None:
    """Write `text` atomically (`cxrnb.index.atomic_write`): never half a file."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


# --------------------------------------------------------------------------- training

@dataclass(frozen=True)
class Batch:
    """Films of one part of a run's split, side by side with what the model said about them.

    `images` uint8 (N, H, W) at the model's size; `x` the model's input (`pipeline.model_input`);
    `y` true and `predicted` class ids (argmax), `proba` (N, K); `lungs` / `lesions` uint8 masks
    or None (`pipeline.load_masks`); `groups` patient groups (`patient_group`: duplicates joined; for patient-level intervals); `rows`
    the split's rows.
    """

    rows: pd.DataFrame
    images: np.ndarray
    x: np.ndarray
    y: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray
    lungs: np.ndarray | None
    lesions: np.ndarray | None
    groups: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """True where the predicted class is the label."""
        return self.predicted == self.y

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Run:
    """A finished training run: what `train` returns and `Run.load(folder)` reads back.

    Holds the model (best epoch's weights), config, classes, history, split, predictions (one row
    per film of every part) and metrics.json; `evaluate` scores a part (cached, bootstrap samples
    kept for `evaluate.compare`), `batch` hands out films with their predictions and masks.
    `seconds` is the fitting time (None for a loaded run).
    """

    model: Any
    config: TrainConfig
    classes: list[str]
    history: pd.DataFrame
    split: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    run_dir: Path
    seconds: float | None = None
    _evaluations: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        """The run saved in `run_dir`; a clear error for a folder that is not a finished run."""
        from .index import read_index
        from .models import load

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder")
        if (run_dir / INCOMPLETE).exists() or not (run_dir / "metrics.json").is_file():
            raise ValueError(f"{run_dir} is not a finished run (training was interrupted or is still running: "
                             f"{'INCOMPLETE marker present' if (run_dir / INCOMPLETE).exists() else 'no metrics.json'})")
        info = json.loads((run_dir / "config.json").read_text())
        return cls(model=load(run_dir / "model.keras")[0], config=TrainConfig.from_dict(info["config"]),
                   classes=info["classes"], history=pd.read_csv(run_dir / "history.csv"),
                   split=read_index(run_dir / "split.csv"),
                   predictions=pd.read_csv(run_dir / "predictions.csv",
                                           dtype={"patient_id": str, "patient_group": str}),
                   metrics=json.loads((run_dir / "metrics.json").read_text()), run_dir=run_dir)

    @property
    def threshold(self) -> float | None:
        """The binary decision threshold chosen on val (None: argmax)."""
        return (self.metrics.get("threshold") or {}).get("value")

    def summary(self) -> str:
        """One line per split: accuracy and AUC with their CIs beside the majority baseline."""
        lines = [f"{self.config.name} ({self.config.model}, {self.config.image_size} px): "
                 f"{len(self.history)} epochs, best epoch {self.metrics['best_epoch']}"]
        lines += [f"  {s:<5} {metrics_line(self.metrics[s])}" for s in ("val", "test") if s in self.metrics]
        return "\n".join(lines)

    def arrays(self, part: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y, proba, groups) of one part: class ids, probabilities (N, K) and patient groups."""
        return _arrays(self.predictions, self.classes, part)

    def evaluate(self, part: str = "test", *, threshold: float | None = None, n_boot: int = 2000):
        """The `evaluate.Evaluation` of one part (argmax, or `threshold` on the last class's
        probability), majority baseline from the train split, with its bootstrap samples."""
        key = (part, threshold, n_boot)
        if key not in self._evaluations:
            self._evaluations[key] = evaluate_part(self.predictions, self.classes, part, seed=self.config.seed,
                                                   n_boot=n_boot, threshold=threshold,
                                                   majority_class=self.metrics["majority_class"])
        return self._evaluations[key]

    def batch(self, part: str = "test", n: int | None = None, *, cache=None) -> Batch:
        """The first `n` films (all when None) of one part, in split order, with their predictions."""
        from .pipeline import load_images, load_masks, model_input

        rows = self.split[self.split["split"] == part].head(n)
        pred = self.predictions[self.predictions["split"] == part].head(n)
        if list(pred["path"]) != [str(p) for p in rows["path"]]:
            raise ValueError(f"{self.run_dir}: predictions.csv and split.csv list different {part} films")
        size = int(self.model.input_shape[1])
        images = load_images(rows, size, cache=cache, progress=False)
        proba = pred[[f"p_{c}" for c in self.classes]].to_numpy(float)
        lungs, lesions = load_masks(rows, size)
        return Batch(rows, images, model_input(images, int(self.model.input_shape[-1])), pred["y"].to_numpy(int),
                     proba.argmax(axis=1), proba, lungs, lesions, pred["patient_group"].astype(str).to_numpy())


def metrics_line(m: Mapping[str, Any], digits: int = 2) -> str:
    """One line of an `Evaluation.to_dict()`: accuracy and AUC with CIs beside the majority baseline."""
    from .evaluate import format_interval

    def ci(key: str) -> str:
        iv = m["ci"][key]
        return format_interval(iv["estimate"], iv["low"], iv["high"], digits) or "n/a"

    return (f"accuracy {ci('accuracy')} vs majority baseline {ci('majority_baseline')}; "
            f"balanced accuracy {ci('balanced_accuracy')}; AUC {ci('auc')} ({m['n_images']} images)")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and make TF ops deterministic (same seed -> same metrics on CPU)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - very old TF
        pass


def build(config: TrainConfig, classes: Sequence[str]):
    """The config's model, compiled with its optimiser and loss (outputs are probabilities)."""
    import keras

    from .models import build_model

    model = build_model(config.model, input_size=config.image_size, channels=config.channels,
                        num_classes=len(classes), logits=False, weights=config.weights,
                        class_names=list(classes), normalization=config.normalization,
                        **config.model_options)
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
           "rmsprop": keras.optimizers.RMSprop}[config.optimizer](learning_rate=config.learning_rate)
    loss = (mistake_weighted_loss(config.mistake_weight) if config.loss_weighting == "mistakes"
            else keras.losses.SparseCategoricalCrossentropy())
    auc = [_sparse_auc_class()(len(classes))] if config.monitor == "val_auc" else []
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy", *auc])
    return model


def _higher_is_better(monitor: str) -> bool:
    return monitor.endswith(("accuracy", "auc"))


@functools.cache
def _sparse_auc_class():
    """The metric class, defined (and registered for `keras.models.load_model`) on first use, so
    that importing this module does not import Keras."""
    import keras

    @keras.saving.register_keras_serializable(package="cxrnb")
    class SparseAUC(keras.metrics.AUC):
        """ROC AUC from integer labels and class probabilities: one-vs-rest, pooled over the
        classes (for two classes, the AUC of the positive class)."""

        def __init__(self, n_classes: int = 2, name: str = "auc", **kwargs):
            super().__init__(name=name, **kwargs)
            self.n_classes = n_classes

        def update_state(self, y_true, y_pred, sample_weight=None):
            y = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), self.n_classes)
            if self.n_classes == 2:
                y, y_pred = y[:, 1:], y_pred[:, 1:]
            elif sample_weight is not None:
                sample_weight = keras.ops.repeat(keras.ops.reshape(sample_weight, (-1, 1)), self.n_classes, axis=1)
            return super().update_state(y, y_pred, sample_weight)

        def get_config(self):
            return {**super().get_config(), "n_classes": self.n_classes}

    return SparseAUC


def _callbacks(config: TrainConfig, run_dir: Path, progress: bool, has_val: bool, *, select: bool = True,
               append: bool = False) -> list:
    """Checkpoint of the best epoch, history, early stopping, LR drops, progress bar. `select=False`
    (the plain epochs of deferred re-weighting): only the history and the progress bar."""
    import keras

    monitor = config.monitor if has_val else "loss"
    mode = "max" if _higher_is_better(monitor) else "min"
    cbs: list = [keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=append)]
    if select:
        cbs.append(keras.callbacks.ModelCheckpoint(str(run_dir / "best.weights.h5"), monitor=monitor, mode=mode,
                                                   save_best_only=True, save_weights_only=True))
    if select and config.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.early_stopping))
    if select and config.reduce_lr:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=config.reduce_lr_factor,
                                                     patience=config.reduce_lr, min_lr=1e-6))
    if progress:
        from tqdm.keras import TqdmCallback

        cbs.append(TqdmCallback(verbose=0, leave=False))
    return cbs


def train(
    config: TrainConfig | str,
    split: pd.DataFrame,
    run_dir: str | Path,
    *,
    classes: Sequence[str] | None = None,
    cache=None,
    strategy=None,
    overwrite: bool = False,
    progress: bool = False,
    evaluate_test: bool = True,
    n_boot: int = 2000,
) -> Run:
    """Train `config` on the split's train part, keep the best epoch (on val), evaluate, save the run.

    `split` is an index with a `split` column (train/val and optionally test). `cache` is an
    `ImageCache` (or folder) so that pixels decoded by validation are not decoded again.
    `strategy` is an optional `tf.distribute.Strategy` (MirroredStrategy for several GPUs,
    TPUStrategy in Colab); the model is built and compiled in its scope. The run folder gets
    model.keras, config.json, history.csv, split.csv, predictions.csv and, last, metrics.json
    (val, and test when `evaluate_test`: accuracy, AUC and the rest with patient-bootstrap CIs;
    for two classes, the decision threshold is chosen on val and applied to test).
    """
    from .pipeline import make_dataset

    config = TrainConfig.preset(config) if isinstance(config, str) else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or a preset name, got {type(config).__name__}")
    classes = check_split(split, classes)
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, overwrite)
    seed_everything(config.seed)
    if strategy is None:
        model = build(config, classes)  # fails here for a bad size, model or offline weights
    else:
        with strategy.scope():
            model = build(config, classes)

    if run_dir.is_dir() and overwrite:
        for f in (*RUN_FILES, "best.weights.h5"):
            (run_dir / f).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / INCOMPLETE).write_text("training started; this folder is not a finished run\n")
    write_text(run_dir / "config.json", json.dumps(
        {"config": config.to_dict(), "classes": classes, "counts": _counts(split)}, indent=1) + "\n")
    write_index(split, run_dir / "split.csv")  # `root` relative to the run folder: it can move

    parts = {s: split[split["split"] == s] for s in SPLITS if (split["split"] == s).any()}
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if replicas > 1 and len(parts["train"]) < config.batch_size:
        raise ValueError(f"train split has {len(parts['train'])} films, fewer than batch_size {config.batch_size}: "
                         f"on {replicas} replicas training drops the last partial batch, so no batch would be left")
    common = dict(image_size=config.image_size, channels=config.channels, seed=config.seed, cache=cache,
                  progress=progress)
    train_ds = make_dataset(parts["train"], classes, training=True, augment=config.augment,
                            batch_size=config.batch_size, drop_remainder=replicas > 1, **common)
    val_part, val_batch = replica_split(parts["val"], config.batch_size, replicas)
    val_ds = make_dataset(val_part, classes, batch_size=val_batch, **common)
    weights = class_weights(parts["train"]["label"], classes) if config.loss_weighting == "balanced" else None
    plain = min(config.defer_weights, config.epochs) if weights is not None else 0
    if weights is not None and plain == config.epochs:
        warnings.warn(f"{config.name}: class weights start after {config.defer_weights} epochs of plain training "
                      f"(defer_weights) but the run has {config.epochs}: it trains without class weights",
                      stacklevel=2)
        weights, plain = None, 0  # an ordinary unweighted run: best epoch kept, callbacks on

    t0 = time.perf_counter()
    if plain:  # deferred re-weighting: plain epochs first, logged but never kept as the best epoch
        model.fit(train_ds, validation_data=val_ds, epochs=plain, verbose=0, shuffle=False,
                  callbacks=_callbacks(config, run_dir, progress, has_val=True, select=False))
        _reset_optimizer(model.optimizer)  # the weighted epochs start as a new training would
    if weights is not None:  # validate the objective we train: the best epoch is not the one that
        val_ds = _weighted(val_ds, weights)  # fits the common class best, which undoes the weights
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=plain, class_weight=weights,
              verbose=0, shuffle=False, callbacks=_callbacks(config, run_dir, progress, has_val=True, append=plain > 0))
    seconds = time.perf_counter() - t0
    if (run_dir / "best.weights.h5").is_file():
        model.load_weights(str(run_dir / "best.weights.h5"))
    history = pd.read_csv(run_dir / "history.csv")
    history["weighted"] = (history["epoch"] >= plain) & (weights is not None)
    write_text(run_dir / "history.csv", history.to_csv(index=False))
    model.save(run_dir / "model.keras")

    predictions = predict_split(model, split, classes, cache=cache, parts=parts)
    write_text(run_dir / "predictions.csv", predictions.to_csv(index=False))
    metrics = _metrics(predictions, classes, history, config, evaluate_test, n_boot)
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1, allow_nan=True) + "\n")
    (run_dir / "best.weights.h5").unlink(missing_ok=True)
    (run_dir / INCOMPLETE).unlink()
    return Run(model, config, classes, history, split, predictions, metrics, run_dir, seconds)


def _reset_optimizer(optimizer) -> None:
    """Zero the optimiser's state (step count, moments; not the learning rate), as if new.

    Why, when deferred class weights switch on: Adam divides each step by a running estimate of
    the gradient's size, built over the plain epochs. Weighted, a rare film's gradient is several
    times larger (weight ~5 at 10 %), and that estimate adapts over about 1000 steps (beta_2 =
    0.999), longer than these runs: the first weighted steps were several times too large, and in
    some runs they wrecked a model that had learned (test AUC 0.96 -> 0.45). A fresh state starts
    the weighted phase with steps of the learning rate's size, as training starts.
    """
    for v in optimizer.variables:
        if not v.path.endswith("learning_rate"):
            v.assign(np.zeros(v.shape, v.dtype))


def replica_split(part: pd.DataFrame, batch_size: int, replicas: int = 1) -> tuple[pd.DataFrame, int]:
    """(films, batch size) to validate on `replicas` devices: every batch splits evenly between them.

    Under a `tf.distribute` strategy each batch is split between the replicas; in Keras 3.15 with
    TensorFlow 2.21 an uneven split fails ("Inputs to operation AddN must have the same size") and
    an empty one fails in oneDNN's batch norm. So the films kept and the batch size are multiples
    of `replicas` (then so is the last batch), and the last `len(part) % replicas` films (fewer than `replicas`) are
    left out of validation, with a warning (training drops its last partial batch instead: each
    epoch reshuffles, so no film is left out for good). One device: `part` and `batch_size` as given.
    """
    if replicas <= 1:
        return part, batch_size
    keep = len(part) - len(part) % replicas
    if keep < len(part):
        warnings.warn(f"validation on {replicas} replicas uses {keep} of {len(part)} val films (the last "
                      f"{len(part) - keep} do not split evenly between the replicas)", stacklevel=3)
    return part.iloc[:keep], max(replicas, batch_size - batch_size % replicas)  # last batch: a multiple too


def _weighted(ds, weights: Mapping[int, float]):
    """`ds` with each film's class weight as a third element: Keras then reports the *weighted*
    validation loss, the quantity training minimises, for the best epoch, early stopping and the
    learning-rate schedule (with the plain loss they favour models that ignore the rare class)."""
    import tensorflow as tf

    table = tf.constant([weights[i] for i in range(len(weights))], tf.float32)
    return ds.map(lambda x, y: (x, y, tf.gather(table, tf.reshape(tf.cast(y, tf.int32), [-1]))))


def _counts(split: pd.DataFrame) -> dict[str, dict[str, int]]:
    t = pd.crosstab(split["split"], split["label"])
    return {s: {c: int(v) for c, v in t.loc[s].items()} for s in t.index}


def predict_split(model, split: pd.DataFrame, classes: Sequence[str], *, cache=None,
                  parts: Mapping[str, pd.DataFrame] | None = None,
                  batch_size: int = 64) -> pd.DataFrame:
    """Class probabilities of every image of the split (val and test, and train), one row per image.

    Columns: path, patient_id, patient_group, split, label, y (class id), p_<class> ...
    The evaluation pipeline (`make_dataset`, not shuffled, not augmented) goes through
    `model.predict` and `cxrnb.models.as_probabilities`, as `cxrnb.models.probabilities` does.
    """
    from .models import as_probabilities
    from .pipeline import labels_to_ids, make_dataset

    size = int(model.input_shape[1])
    channels = int(model.input_shape[-1])
    parts = parts or {s: split[split["split"] == s] for s in SPLITS if (split["split"] == s).any()}
    frames = []
    for s, part in parts.items():
        ds = make_dataset(part, classes, image_size=size, channels=channels, batch_size=batch_size,
                          cache=cache, progress=False)
        proba = as_probabilities(model, model.predict(ds, verbose=0))
        f = part[["path", "patient_id"]].copy()
        f["patient_group"] = part[group_column(part)]
        f["split"] = s
        f["label"] = part["label"].astype(str).to_numpy()
        f["y"] = labels_to_ids(part["label"], classes)
        for i, c in enumerate(classes):
            f[f"p_{c}"] = proba[:, i].astype(float)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def _arrays(predictions: pd.DataFrame, classes: Sequence[str], part: str):
    """(y, proba, groups) arrays of one part of a predictions frame."""
    p = predictions[predictions["split"] == part]
    return (p["y"].to_numpy(int), p[[f"p_{c}" for c in classes]].to_numpy(float),
            p["patient_group"].astype(str).to_numpy())


def evaluate_part(predictions: pd.DataFrame, classes: Sequence[str], part: str, *, majority_class: str,
                  seed: int = 0, n_boot: int = 2000, threshold: float | None = None):
    """`evaluate.evaluate` of one part of a predictions frame, patient-level bootstrap (groups from
    `patient_group`), the majority baseline answering the run's train majority `majority_class`:
    the one place a run's part is scored (metrics.json, `Run.evaluate`, `evaluate_run`)."""
    from .evaluate import evaluate

    y, p, g = _arrays(predictions, classes, part)
    return evaluate(y, p, classes, groups=g, n_boot=n_boot, seed=seed, threshold=threshold,
                    majority_class=majority_class)


def best_epoch(history: pd.DataFrame, monitor: str = "val_loss") -> int:
    """The epoch (1-based) whose weights `train` keeps: best `monitor` (else training loss) among the
    epochs that could be kept (with deferred re-weighting, the weighted ones: column `weighted`)."""
    h = history[history["weighted"].astype(bool)] if "weighted" in history and history["weighted"].any() else history
    metric = monitor if monitor in h else "loss"
    best = h[metric].idxmax() if _higher_is_better(metric) else h[metric].idxmin()
    return int(h.loc[best, "epoch"]) + 1 if "epoch" in h else int(best) + 1


def _metrics(predictions, classes, history, config, evaluate_test, n_boot):
    """metrics.json: best epoch, train majority class, a val-chosen threshold, val/test evaluations."""
    from .evaluate import choose_threshold

    train_majority = predictions.loc[predictions["split"] == "train", "y"].value_counts().idxmax()
    majority = classes[int(train_majority)]
    out: dict[str, Any] = {"classes": list(classes), "epochs_run": int(len(history)),
                           "best_epoch": best_epoch(history, config.monitor), "majority_class": majority}
    threshold = None
    if len(classes) == 2:
        y, p, _ = _arrays(predictions, classes, "val")
        if len(np.unique(y)) == 2:
            threshold = float(choose_threshold(y, p))
            out["threshold"] = {"value": threshold, "rule": "youden", "chosen_on": "val"}
        else:  # a tiny val split can hold one class: no threshold can be chosen on it
            out["threshold"] = {"value": None, "rule": "youden", "chosen_on": "val",
                                "note": f"val holds only {classes[int(y[0])]!r}: no threshold chosen, argmax used"}
    for part in ("val", "test") if evaluate_test else ("val",):
        if not (predictions["split"] == part).any():
            continue
        common = dict(seed=config.seed, n_boot=n_boot, majority_class=majority)
        out[part] = evaluate_part(predictions, classes, part, **common).to_dict()
        if threshold is not None:
            out[part + "_at_threshold"] = evaluate_part(predictions, classes, part, threshold=threshold,
                                                        **common).to_dict()
    return out


# --------------------------------------------------------------------------- run folders

def evaluate_run(run_dir: str | Path, *, split: str | Path | pd.DataFrame | None = None,
                 n_boot: int = 2000, progress: bool = False) -> str:
    """Re-predict a finished run's model and report val/test metrics with patient-bootstrap CIs.

    With `split` (a split CSV or frame, e.g. another source's), the saved model is evaluated on
    its rows instead: its val/test parts, or every row when it has no such parts (split "test").
    The binary threshold stays the one chosen on the run's own val split.
    """
    from .index import read_index

    run = Run.load(run_dir)
    if split is None:
        data = run.split
    else:
        data = read_index(split) if not isinstance(split, pd.DataFrame) else split
        if "split" not in data or not data["split"].isin(["val", "test"]).any():
            data = data.assign(split="test")
    data = data[data["split"].isin(["val", "test"])]
    check_split(pd.concat([run.split[run.split["split"] == "train"], data]), run.classes)
    preds = predict_split(run.model, data, run.classes)
    config, threshold = run.config, run.threshold
    lines = [f"run {Path(run_dir).as_posix()}: {config.name} ({config.model}, {config.image_size} px), "
             f"classes {run.classes}" + (f", threshold {threshold:.3f} (chosen on val)" if threshold is not None else "")]
    for part in ("val", "test"):
        if (preds["split"] == part).any():
            ev = evaluate_part(preds, run.classes, part, seed=config.seed, n_boot=n_boot, threshold=threshold,
                               majority_class=run.metrics["majority_class"])
            lines += [f"--- {part}", ev.summary()]
    return "\n".join(lines)
