"""Evaluation: metrics equal scikit-learn's, the bootstrap resamples patients, thresholds, figures."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             brier_score_loss, classification_report, confusion_matrix, f1_score,
                             roc_auc_score)

from cxrnb import plots
from cxrnb.evaluate import (bootstrap_ci, calibration, choose_threshold, compare, evaluate,
                            weighted_auc)

Y2 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
S2 = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.6, 0.7, 0.9, 0.45, 0.55, 0.3, 0.2])
P2 = np.column_stack([1 - S2, S2])
G2 = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f"])


def three_class(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    logits = rng.normal(0, 1, (n, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p, np.arange(n) // 3


def test_binary_metrics_equal_sklearn():
    ev = evaluate(Y2, P2, ["normal", "pneumonia"], groups=G2, n_boot=50)
    pred = (S2 > 0.5).astype(int)
    assert ev.accuracy == pytest.approx(accuracy_score(Y2, pred))
    assert ev.balanced_accuracy == pytest.approx(balanced_accuracy_score(Y2, pred))
    assert ev.macro_f1 == pytest.approx(f1_score(Y2, pred, average="macro"))
    assert ev.report == classification_report(Y2, pred, target_names=["normal", "pneumonia"], output_dict=True)
    assert ev.confusion == confusion_matrix(Y2, pred).tolist()
    assert ev.auc == pytest.approx(roc_auc_score(Y2, S2))
    assert ev.average_precision == pytest.approx(average_precision_score(Y2, S2))
    assert ev.brier == pytest.approx(brier_score_loss(Y2, S2))
    assert ev.n_images == 12 and ev.n_patients == 6
    assert ev.ci["auc"].estimate == ev.auc and ev.ci["accuracy"].low <= ev.accuracy <= ev.ci["accuracy"].high


def test_three_class_metrics_equal_sklearn():
    y, p, g = three_class()
    ev = evaluate(y, p, ["normal", "bacteria", "virus"], groups=g, n_boot=50)
    pred = p.argmax(1)
    assert ev.accuracy == pytest.approx(accuracy_score(y, pred))
    assert ev.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, pred))
    assert ev.auc == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    per = roc_auc_score(np.eye(3)[y], p, average=None)
    assert list(ev.auc_per_class.values()) == pytest.approx(per.tolist())
    assert ev.average_precision == pytest.approx(average_precision_score(np.eye(3)[y], p, average="macro"))
    assert ev.brier == pytest.approx(brier_score_loss(y, p, labels=[0, 1, 2]))
    assert ev.confusion == confusion_matrix(y, pred).tolist()


def test_vectorised_weighted_auc_equals_sklearn_sample_weight():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 1)  # many ties
    w = np.vstack([rng.random(80), rng.integers(0, 4, 80), np.ones(80)])
    got = weighted_auc(y, s, w)
    want = [roc_auc_score(y, s, sample_weight=wi) for wi in w]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert weighted_auc(y, s, w[0]) == pytest.approx(want[0])
    assert np.isnan(weighted_auc(y, s, (y == 1).astype(float)))  # no negative weight: undefined


def clustered(n_pat: int = 30, per: int = 10, seed: int = 0):
    """Each patient has `per` films with the same label and the same (right or wrong) outcome."""
    rng = np.random.default_rng(seed)
    y_pat = np.arange(n_pat) % 2
    right = rng.random(n_pat) < 0.7
    s_pat = np.where(right, np.where(y_pat == 1, 0.8, 0.2), np.where(y_pat == 1, 0.3, 0.7))
    g = np.repeat(np.arange(n_pat), per)
    s = s_pat[g]
    return y_pat[g], np.column_stack([1 - s, s]), g


def test_patient_bootstrap_resamples_whole_patients():
    y, p, g = clustered()
    acc = bootstrap_ci(y, p, g, n_boot=300, seed=1)["accuracy"].samples
    # every resample keeps all 10 identical-outcome films of each drawn patient:
    # accuracy is (patients right) / 30, a multiple of 1/30
    np.testing.assert_allclose(acc * 30, np.round(acc * 30), atol=1e-9)
    acc_img = bootstrap_ci(y, p, np.arange(len(y)), n_boot=300, seed=1)["accuracy"].samples
    assert not np.allclose(acc_img * 30, np.round(acc_img * 30))


def test_patient_bootstrap_equals_a_loop_of_scikit_learn_calls():
    """The vectorised bootstrap (sparse per-patient counts, `weighted_auc`) checked against its
    definition: per resample, repeat every film as often as its patient was drawn and score the
    repeated films with scikit-learn."""
    rng = np.random.default_rng(5)
    groups = np.repeat([f"p{i:02d}" for i in range(12)], rng.integers(1, 4, 12))
    y = rng.integers(0, 2, len(groups))
    s = np.round(np.clip(0.3 * y + 0.7 * rng.random(len(y)), 0, 1), 1)  # ties, as real scores have
    got = bootstrap_ci(y, np.column_stack([1 - s, s]), groups, n_boot=200, seed=7)
    codes = pd.factorize(groups, sort=True)[0]
    draws = np.random.default_rng(7).integers(0, 12, size=(200, 12), dtype=np.int32)
    want = {"accuracy": [], "balanced_accuracy": [], "auc": []}
    for d in draws:
        idx = np.concatenate([np.flatnonzero(codes == q) for q in d])
        yi, si = y[idx], s[idx]
        want["accuracy"].append(accuracy_score(yi, si > 0.5))
        both = 0 < yi.sum() < len(yi)
        want["balanced_accuracy"].append(balanced_accuracy_score(yi, si > 0.5) if both else float(np.mean(yi == (si > 0.5))))
        want["auc"].append(roc_auc_score(yi, si) if both else np.nan)
    for m, values in want.items():
        np.testing.assert_allclose(got[m].samples, values, rtol=1e-12, err_msg=m)


def test_image_resampling_gives_too_narrow_ci():
    y, p, g = clustered()
    pat = bootstrap_ci(y, p, g, n_boot=1000, seed=0)
    img = bootstrap_ci(y, p, np.arange(len(y)), n_boot=1000, seed=0)
    assert pat["accuracy"].unit == "patient" and img["accuracy"].unit == "image"
    for m in ("accuracy", "auc"):
        w_pat = pat[m].high - pat[m].low
        w_img = img[m].high - img[m].low
        assert w_pat > 2 * w_img, (m, w_pat, w_img)  # 10 films per patient: about sqrt(10) narrower


def test_bootstrap_is_deterministic_and_independent_of_row_order():
    y, p, g = three_class(90)
    a = bootstrap_ci(y, p, g, n_boot=300, seed=7)
    b = bootstrap_ci(y, p, g, n_boot=300, seed=7)
    c = bootstrap_ci(y, p, g, n_boot=300, seed=8)
    perm = np.random.default_rng(0).permutation(len(y))
    d = bootstrap_ci(y[perm], p[perm], g[perm], n_boot=300, seed=7)
    for m in a:
        np.testing.assert_array_equal(a[m].samples, b[m].samples)
        np.testing.assert_allclose(a[m].samples, d[m].samples, rtol=1e-12)
    assert not np.array_equal(a["accuracy"].samples, c["accuracy"].samples)


def test_resamples_missing_a_class_are_counted_and_excluded():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])  # one positive patient among 8: many resamples lack it
    s = np.linspace(0.9, 0.1, 8)
    iv = bootstrap_ci(y, np.column_stack([1 - s, s]), np.arange(8), n_boot=500, seed=0)["auc"]
    assert 100 < iv.n_undefined < 400
    assert np.isnan(iv.samples).sum() == iv.n_undefined and iv.low == iv.high == 1.0


def test_threshold_chosen_on_val_is_applied_on_test():
    rng = np.random.default_rng(0)
    yv, yt = rng.integers(0, 2, 200), rng.integers(0, 2, 100)
    sv, st = (np.clip(0.15 + 0.3 * y + 0.5 * rng.random(len(y)), 0, 1) for y in (yv, yt))
    pv, pt = np.column_stack([1 - sv, sv]), np.column_stack([1 - st, st])
    t = choose_threshold(yv, pv)
    assert t == choose_threshold(yv, pv, rule="balanced_accuracy")  # the same criterion
    cands = np.unique(sv)
    youden = [np.mean(sv[yv == 1] >= c) - np.mean(sv[yv == 0] >= c) for c in cands]
    assert t == pytest.approx(cands[int(np.argmax(youden))])
    tf1 = choose_threshold(yv, pv, rule="f1")
    assert f1_score(yv, sv >= tf1) == pytest.approx(max(f1_score(yv, sv >= c) for c in cands))
    ev = evaluate(yt, pt, ["no", "yes"], groups=np.arange(100), threshold=t, n_boot=50)
    np.testing.assert_array_equal(ev.y_pred, (st >= t).astype(int))
    assert ev.accuracy == pytest.approx(accuracy_score(yt, st >= t))
    assert f"p(yes) >= {t:.3f}" in ev.summary()


def test_majority_baseline_uses_train_majority_when_given():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    p = np.full((10, 3), 1 / 3)
    ev = evaluate(y, p, ["a", "b", "c"], groups=np.arange(10), n_boot=50)
    assert (ev.majority_class, ev.majority_baseline, ev.majority_source) == ("b", 0.5, "test")
    ev = evaluate(y, p, ["a", "b", "c"], groups=np.arange(10), majority_class="a", n_boot=50)
    assert (ev.majority_class, ev.majority_baseline, ev.majority_source) == ("a", 0.3, "train")
    assert ev.ci["majority_baseline"].estimate == 0.3
    assert "always 'a', majority of train" in ev.summary()


def test_to_dict_json_round_trip_and_deterministic():
    y, p, g = three_class()
    d = evaluate(y, p, ["n", "b", "v"], groups=g, n_boot=100).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert evaluate(y, p, ["n", "b", "v"], groups=g, n_boot=100).to_dict() == d
    assert isinstance(d["accuracy"], float) and set(d["ci"]["auc"]) >= {"estimate", "low", "high", "n_undefined"}


def test_single_class_gives_nan_auc_with_note():
    y = np.zeros(6, dtype=int)
    ev = evaluate(y, P2[:6], ["normal", "pneumonia"], groups=G2[:6], n_boot=50)
    assert np.isnan(ev.auc) and np.isnan(ev.average_precision) and ev.accuracy == pytest.approx(4 / 6)
    assert any("absent from y_true" in n for n in ev.notes)
    d = ev.to_dict()
    assert d["auc"] is None and json.loads(json.dumps(d, allow_nan=False)) == d
    assert "AUC" in ev.summary()


@pytest.mark.parametrize("kwargs, match", [
    ({"y_true": Y2[:-1]}, "length mismatch: y_true has 11 rows, proba has 12"),
    ({"groups": G2[:-2]}, "length mismatch: groups has 10 rows"),
    ({"proba": P2 * 0.9}, "rows must sum to 1"),
    ({"proba": S2}, r"proba must have shape \(N, 2\)"),
    ({"proba": np.column_stack([P2, np.zeros(12)])}, r"shape \(N, 2\)"),
    ({"y_true": np.where(Y2 == 1, 2, 0)}, r"labels outside 0..1 at rows \[6, 7, 8, 9, 11\]"),
    ({"y_true": Y2 + 0.5}, "integer class ids"),
    ({"groups": np.where(G2 == "c", None, G2)}, r"missing patient ids at rows \[4, 5\]"),
    ({"threshold": 1.5}, r"threshold must be a probability in \[0, 1\]"),
    ({"majority_class": "covid"}, "majority_class 'covid' is not one of"),
])
def test_bad_inputs_give_clear_errors(kwargs, match):
    args = {"y_true": Y2, "proba": P2, "groups": G2} | kwargs
    y, p = args.pop("y_true"), args.pop("proba")
    with pytest.raises(ValueError, match=match):
        evaluate(y, p, ["normal", "pneumonia"], n_boot=10, **args)


def test_threshold_with_more_than_two_classes_is_refused():
    y, p, g = three_class()
    with pytest.raises(ValueError, match="threshold applies to binary tasks only; this task has 3"):
        evaluate(y, p, ["a", "b", "c"], groups=g, threshold=0.5)
    with pytest.raises(ValueError, match=r"binary tasks: proba_val must be \(N, 2\)"):
        choose_threshold(y, p)
    with pytest.raises(ValueError, match="unknown threshold rule 'auc'"):
        choose_threshold(Y2, P2, rule="auc")


def test_compare_pairs_evaluations_on_the_same_test_set():
    y, p, g = clustered()
    worse = np.column_stack([0.75 - 0.5 * p[:, 1], 0.25 + 0.5 * p[:, 1]])  # squashed towards 0.5
    a = evaluate(y, p, ["n", "p"], groups=g, n_boot=400)
    b = evaluate(y, worse, ["n", "p"], groups=g, n_boot=400, threshold=0.6)
    same = compare(a, a, names=("A", "A2"))
    assert same["paired"].all() and (same[["diff low", "diff high"]] == 0).all().all()
    tab = compare(a, b, names=("model", "shrunk"))
    assert tab.loc["accuracy", "difference"] == pytest.approx(a.accuracy - b.accuracy)
    assert tab.loc["accuracy", "diff low"] <= tab.loc["accuracy", "difference"] <= tab.loc["accuracy", "diff high"]
    y2, p2, g2 = clustered(seed=5)
    other = compare(a, evaluate(y2, p2, ["n", "p"], groups=g2 + 100, n_boot=400))  # other patients
    assert not other["paired"].any()
    wa = a.ci["accuracy"].high - a.ci["accuracy"].low
    assert other.loc["accuracy", "diff high"] - other.loc["accuracy", "diff low"] > wa  # independent: wider


def test_calibration_table_matches_sklearn():
    rng = np.random.default_rng(0)
    s = rng.random(300)
    y = (rng.random(300) < s).astype(int)
    cal = calibration(y, np.column_stack([1 - s, s]), n_bins=5)
    frac, mean = sk_calibration_curve(y, s, n_bins=5)
    np.testing.assert_allclose(cal.table["observed"], frac)
    np.testing.assert_allclose(cal.table["mean_predicted"], mean)
    assert cal.table["count"].sum() == 300 and (cal.table["count"] > 0).all()
    assert cal.brier == pytest.approx(brier_score_loss(y, s)) and 0 <= cal.ece < 0.1
    y3, p3, _ = three_class()
    assert calibration(y3, p3).what == "top class confidence"


@pytest.mark.parametrize("k", [2, 3])
def test_figures_build(k, tmp_path):
    y, p, g = (Y2, P2, G2) if k == 2 else three_class(30)
    classes = ["normal", "pneumonia", "covid"][:k]
    ev = evaluate(y, p, classes, groups=g, n_boot=20)
    hist = pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.9, 0.6, 0.5], "accuracy": [0.5, 0.7, 0.8],
                         "val_loss": [0.8, 0.7, 0.75], "val_accuracy": [0.55, 0.65, 0.6]})
    images = np.random.default_rng(0).random((len(y), 16, 16, 1))
    figs = {"cm": plots.confusion_matrix(ev), "roc": plots.roc_pr_curves(y, p, classes),
            "cal": plots.calibration_curve(y, p, n_bins=5), "lc": plots.learning_curves(hist),
            "grid": plots.prediction_grid(images, y, p, classes, n=8, cols=4)}
    assert len(figs["cm"].axes[0].texts) == k * k
    assert len(figs["roc"].axes[0].lines) == 1 + (1 if k == 2 else k)  # chance + one curve per class
    assert len(figs["cal"].axes[0].lines) == 2 and figs["cal"].axes[1].patches
    assert [len(ax.lines) for ax in figs["lc"].axes] == [3, 3]  # train, val, best-epoch marker
    assert sum(bool(ax.images) for ax in figs["grid"].axes) == 8
    titles = [ax.title for ax in figs["grid"].axes if ax.images]
    wrong = [(p[i].argmax() != y[i]) for i in range(8)]
    assert [t.get_color() == "red" for t in titles] == wrong
    for name, fig in figs.items():
        assert plots.save(fig, tmp_path / f"{name}.png").stat().st_size > 1000


def test_learning_curves_need_a_loss_column():
    with pytest.raises(ValueError, match="history has no 'loss' column"):
        plots.learning_curves(pd.DataFrame({"epoch": [0], "acc": [0.5]}))


def test_calibration_intervals_equal_a_loop_of_scikit_learn_calls():
    """The vectorised patient bootstrap of the Brier score and the ECE is checked against its
    definition: for each resample, repeat every image as often as its patient was drawn and
    compute the scores with scikit-learn (Brier) and the fixed bins (ECE)."""
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(15), 3)
    y = np.repeat(rng.integers(0, 2, 15), 3)
    s = np.clip(0.5 * y + 0.5 * rng.random(len(y)), 0, 1)
    cal = calibration(y, np.column_stack([1 - s, s]), n_bins=5, groups=groups, n_boot=300, seed=4)
    draws = np.random.default_rng(4).integers(0, 15, size=(300, 15))
    bins = np.searchsorted(np.linspace(0, 1, 6)[1:-1], s)
    briers, eces = [], []
    for d in draws:
        idx = np.concatenate([np.flatnonzero(groups == g) for g in d])
        briers.append(brier_score_loss(y[idx], s[idx]))
        eces.append(sum(abs((y[idx] - s[idx])[bins[idx] == b].sum()) for b in range(5)) / len(idx))
    assert np.allclose([cal.brier_low, cal.brier_high], np.percentile(briers, [2.5, 97.5]))
    assert np.allclose([cal.ece_low, cal.ece_high], np.percentile(eces, [2.5, 97.5]))
    assert cal.brier_low <= cal.brier <= cal.brier_high
    assert np.isnan(calibration(y, np.column_stack([1 - s, s])).brier_low)  # no groups, no interval


def test_one_interval_format_for_every_table_and_report():
    from cxrnb.evaluate import format_interval

    assert format_interval(0.8333, 0.75, 0.9) == "0.83 [0.75, 0.90]"
    assert format_interval(0.12, 0.03, 0.21, signed=True) == "+0.12 [+0.03, +0.21]"
    assert format_interval(0.5, 0.4, 0.6, 3, width=6, gap="  ") == " 0.500  [0.400, 0.600]"
    assert format_interval(0.5, float("nan"), float("nan")) == format_interval(0.5, None, None) == "0.50"
    assert format_interval(None) == format_interval(float("nan"), 0.1, 0.2) == ""
