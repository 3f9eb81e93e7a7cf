"""Patient-level splits: never leak, keep proportions, are seeded."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrnb.index import image_paths
from cxrnb.splits import (LeakageError, check_no_leakage, leaking_patients, official_split,
                          split_by_patient, split_counts)


def make_index(n_patients: int, seed: int, n_labels: int = 2, max_images: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = f"c{rng.integers(n_labels)}"
        for k in range(int(rng.integers(1, max_images + 1))):
            rows.append({"path": f"p{p}_{k}.png", "label": label, "patient_id": f"p{p}",
                         "view": "PA", "source": "t", "root": "."})
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None)
@given(n_patients=st.integers(10, 150), seed=st.integers(0, 10_000), n_labels=st.integers(1, 4),
       max_images=st.integers(1, 6))
def test_random_patients_never_leak(n_patients, seed, n_labels, max_images):
    idx = make_index(n_patients, seed, n_labels, max_images)
    out = split_by_patient(idx, val=0.15, test=0.15, seed=seed)
    assert leaking_patients(out, "patient_id").empty
    assert set(out["split"]) <= {"train", "val", "test"} and len(out) == len(idx)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_proportions_within_tolerance(seed):
    idx = make_index(300, seed, n_labels=3, max_images=3)
    out = split_by_patient(idx, val=0.15, test=0.2, seed=seed)
    frac = out["split"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.2) < 0.05
    assert abs(frac["val"] - 0.15) < 0.05
    # stratified: each label's share in test is close to its overall share
    overall = out["label"].value_counts(normalize=True)
    test = out[out["split"] == "test"]["label"].value_counts(normalize=True)
    assert (test.reindex(overall.index).fillna(0) - overall).abs().max() < 0.08


def test_same_seed_same_split_different_seed_differs():
    idx = make_index(80, 1)
    a = split_by_patient(idx, seed=3)["split"]
    assert a.equals(split_by_patient(idx, seed=3)["split"])
    assert not a.equals(split_by_patient(idx, seed=4)["split"])


def test_patient_group_is_respected():
    idx = make_index(60, 2)
    idx["patient_group"] = idx["patient_id"]
    idx.loc[idx["patient_id"].isin(["p1", "p2"]), "patient_group"] = "p1"  # same person, two ids
    for seed in range(10):
        out = split_by_patient(idx, seed=seed)
        assert out.loc[out["patient_group"] == "p1", "split"].nunique() == 1


def test_check_no_leakage_names_patients_and_duplicates():
    idx = make_index(20, 0)
    idx["split"] = "train"
    idx.loc[idx["patient_id"] == "p3", "split"] = ["test"] + ["train"] * (sum(idx["patient_id"] == "p3") - 1) \
        if sum(idx["patient_id"] == "p3") > 1 else "test"
    idx.loc[idx.index[0], "split"] = "val"
    idx["pixel_hash"] = [f"h{i}" for i in range(len(idx))]
    idx.loc[idx.index[-1], "pixel_hash"] = "h0"
    idx.loc[idx.index[-1], "split"] = "test"
    with pytest.raises(LeakageError, match=r"p0 \((train, )?val"):
        check_no_leakage(idx)
    with pytest.raises(LeakageError, match="identical image"):
        check_no_leakage(idx)


def test_bad_fractions_and_tiny_sets():
    idx = make_index(10, 0)
    with pytest.raises(ValueError, match="val \\+ test"):
        split_by_patient(idx, val=0.5, test=0.5)
    with pytest.raises(ValueError, match="test fraction"):
        split_by_patient(idx, test=1.2)
    one = make_index(1, 0)
    with pytest.raises(ValueError, match=r"cannot split 1 patient group\(s\) into train, val, test: need at least 3"):
        split_by_patient(one)


def test_official_split_carves_val_by_patient():
    idx = make_index(60, 5)
    idx["kaggle_split"] = np.where(idx["patient_id"].str[1:].astype(int) < 45, "train", "test")
    out = official_split(idx, val=0.2, seed=0)
    assert set(out["split"]) == {"train", "val", "test"}
    assert (out["split"] == "test").equals(idx["kaggle_split"] == "test")
    check_no_leakage(out)
    counts = split_counts(out)
    assert counts.loc["val", "images"] == (out["split"] == "val").sum()
    assert list(counts.index) == ["train", "val", "test"]


@pytest.mark.parametrize("val, test", [(0.0, 0.3), (0.0, 0.4), (0.3, 0.4), (0.15, 0.15), (0.0, 0.99),
                                       (0.005, 0.99), (0.99, 0.0)])
def test_fractions_hit_requested_sizes_within_one_patient(val, test):
    idx = make_index(200, 7, n_labels=3, max_images=3)
    largest = idx.groupby("patient_id").size().max()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no patient dominates: no warning
        out = split_by_patient(idx, val=val, test=test, seed=11)
    counts = out["split"].value_counts()
    for name, frac in (("val", val), ("test", test), ("train", 1 - val - test)):
        assert abs(counts.get(name, 0) - frac * len(idx)) <= largest, (name, counts.to_dict())
        # stratified: every label's count in every split is close to its share too
        for label, n in idx["label"].value_counts().items():
            got = ((out["split"] == name) & (out["label"] == label)).sum()
            assert abs(got - frac * n) <= largest + 1, (name, label, got, frac * n)


def test_dominant_patient_warns_and_names_it():
    idx = make_index(40, 3, max_images=2)
    big = pd.DataFrame({"path": [f"big_{k}.png" for k in range(len(idx))], "label": "c0",
                        "patient_id": "giant", "view": "PA", "source": "t", "root": "."})
    idx = pd.concat([idx, big], ignore_index=True)  # one patient holds half the images
    with pytest.warns(UserWarning, match=r"train has .* asked 40\.0%.*giant \(\d+ images\)"):
        out = split_by_patient(idx, val=0.3, test=0.3, seed=0)
    check_no_leakage(out)


def test_too_few_patients_message_says_how_many_are_needed():
    two = pd.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "y"], "patient_id": ["p", "q"],
                        "view": "PA", "source": "t", "root": "."})
    with pytest.raises(ValueError, match=r"cannot split 2 patient group\(s\) into train, val, test: "
                                         r"need at least 3"):
        split_by_patient(two)
    assert set(split_by_patient(two, val=0, test=0.5)["split"]) == {"train", "test"}


def test_official_split_warns_names_leaking_patients_and_can_fix_them():
    idx = make_index(30, 4)
    idx["kaggle_split"] = np.where(idx["patient_id"].str[1:].astype(int) < 20, "train", "test")
    multi = idx.groupby("patient_id").size()
    leaker = multi[multi > 1].index[-1]
    rows = idx.index[idx["patient_id"] == leaker]
    idx.loc[rows[0], "kaggle_split"] = "train" if idx.loc[rows[1], "kaggle_split"] == "test" else "test"
    with pytest.warns(UserWarning, match=rf"1 patient\(s\) in more than one official split: {leaker} "
                                         rf"\(test, train\).*fix_leaks=True"):
        out = official_split(idx, val=0.2, seed=0)
    with pytest.raises(LeakageError, match=leaker):
        check_no_leakage(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = official_split(idx, val=0.2, seed=0, fix_leaks=True)
    check_no_leakage(fixed)
    assert fixed.loc[idx["patient_id"] != leaker, "split"].eq("test").equals(
        idx.loc[idx["patient_id"] != leaker, "kaggle_split"].eq("test"))


def test_load_split_rebuilds_when_its_parameters_change(tmp_path, write_image, monkeypatch, capsys):
    import cxrnb.validate
    from cxrnb.notebook import load_split

    for c in ("normal", "covid"):
        for k in range(10):
            write_image(tmp_path / "data" / c / f"{k}.png", size=32, seed=k + 10 * (c == "covid"))
    monkeypatch.chdir(tmp_path)
    args = ("folder", "data", "out")
    first = load_split(*args, seed=0)
    saved = (tmp_path / "out" / "split.json").read_text()
    assert str(tmp_path) not in saved and '"data_dir": "../data"' in saved
    reseeded = load_split(*args, seed=5)
    assert not reseeded["split"].equals(first["split"])
    bigger_test = load_split(*args, seed=5, test=0.4)
    assert (bigger_test["split"] == "test").sum() == 8
    assert set(load_split(*args, seed=5, task={"classes": ["normal"]})["label"]) == {"normal"}

    def no_rebuild(*a, **k):
        raise AssertionError("rebuilt although the parameters are the same")

    monkeypatch.setattr(cxrnb.validate, "load_index", no_rebuild)
    again = load_split(*args, seed=5, task={"classes": ["normal"]})
    assert set(again["label"]) == {"normal"} and all(p.is_file() for p in image_paths(again))
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == lines[-2]  # the same summary whether rebuilt or reused


def test_load_split_rebuilds_the_synthetic_split_when_the_generator_changes(tmp_path, monkeypatch):
    """A new generator version rewrites the files for the same options (the marker control's
    markers did): a split saved from the old files must not be reused with its stale columns."""
    import cxrnb.synthetic
    import cxrnb.validate
    from cxrnb.notebook import load_split

    kw = dict(n_patients=12, size=32, shortcut=0.5, shortcut_class="any", seed=0)
    load_split("synthetic", tmp_path / "data", tmp_path / "out", **kw)
    rebuilt = []
    real = cxrnb.validate.load_index
    monkeypatch.setattr(cxrnb.validate, "load_index", lambda *a, **k: rebuilt.append(1) or real(*a, **k))
    load_split("synthetic", tmp_path / "data", tmp_path / "out", **kw)
    assert rebuilt == []                                   # same generator: the saved split is reused
    monkeypatch.setattr(cxrnb.synthetic, "GENERATOR_VERSION", cxrnb.synthetic.GENERATOR_VERSION + 1)
    load_split("synthetic", tmp_path / "data", tmp_path / "out", **kw)
    assert rebuilt == [1]


def test_leaky_pair_differs_only_in_the_leak():
    """Same test and val films, same train size; the leaky train holds other films of every val and
    test patient with several films, the patient-level one none."""
    from cxrnb.splits import leaky_pair

    index = make_index(80, seed=1, max_images=5)
    leaky, honest = leaky_pair(index, seed=3)
    for part in ("val", "test"):
        assert set(leaky.loc[leaky["split"] == part, "path"]) == set(honest.loc[honest["split"] == part, "path"])
    assert (leaky["split"] == "train").sum() == (honest["split"] == "train").sum()
    check_no_leakage(honest)
    held = honest[honest["split"].isin(["val", "test"])]
    several = index.groupby("patient_id").size().loc[held["patient_id"].unique()] > 1
    train_patients = set(leaky.loc[leaky["split"] == "train", "patient_id"])
    assert set(several[several].index) <= train_patients
    assert not set(held["patient_id"]) & set(honest.loc[honest["split"] == "train", "patient_id"])
    again = leaky_pair(index, seed=3)
    pd.testing.assert_frame_equal(again[0], leaky)


def test_shuffle_labels_permutes_patients_not_films_and_keeps_test():
    from cxrnb.splits import shuffle_labels

    split = split_by_patient(make_index(120, seed=2), seed=0)
    out = shuffle_labels(split, seed=1)
    test = split["split"] == "test"
    pd.testing.assert_series_equal(out.loc[test, "label"], split.loc[test, "label"])
    assert (out.groupby("patient_id")["label"].nunique() == 1).all()  # one label per patient
    per_patient = lambda d: d[~test].groupby("patient_id")["label"].first()  # noqa: E731
    assert sorted(per_patient(out)) == sorted(per_patient(split))  # a permutation of the patients' labels
    assert (per_patient(out) != per_patient(split)).mean() > 0.2  # and not the identity
