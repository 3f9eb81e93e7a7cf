"""Solutions to the exercises of notebook 03 (training and honest evaluation), run by
tests/test_exercises.py. They use constructed predictions, not trained models: the lessons are
about how a number is computed, and constructed predictions make the answer exact."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrnb.evaluate import bootstrap_ci, choose_threshold, evaluate
from cxrnb.train import class_weights


def _binary(p1: np.ndarray) -> np.ndarray:
    """(N, 2) probabilities from p(positive)."""
    return np.column_stack([1 - p1, p1])


def exercise_1(workdir: Path) -> dict:
    """Six films per patient, all right or all wrong together: resampling images pretends there
    are six times as many independent cases, so its interval is about sqrt(6) (2.4x) narrower
    than the patient-level one around the same accuracy."""
    n_patients, films = 30, 6
    patient = np.repeat(np.arange(n_patients), films)
    y = patient % 2
    right = np.repeat(np.arange(n_patients) % 3 != 0, films)  # 2 patients in 3 entirely right
    proba = _binary(np.where(right, y, 1 - y) * 0.6 + 0.2)
    widths = {}
    for unit, groups in (("patient", patient), ("image", np.arange(len(y)))):
        iv = bootstrap_ci(y, proba, groups, n_boot=1000, seed=0)["accuracy"]
        widths[unit] = iv.high - iv.low
    assert np.isclose(iv.estimate, 2 / 3)
    assert widths["patient"] / widths["image"] > 1.8
    return {"accuracy": iv.estimate, "CI width, patient resamples": widths["patient"],
            "CI width, image resamples": widths["image"], "ratio": widths["patient"] / widths["image"]}


def exercise_2(workdir: Path) -> dict:
    """A 95/5 task and a model that always answers the common class: 95 % accuracy, balanced
    accuracy exactly 0.5 (it never finds the rare class), ROC AUC 0.5 (its scores rank nothing).
    "balanced" class weights make each rare film weigh 19 (= 95 / 5) times a common one."""
    y = np.r_[np.zeros(190, int), np.ones(10, int)]
    ev = evaluate(y, _binary(np.full(len(y), 0.1)), ["no finding", "effusion"],
                  groups=np.arange(len(y)), majority_class="no finding", n_boot=200)
    w = class_weights(np.where(y == 1, "effusion", "no finding"), ["no finding", "effusion"])
    assert ev.accuracy == ev.majority_baseline == 0.95
    assert ev.balanced_accuracy == 0.5 and ev.auc == 0.5
    assert np.isclose(w[1] / w[0], 19.0)
    return {"accuracy": ev.accuracy, "balanced accuracy": ev.balanced_accuracy, "ROC AUC": ev.auc,
            "rare / common class weight": w[1] / w[0]}


def exercise_3(workdir: Path) -> dict:
    """Choose the threshold on the test set instead of val: Youden's threshold maximises balanced
    accuracy on the set it is chosen on, so the test score can only go up. That gain is
    optimism, not skill: on new patients the val-chosen threshold is the honest estimate."""
    rng = np.random.default_rng(0)

    def predictions(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        return y, _binary(1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 0.6))))

    (y_val, p_val), (y_test, p_test) = predictions(60), predictions(60)
    score = {}
    for chosen_on, (yy, pp) in (("val", (y_val, p_val)), ("test", (y_test, p_test))):
        t = choose_threshold(yy, pp, rule="youden")
        score[chosen_on] = evaluate(y_test, p_test, ["normal", "pneumonia"], groups=np.arange(60),
                                    threshold=t, n_boot=200).balanced_accuracy
    assert score["test"] >= score["val"]
    return {"test balanced accuracy, threshold from val": score["val"],
            "test balanced accuracy, threshold from test": score["test"],
            "optimism": score["test"] - score["val"]}
