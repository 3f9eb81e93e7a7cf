"""Training: presets, checks before training, run folders, determinism, learning end to end."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from cxrnb import cli
from cxrnb.splits import split_by_patient
from cxrnb.synthetic import generate
from cxrnb.train import (INCOMPLETE, PRESETS, TrainConfig, best_epoch, check_split, class_weights, evaluate_run,
                         Run, mistake_weighted_loss, replica_split, train)
from cxrnb.validate import load_index

TINY = dict(image_size=48, batch_size=8, epochs=2, augment="none", early_stopping=None, reduce_lr=None)


@pytest.fixture(scope="module")
def easy_split(tmp_path_factory) -> pd.DataFrame:
    """An easy two-class synthetic set (normal vs effusion), split by patient."""
    root = tmp_path_factory.mktemp("easy")
    generate(root, n_patients=36, size=64, classes=("normal", "effusion"), difficulty=0.0,
             images_per_patient=(1, 2), seed=3, progress=False)
    index, _ = load_index("synthetic", root, progress=False)
    return split_by_patient(index, val=0.2, test=0.2, seed=0)


# --- TrainConfig ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_and_round_trip_through_json(name):
    cfg = TrainConfig.preset(name)
    assert cfg.name == name
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_article_presets_carry_their_articles_recipes():
    assert TrainConfig.preset("article001").model == "small_cnn"
    assert TrainConfig.preset("article001").epochs == 16
    a2 = TrainConfig.preset("article002")
    assert (a2.model, a2.image_size, a2.augment, a2.epochs) == ("cnn4", 150, "article002", 80)
    a3 = TrainConfig.preset("article003")
    assert (a3.model, a3.normalization, a3.loss_weighting, a3.mistake_weight) == ("resnet18", "minmax", "mistakes", 5.0)
    a4 = TrainConfig.preset("article004")
    assert (a4.model, a4.image_size, a4.weights, a4.augment) == ("vgg16", 100, "imagenet", "article004")


@pytest.mark.parametrize("changes, match", [
    ({"model": "resnet50"}, "unknown model 'resnet50'"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"learning_rate": -1.0}, "learning_rate must be a number > 0"),
    ({"loss_weighting": "focal"}, "loss_weighting: unknown value 'focal'"),
    ({"augment": "strong"}, "unknown augmentation preset 'strong'"),
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"reduce_lr_factor": 1.5}, "reduce_lr_factor must be below 1"),
    ({"defer_weights": -1}, "defer_weights must be an integer >= 0"),
    ({"seed": 1.5}, "seed must be an integer >= 0"),
])
def test_bad_config_values_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.preset("default", **changes)


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ValueError, match="unknown training preset 'article005'"):
        TrainConfig.preset("article005")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lr'\]"):
        TrainConfig.from_dict({"lr": 0.1})


# --- losses and weights -----------------------------------------------------------------------

def test_class_weights_are_inverse_frequency():
    w = class_weights(["a"] * 90 + ["b"] * 10, ["a", "b"])
    assert w[0] == pytest.approx(100 / (2 * 90))
    assert w[1] == pytest.approx(100 / (2 * 10))


def test_mistake_weighted_loss_multiplies_wrong_answers_only():
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]], dtype="float32")  # right, right, wrong, wrong
    ce = -np.log(p[np.arange(4), y])
    expected = ce * np.array([1, 1, 5, 5])
    loss = mistake_weighted_loss(5.0)
    got = keras.ops.convert_to_numpy(loss.call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# --- checks before training ------------------------------------------------------------------

def test_split_checks_name_the_problem(easy_split):
    with pytest.raises(ValueError, match="no 'split' column"):
        check_split(easy_split.drop(columns="split"))
    with pytest.raises(ValueError, match="the val split is empty"):
        check_split(easy_split.assign(split=easy_split["split"].replace({"val": "train"})))
    no_effusion_in_train = easy_split[~((easy_split["split"] == "train") & (easy_split["label"] == "effusion"))]
    with pytest.raises(ValueError, match="the train split holds only the class"):
        check_split(no_effusion_in_train)
    with pytest.raises(ValueError, match=r"class\(es\) \['covid'\] have no image in the train split"):
        check_split(easy_split, classes=["covid", "effusion", "normal"])
    odd = easy_split.copy()
    odd.loc[odd.index[odd["split"] == "test"][:2], "label"] = "covid"
    with pytest.raises(ValueError, match=r"the test split has label\(s\) \['covid'\] \(2 images\)"):
        check_split(odd)


def test_bad_inputs_fail_before_a_run_folder_is_made(easy_split, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="too small"):
        train(TrainConfig.preset("default", model="vgg16", **{**TINY, "image_size": 16}), easy_split, run)
    assert not run.exists()


def test_imagenet_weights_offline_fail_before_training(easy_split, tmp_path, monkeypatch):
    import cxrnb.models as models

    def offline(*args, **kwargs):
        raise RuntimeError("weights='imagenet' needs to download (no network)")

    monkeypatch.setattr(models, "build_model", offline)
    with pytest.raises(RuntimeError, match="weights='imagenet' needs to download"):
        train(TrainConfig.preset("article004", **TINY), easy_split, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- training ----------------------------------------------------------------------------------

def test_default_model_overfits_a_small_easy_set(easy_split, tmp_path):
    """Learning works end to end: 32 easy images are fitted (train accuracy > 0.9)."""
    small = easy_split[easy_split["split"] == "train"].head(32)
    data = pd.concat([small, small.assign(split="val")])
    cfg = TrainConfig.preset("default", image_size=64, batch_size=8, epochs=25, augment="none",
                             early_stopping=None, reduce_lr=None, learning_rate=3e-3, monitor="loss")
    result = train(cfg, data, tmp_path / "run", evaluate_test=False, n_boot=50)
    assert result.history["accuracy"].iloc[-1] > 0.9


def test_run_folder_is_complete_and_reloadable(easy_split, tmp_path):
    run = tmp_path / "run"
    result = train(TrainConfig.preset("default", **TINY), easy_split, run, n_boot=100)
    for f in ("model.keras", "config.json", "history.csv", "metrics.json", "predictions.csv", "split.csv"):
        assert (run / f).is_file(), f
    assert not (run / INCOMPLETE).exists()
    loaded = Run.load(run)
    assert loaded.classes == result.classes == ["effusion", "normal"]
    assert len(loaded.history) == 2 and loaded.seconds is None
    assert {"val", "test", "threshold", "majority_class", "best_epoch"} <= set(loaded.metrics)
    pd.testing.assert_frame_equal(loaded.predictions, result.predictions, check_dtype=False)
    # the loaded run scores a part exactly as the trained one, and caches the evaluation
    assert loaded.evaluate("test", n_boot=100).summary() == result.evaluate("test", n_boot=100).summary()
    assert loaded.evaluate("test", n_boot=100) is loaded.evaluate("test", n_boot=100)
    assert loaded.threshold == result.metrics["threshold"]["value"]
    # a batch's model inputs reproduce the stored predictions; its labels and masks line up
    batch = loaded.batch("test", 5)
    assert len(batch) == 5 and batch.images.dtype == np.uint8 and batch.x.shape == (5, 48, 48, 1)
    np.testing.assert_allclose(loaded.model.predict(batch.x, verbose=0), batch.proba, atol=1e-5)
    assert list(batch.y) == [loaded.classes.index(c) for c in batch.rows["label"]]
    assert batch.lungs.shape == batch.images.shape and set(np.unique(batch.lungs)) <= {0, 255}
    again = evaluate_run(run, n_boot=50)
    assert "test" in again and "val" in again
    assert len(loaded.arrays("test")[0]) == int((easy_split["split"] == "test").sum())


def test_a_runs_model_loads_in_a_fresh_process_exactly_as_the_readme_says(easy_split, tmp_path):
    """The README's block, verbatim, in a new interpreter whose cwd holds ``runs/r1``; before it,
    plain Keras (no cxrnb import) fails as the README says."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(from cxrnb\.models import load\n.*?)```", readme, re.S).group(1)
    result = train(TrainConfig.preset("default", **TINY), easy_split, tmp_path / "runs" / "r1", n_boot=20)
    images = np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    before = ("import keras, numpy as np\nimages = np.load('images.npy')\n"
              "try:\n    keras.saving.load_model('runs/r1/model.keras')\n    plain = 'loaded'\n"
              "except Exception as e:\n    plain = str(e)\n")
    after = "import json\nprint(json.dumps({'plain': plain, 'classes': classes, 'proba': proba.tolist()}))\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", before + block + after], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "could not be deserialized" in out["plain"]
    assert out["classes"] == result.classes == ["effusion", "normal"]
    expected = result.model.predict(images, verbose=0)
    np.testing.assert_allclose(out["proba"], expected, atol=1e-5)


def test_a_run_folder_holding_another_run_is_refused(easy_split, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig.preset("default", **{**TINY, "epochs": 1}), easy_split, run, n_boot=20)
    with pytest.raises(ValueError, match="already holds a run"):
        train(TrainConfig.preset("default", **{**TINY, "epochs": 1}), easy_split, run)
    train(TrainConfig.preset("default", **{**TINY, "epochs": 1}), easy_split, run, overwrite=True, n_boot=20)


def test_interrupted_run_is_marked_incomplete(easy_split, tmp_path, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "fit", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.preset("default", **TINY), easy_split, run)
    assert (run / INCOMPLETE).is_file()
    assert not (run / "metrics.json").exists()
    with pytest.raises(ValueError, match="not a finished run"):
        Run.load(run)


def test_same_seed_gives_the_same_metrics(easy_split, tmp_path):
    cfg = TrainConfig.preset("default", **{**TINY, "augment": "default"})
    train(cfg, easy_split, tmp_path / "a", n_boot=100)
    train(cfg, easy_split, tmp_path / "b", n_boot=100)
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()


def test_cli_train_and_evaluate(easy_split, tmp_path, capsys):
    csv = tmp_path / "split.csv"
    easy_split.to_csv(csv, index=False)
    run = tmp_path / "run"
    assert cli.main(["-q", "train", str(csv), "--preset", "default", "--out", str(run), "--epochs", "1",
                     "--image-size", "48", "--batch-size", "8", "--augment", "none"]) == 0
    assert (run / "metrics.json").is_file()
    assert cli.main(["-q", "evaluate", str(run), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "test" in out
    assert cli.main(["-q", "train", str(csv), "--preset", "nope", "--out", str(tmp_path / "r2")]) == 2
    assert "unknown training preset 'nope'" in capsys.readouterr().err


def test_a_val_split_with_one_class_trains_without_a_threshold(easy_split, tmp_path):
    """Tiny real subsets can leave one class in val: no threshold is chosen, and nothing crashes."""
    one_class_val = easy_split[~((easy_split["split"] == "val") & (easy_split["label"] == "effusion"))]
    result = train(TrainConfig.preset("default", **TINY), one_class_val, tmp_path / "run", n_boot=20)
    assert result.metrics["threshold"]["value"] is None
    assert "no threshold chosen" in result.metrics["threshold"]["note"]
    assert "test" in result.metrics


def test_class_weighted_runs_report_the_weighted_validation_loss(easy_split, tmp_path):
    """With loss_weighting="balanced" the kept epoch is chosen on the loss training minimises: the
    validation loss in the history is the class-weighted mean cross-entropy of the val films."""
    rare = (easy_split["split"] == "train") & (easy_split["label"] == "effusion")
    skewed = easy_split[~(rare & (easy_split.groupby(rare).cumcount() % 3 != 0))]  # 1 in 3 train effusions
    cfg = TrainConfig(**{**TINY, "epochs": 1, "loss_weighting": "balanced"})
    result = train(cfg, skewed, tmp_path / "run")
    val = result.predictions[result.predictions["split"] == "val"]
    w = class_weights(skewed.loc[skewed["split"] == "train", "label"], result.classes)
    p = val[[f"p_{c}" for c in result.classes]].to_numpy()[np.arange(len(val)), val["y"].to_numpy()]
    weights = np.array([w[int(y)] for y in val["y"]])
    expected = float(np.sum(weights * -np.log(np.clip(p, 1e-7, 1))) / len(val))
    assert result.history["val_loss"].iloc[-1] == pytest.approx(expected, rel=2e-3)
    assert abs(expected - float(np.mean(-np.log(np.clip(p, 1e-7, 1))))) > 1e-3  # weighting matters here


def test_deferred_weights_train_plain_first_and_keep_a_weighted_epoch(easy_split, tmp_path):
    """defer_weights=2: the first two epochs are exactly an unweighted run's (same seed, same
    history), the later ones are weighted, and the kept epoch is a weighted one even when a plain
    epoch had the lower validation loss (the two losses are not the same quantity)."""
    base = {**TINY, "epochs": 3}
    plain = train(TrainConfig(**{**base, "loss_weighting": "none"}), easy_split, tmp_path / "plain", n_boot=20)
    drw = train(TrainConfig(**{**base, "loss_weighting": "balanced", "defer_weights": 2}), easy_split,
                tmp_path / "drw", n_boot=20)
    h = drw.history
    assert h["weighted"].tolist() == [False, False, True]
    np.testing.assert_allclose(h[["loss", "val_loss"]].to_numpy()[:2],
                               plain.history[["loss", "val_loss"]].to_numpy()[:2], rtol=1e-5)
    assert drw.metrics["best_epoch"] == 3
    assert pd.read_csv(drw.run_dir / "history.csv")["weighted"].tolist() == [False, False, True]


def test_reset_optimizer_zeroes_steps_and_moments_but_keeps_the_learning_rate():
    from cxrnb.train import _reset_optimizer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=2, verbose=0)
    opt = model.optimizer
    assert int(opt.iterations) == 2 and any(np.abs(v.numpy()).sum() > 0 for v in opt.variables if "momentum" in v.path)
    _reset_optimizer(opt)
    assert int(opt.iterations) == 0
    assert float(opt.learning_rate) == pytest.approx(0.01)
    assert all(not np.any(v.numpy()) for v in opt.variables if not v.path.endswith("learning_rate"))


@pytest.mark.parametrize("n, batch, replicas", [(57, 8, 2), (9, 8, 2), (33, 32, 4), (5, 64, 2), (3, 8, 4), (64, 8, 2)])
def test_replica_split_gives_every_replica_the_same_number_of_films(n, batch, replicas):
    part = pd.DataFrame({"path": [f"f{i}" for i in range(n)]})
    if n % replicas:
        with pytest.warns(UserWarning, match=f"uses {n - n % replicas} of {n} val films"):
            kept, b = replica_split(part, batch, replicas)
    else:
        kept, b = replica_split(part, batch, replicas)
    assert len(kept) == n - n % replicas and kept["path"].tolist() == part["path"].tolist()[:len(kept)]
    assert b % replicas == 0 and b <= max(batch, replicas)
    assert all(size % replicas == 0 and size > 0 for size in [b] * (len(kept) // b) + [len(kept) % b] if size)
    assert replica_split(part, batch, 1) == (part, batch)


def test_best_epoch_skips_the_plain_epochs_of_deferred_weighting():
    h = pd.DataFrame({"epoch": [0, 1, 2, 3], "loss": [1.0, 0.8, 0.7, 0.6], "val_loss": [0.2, 0.5, 0.4, 0.45],
                      "weighted": [False, True, True, True]})
    assert best_epoch(h) == 3
    assert best_epoch(h.drop(columns="weighted")) == 1
    assert best_epoch(h.assign(weighted=False)) == 1  # an unweighted run: every epoch counts
    assert best_epoch(h.drop(columns="val_loss")) == 4  # no validation: the training loss


def test_a_run_shorter_than_the_deferral_trains_without_weights_and_says_so(tmp_path):
    """The issue's trap: a 95 % / 5 % collection and EPOCHS = 2. Class weights applied before the
    model has learned anything called every film the rare class; deferred, the run stays plain
    (with a warning) and calls most test films the common class, as the majority baseline does."""
    root = tmp_path / "skewed"
    generate(root, n_patients=80, size=64, class_fractions={"covid": 0.95, "normal": 0.05}, difficulty=0.3,
             images_per_patient=(1, 1), seed=1, progress=False)
    index, _ = load_index("synthetic", root, progress=False)
    split = split_by_patient(index, val=0.2, test=0.25, seed=0)
    cfg = TrainConfig.preset("default", image_size=48, epochs=2)
    assert cfg.defer_weights >= 2
    with pytest.warns(UserWarning, match="trains without class weights"):
        result = train(cfg, split, tmp_path / "run", n_boot=20)
    assert not result.history["weighted"].any()
    val = result.predictions[result.predictions["split"] == "val"]  # the kept weights are the best epoch's
    p = val[[f"p_{c}" for c in result.classes]].to_numpy()[np.arange(len(val)), val["y"].to_numpy()]
    kept = result.history["val_loss"].iloc[result.metrics["best_epoch"] - 1]
    assert float(np.mean(-np.log(np.clip(p, 1e-7, 1)))) == pytest.approx(kept, rel=2e-3)
    test = result.predictions[result.predictions["split"] == "test"]
    called_rare = test["p_normal"] > test["p_covid"]
    assert called_rare.mean() < 0.5


def test_val_auc_monitor_keeps_the_epoch_with_the_best_validation_auc(easy_split, tmp_path):
    """monitor="val_auc": the kept epoch is the one whose val ROC AUC (Keras' 200-threshold
    estimate) is highest, and that number is scikit-learn's AUC of the kept model on val."""
    from sklearn.metrics import roc_auc_score

    cfg = TrainConfig(**{**TINY, "epochs": 3, "monitor": "val_auc", "early_stopping": None, "reduce_lr": None})
    result = train(cfg, easy_split, tmp_path / "run", n_boot=20)
    h = result.history
    best = int(h["val_auc"].idxmax())
    assert result.metrics["best_epoch"] == best + 1
    val = result.predictions[result.predictions["split"] == "val"]
    auc = roc_auc_score(val["y"], val[f"p_{result.classes[1]}"])
    assert h["val_auc"].iloc[best] == pytest.approx(auc, abs=0.02)


def test_compact_pooled_blocks_sets_the_cam_grid():
    from cxrnb.explain import find_spatial_layer
    from cxrnb.models import build_model

    for options, cells in (({}, 8), (dict(stem_stride=1, pooled_blocks=3), 8), (dict(pooled_blocks=1), 16),
                           (dict(stem_stride=1, pooled_blocks=2), 16)):
        m = build_model("compact", input_size=64, num_classes=2, **options)
        assert find_spatial_layer(m).output.shape[1] == cells, options
    assert find_spatial_layer(build_model("compact", input_size=128, num_classes=2)).output.shape[1] == 16
    with pytest.raises(ValueError, match="pooled_blocks"):
        build_model("compact", input_size=64, num_classes=2, pooled_blocks=4)
    with pytest.raises(ValueError, match="stem_stride"):
        build_model("compact", input_size=64, num_classes=2, stem_stride=3)


def test_ensure_run_trains_notebook_03s_run_when_absent_then_reuses_it(tmp_path, capsys):
    """Notebooks 04-05 run alone: `ensure_run` trains the preset on the spec's split once, then loads it."""
    import cxrnb.notebook as nb

    data = nb.DataSpec("synthetic", tmp_path / "data", tmp_path / "out", seed=0,
                       synthetic={"n_patients": 24, "size": 64, "classes": ["normal", "effusion"]})
    run = nb.ensure_run(tmp_path / "out" / "runs" / "03_main", data, image_size=32, epochs=1)
    assert isinstance(run, Run) and run.config.image_size == 32 and set(run.classes) == {"effusion", "normal"}
    model_file = run.run_dir / "model.keras"
    stamp = model_file.stat().st_mtime_ns
    again = nb.ensure_run(run.run_dir, data, image_size=32, epochs=1)
    assert model_file.stat().st_mtime_ns == stamp  # loaded, not trained again
    pd.testing.assert_frame_equal(again.predictions, run.predictions, check_dtype=False)
    assert capsys.readouterr().out.count("run 03_main: default (compact, 32 px)") == 2
