"""Tests of the embedded synthetic chest X-ray generator (cxrnb.synthetic)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from cxrnb import synthetic as syn
from cxrnb.cli import main as cli
from cxrnb.sources import kaggle_patient
from cxrnb.splits import split_by_patient
from cxrnb.synthetic import CLASSES, METADATA_COLUMNS, ensure, generate, render_image

SMALL = dict(n_patients=12, size=64, progress=False)
KAGGLE_PERSON = re.compile(r"^person(\d+)_(bacteria|virus|covid|effusion)_(\d+)\.jpeg$")
KAGGLE_NORMAL = re.compile(r"^IM-(\d{4})-(\d{4})\.jpeg$")
MANIFEST_COLUMNS = ["path", "label", "patient_id", "kaggle_patient", "view", "source", "sex", "age",
                    "subtype", "lung_mask", "lesion_mask", "marker", "split", "image_index", "seed",
                    "difficulty"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("kaggle-pneumonia")
    return root, generate(root, layout="kaggle-pneumonia", seed=3, **SMALL)


@pytest.fixture(scope="module")
def covid(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("covid")
    return root, generate(root, layout="covid-chestxray", seed=3, **SMALL)


# --------------------------------------------------------------------------- determinism

def test_same_seed_gives_byte_identical_files_and_manifest(tmp_path, kaggle):
    root, manifest = kaggle
    again = generate(tmp_path / "again", layout="kaggle-pneumonia", seed=3, **SMALL)
    assert _files(root) == _files(tmp_path / "again")
    pd.testing.assert_frame_equal(manifest, again)


def test_same_seed_covid_layout_is_byte_identical(tmp_path, covid):
    root, _ = covid
    generate(tmp_path / "again", layout="covid-chestxray", seed=3, **SMALL)
    assert _files(root) == _files(tmp_path / "again")


def test_render_image_is_a_pure_function():
    a = render_image(5, 7, 1, "covid", size=64)
    b = render_image(5, 7, 1, "covid", size=64)
    for x, y in zip(a, b):
        assert x.dtype == np.uint8 and x.shape == (64, 64)
        np.testing.assert_array_equal(x, y)


def test_different_seed_gives_different_pixels(tmp_path, kaggle):
    assert not np.array_equal(render_image(0, 1, 0, "normal", size=64)[0],
                              render_image(1, 1, 0, "normal", size=64)[0])
    other = generate(tmp_path / "s4", layout="kaggle-pneumonia", seed=4, **SMALL)
    root, manifest = kaggle
    a = _gray(root / manifest["path"].iloc[0])
    b = _gray(tmp_path / "s4" / other["path"].iloc[0])
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_follow_up_images_differ_but_keep_the_anatomy():
    (a, lung_a, _), (b, lung_b, _) = (render_image(0, 4, k, "normal", size=128) for k in (0, 1))
    assert not np.array_equal(a, b)
    inter = np.logical_and(lung_a > 0, lung_b > 0).sum()
    union = np.logical_or(lung_a > 0, lung_b > 0).sum()
    assert inter / union > 0.75  # same lungs, slightly moved
    other = render_image(0, 5, 0, "normal", size=128)[1]
    assert not np.array_equal(lung_a, other)


# --------------------------------------------------------------------------- kaggle layout

def test_kaggle_files_exist_exactly_as_the_manifest_says(kaggle):
    root, m = kaggle
    assert list(m.columns) == MANIFEST_COLUMNS
    on_disk = {p.relative_to(root).as_posix() for p in (root / "chest_xray").rglob("*") if p.is_file()}
    assert on_disk == set(m["path"])
    masks = {p.relative_to(root).as_posix() for p in (root / "masks").rglob("*") if p.is_file()}
    assert masks == set(m["lung_mask"]) | set(m["lesion_mask"])
    assert len(masks) == 2 * len(m)
    assert (root / "synthetic.csv").is_file()
    assert set(m["source"]) == {"synthetic"}
    assert set(m["view"]) <= set(syn.VIEWS)


def test_kaggle_filenames_folders_and_patient_ids(kaggle):
    _, m = kaggle
    for row in m.itertuples():
        parts = row.path.split("/")
        assert parts[0] == "chest_xray" and parts[1] == row.split and parts[2] == row.label.upper()
        name = parts[3]
        if row.label == "normal":
            g = KAGGLE_NORMAL.match(name)
            assert g, name
            p, k = int(g.group(1)), int(g.group(2)) - 1
            assert row.kaggle_patient == f"IM-{p:04d}"
        else:
            g = KAGGLE_PERSON.match(name)
            assert g, name
            p, tag, k = int(g.group(1)), g.group(2), int(g.group(3))
            assert row.kaggle_patient == f"person{p}"
            assert tag == (row.subtype if row.label == "pneumonia" else row.label)
        assert row.patient_id == f"p{p:04d}" and row.image_index == k


def test_pneumonia_subtypes_are_bacteria_or_virus_per_patient(tmp_path):
    m = generate(tmp_path, classes=("normal", "pneumonia"), n_patients=40, size=32,
                 images_per_patient=(1, 1), progress=False)
    sub = m.loc[m["label"] == "pneumonia"].groupby("patient_id")["subtype"].agg(set)
    assert all(len(s) == 1 for s in sub)
    counts = m.loc[m["label"] == "pneumonia", "subtype"].value_counts()
    assert set(counts.index) == {"bacteria", "virus"} and counts["bacteria"] > counts["virus"]
    assert m.loc[m["label"] == "normal", "subtype"].isna().all()


def test_kaggle_folders_are_the_patient_split_of_cxrnb_splits(tmp_path):
    m = generate(tmp_path, n_patients=40, size=32, images_per_patient=(1, 3), seed=2, progress=False)
    assert (m.groupby("patient_id")["split"].nunique() == 1).all()
    assert (m.groupby("kaggle_patient")["split"].nunique() == 1).all()
    per = m.groupby(["label", "split"])["patient_id"].nunique().unstack(fill_value=0)
    assert set(per.columns) == {"train", "val", "test"}
    assert (per[["train", "test"]] >= 1).all().all(), per  # stratified: every class trains and tests
    patients = m.drop_duplicates("patient_id").assign(path=lambda d: d["patient_id"], view="PA", root=".")
    expected = split_by_patient(patients, val=0.05, test=0.20, seed=2)
    assert dict(zip(expected["patient_id"], expected["split"])) == dict(zip(m["patient_id"], m["split"]))


@pytest.mark.parametrize("n_patients", [1, 2])
def test_a_set_too_small_for_every_split_still_generates(tmp_path, n_patients):
    """Too few patients for train/val/test: the splits that cannot be filled are dropped, train stays."""
    m = generate(tmp_path, n_patients=n_patients, classes=("normal",), size=32, images_per_patient=(1, 1),
                 progress=False)
    assert len(m) == n_patients
    assert "train" in set(m["split"]) and set(m["split"]) <= {"train", "val", "test"}
    on_disk = {p.parent.parent.name for p in (tmp_path / "chest_xray").rglob("*.jpeg")}
    assert on_disk == set(m["split"])


def test_patients_are_unique_across_classes_and_classes_balanced(kaggle):
    _, m = kaggle
    assert (m.groupby("patient_id")["label"].nunique() == 1).all()
    numbers = m["patient_id"].str[1:].astype(int)
    assert set(numbers) == set(range(1, 13))
    assert m.groupby("label")["patient_id"].nunique().to_dict() == {c: 3 for c in CLASSES}
    n_img = m.groupby("patient_id").size()
    assert n_img.between(1, 4).all()


def test_split_fractions_are_respected(tmp_path):
    m = generate(tmp_path, n_patients=80, size=32, images_per_patient=(1, 1), progress=False,
                 split_fractions=(0.5, 0.25, 0.25))
    share = m.groupby("split")["patient_id"].nunique() / 80
    assert share["train"] == pytest.approx(0.5, abs=0.05)
    assert share["val"] == pytest.approx(0.25, abs=0.05)


def test_class_fractions_give_the_requested_shares_of_patients(tmp_path):
    m = generate(tmp_path, n_patients=40, class_fractions={"normal": 0.9, "effusion": 0.1}, size=32,
                 images_per_patient=(1, 1), progress=False)
    assert m.groupby("label")["patient_id"].nunique().to_dict() == {"normal": 36, "effusion": 4}
    assert set(m.loc[m["label"] == "effusion", "split"]) & {"train"}  # the rare class trains
    assert json.loads((tmp_path / "synthetic.json").read_text())["arguments"]["class_fractions"] == \
        {"normal": 0.9, "effusion": 0.1}
    few = generate(tmp_path / "few", n_patients=4, classes=("effusion", "normal"),
                   class_fractions={"normal": 0.9, "effusion": 0.1}, size=32, images_per_patient=(1, 1),
                   progress=False)
    # 3.6 and 0.4 patients: the rounding would give effusion none; every listed class gets one
    assert few.groupby("label")["patient_id"].nunique().to_dict() == {"normal": 3, "effusion": 1}


def test_balanced_classes_by_default_and_by_equal_fractions(tmp_path):
    a = generate(tmp_path / "a", layout="covid-chestxray", n_patients=10, classes=("normal", "covid", "effusion"),
                 size=32, images_per_patient=(1, 1), progress=False)
    b = generate(tmp_path / "b", layout="covid-chestxray", n_patients=10, size=32, images_per_patient=(1, 1),
                 class_fractions={"normal": 1 / 3, "covid": 1 / 3, "effusion": 1 / 3}, progress=False)
    assert a.groupby("label")["patient_id"].nunique().to_dict() == {"normal": 4, "covid": 3, "effusion": 3}
    pd.testing.assert_frame_equal(a, b)  # the same patients, the same films


def test_cli_synth_takes_class_fractions(tmp_path, capsys):
    out = tmp_path / "d"
    assert cli(["-q", "synth", str(out), "--n-patients", "10", "--size", "32",
                "--class-fractions", "normal=0.9,effusion=0.1"]) == 0
    m = syn.read_manifest(out)
    assert m.groupby("label")["patient_id"].nunique().to_dict() == {"normal": 9, "effusion": 1}
    for bad, message in (("normal=0.9,effusion", "expected CLASS=SHARE"), ("normal=x", "expected CLASS=SHARE")):
        with pytest.raises(SystemExit):
            cli(["synth", str(tmp_path / "e"), "--class-fractions", bad])
        assert message in capsys.readouterr().err
    assert cli(["synth", str(tmp_path / "e"), "--class-fractions", "normal=0.9,tb=0.1"]) == 2
    assert "class_fractions: unknown class 'tb'" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_kaggle_reader_parses_the_synthetic_layout(kaggle):
    _, m = kaggle
    for row in m.itertuples():
        assert kaggle_patient(row.path.rsplit("/", 1)[1]) == row.kaggle_patient


# --------------------------------------------------------------------------- covid-chestxray layout

def test_covid_layout_metadata_matches_ieee8023(covid):
    root, m = covid
    meta = pd.read_csv(root / "metadata.csv", dtype={"patientid": str})
    assert list(meta.columns) == METADATA_COLUMNS
    assert len(meta) == len(m)
    assert set(meta["modality"]) == {"X-ray"} and set(meta["folder"]) == {"images"}
    assert set(meta["view"]) <= {"PA", "AP", "AP Supine"}
    assert (meta["filename"].str.fullmatch(r"synth-\d{4}-\d+\.png")).all()
    on_disk = {p.name for p in (root / "images").iterdir()}
    assert on_disk == set(meta["filename"])
    assert {p.relative_to(root).as_posix() for p in root.rglob("*.png") if "masks" not in p.parts} \
        == set(m["path"])
    label = m.set_index("path")["label"]
    sub = m.set_index("path")["subtype"]
    expected = {"normal": "No Finding", "covid": "Pneumonia/Viral/COVID-19", "effusion": "Effusion"}
    for row in meta.itertuples():
        lab = label["images/" + row.filename]
        if lab == "pneumonia":
            want = {"bacteria": "Pneumonia/Bacterial/Streptococcus",
                    "virus": "Pneumonia/Viral/Influenza"}[sub["images/" + row.filename]]
        else:
            want = expected[lab]
        assert row.finding == want
        assert (row.RT_PCR_positive == "Y") == (lab == "covid")
    # free text with commas survives the CSV round trip
    assert meta["clinical_notes"].str.contains(",").any()
    # offsets start at 0 and increase per patient; ids are the patient numbers
    for pid, g in meta.groupby("patientid"):
        offs = list(g["offset"])
        assert offs[0] == 0 and offs == sorted(offs) and len(set(offs)) == len(offs)
        assert f"p{int(pid):04d}" in set(m["patient_id"])
    assert m["split"].isna().all() and "kaggle_patient" not in m.columns


def test_covid_layout_jpeg_extension(tmp_path):
    m = generate(tmp_path, layout="covid-chestxray", image_format="jpeg", n_patients=2, size=32,
                 images_per_patient=(1, 1), progress=False)
    assert all(p.endswith(".jpg") for p in m["path"])
    assert Image.open(tmp_path / m["path"].iloc[0]).format == "JPEG"


# --------------------------------------------------------------------------- masks and findings

@pytest.mark.parametrize("which", ["kaggle", "covid"])
def test_masks_lesion_empty_for_normal_and_inside_the_lungs_otherwise(which, request):
    root, m = request.getfixturevalue(which)
    for row in m.itertuples():
        img = _gray(root / row.path)
        lung, les = _gray(root / row.lung_mask), _gray(root / row.lesion_mask)
        assert lung.shape == les.shape == img.shape
        assert set(np.unique(lung)) <= {0, 255} and set(np.unique(les)) <= {0, 255}
        assert (lung > 0).mean() > 0.1
        if row.label == "normal":
            assert not les.any()
        else:
            assert les.any(), row.path
            assert ((les > 0) & (lung > 0)).sum() / (les > 0).sum() > 0.9


@pytest.mark.parametrize("label,subtype", [("pneumonia", "bacteria"), ("pneumonia", "virus"),
                                           ("covid", None), ("effusion", None)])
def test_lesion_region_is_brighter_than_in_the_normal_render(label, subtype):
    gains = []
    for p in range(1, 9):
        normal, _, none = render_image(2, p, 0, "normal", size=96)
        sick, _, les = render_image(2, p, 0, label, size=96, subtype=subtype)
        assert not none.any() and les.any()
        region = les > 0
        gains.append(sick[region].mean() - normal[region].mean())
    assert min(gains) > 0 and np.mean(gains) > 10, gains


def test_label_changes_pixels_only_in_the_lungs():
    normal, lung, _ = render_image(1, 3, 0, "normal", size=96)
    for label in CLASSES[1:]:
        sick, lung2, _ = render_image(1, 3, 0, label, size=96)
        np.testing.assert_array_equal(lung, lung2)
        near_lung = ndimage.binary_dilation(lung > 0, iterations=3)
        np.testing.assert_array_equal(normal[~near_lung], sick[~near_lung])


def test_difficulty_shrinks_lesion_contrast():
    def gain(d: float) -> float:
        out = []
        for p in range(1, 7):
            n = render_image(0, p, 0, "normal", size=64, difficulty=d)[0].astype(float)
            s, _, les = render_image(0, p, 0, "pneumonia", size=64, difficulty=d)
            out.append((s - n)[les > 0].mean())
        return float(np.mean(out))

    assert gain(0.0) > gain(0.5) > gain(1.0) > 0


def test_images_look_like_chest_radiographs():
    for p in range(1, 11):
        img, lung, _ = render_image(0, p, 0, CLASSES[p % 4], size=128)
        img = img.astype(float)
        lungs = img[lung > 0].mean()
        mid = img[40:100, 60:68].mean()            # mediastinum / spine column
        assert lungs + 40 < mid, (p, lungs, mid)
        corners = np.concatenate([img[:12, :12].ravel(), img[:12, -12:].ravel()])
        body = img[50:110, 20:108].mean()
        assert corners.mean() + 60 < body, (p, corners.mean(), body)
        left, right = lung[:, :64] > 0, lung[:, 64:] > 0
        assert left.sum() > 0.4 * right.sum() and right.sum() > 0.4 * left.sum()  # two lungs


# --------------------------------------------------------------------------- shortcut marker

def test_shortcut_one_marks_every_image_of_the_shortcut_class_only(tmp_path):
    m = generate(tmp_path, shortcut=1.0, **SMALL)
    assert m.loc[m["label"] == "pneumonia", "marker"].all()  # default: first non-normal class
    assert not m.loc[m["label"] != "pneumonia", "marker"].any()
    m2 = generate(tmp_path / "c", shortcut=1.0, shortcut_class="effusion", **SMALL)
    assert m2.loc[m2["label"] == "effusion", "marker"].all()
    assert not m2.loc[m2["label"] != "effusion", "marker"].any()


def test_shortcut_zero_marks_nothing_and_half_marks_some(kaggle, tmp_path):
    _, m = kaggle
    assert m["marker"].dtype == bool and not m["marker"].any()
    half = generate(tmp_path, shortcut=0.5, n_patients=40, size=32, progress=False,
                    classes=("pneumonia", "normal"))
    share = half.loc[half["label"] == "pneumonia", "marker"].mean()
    assert 0.2 < share < 0.8
    assert not half.loc[half["label"] == "normal", "marker"].any()


def test_shortcut_class_any_marks_both_classes_alike(tmp_path):
    """The control's marker says nothing about the label, in the whole set and in any split of it:
    each class holds the share to within one film, and so does each patient."""
    m = generate(tmp_path, shortcut=0.5, shortcut_class="any", n_patients=60, size=32, progress=False,
                 classes=("pneumonia", "normal"))
    for label, films in m.groupby("label"):
        assert abs(films["marker"].sum() - 0.5 * len(films)) <= 1, label
    per_patient = m.groupby("patient_id")["marker"].agg(["sum", "size"])
    assert (abs(per_patient["sum"] - 0.5 * per_patient["size"]) <= 0.5).all()
    assert (per_patient["size"] > 1).any()  # patients with several films were tested
    fifth = generate(tmp_path / "fifth", shortcut=0.2, shortcut_class="any", n_patients=60, size=32, progress=False,
                     classes=("pneumonia", "normal"))
    for label, films in fifth.groupby("label"):
        assert abs(films["marker"].sum() - 0.2 * len(films)) <= 1, label
    with pytest.raises(ValueError, match="shortcut_class.*'any'"):
        generate(tmp_path / "bad", shortcut=0.5, shortcut_class="covid", n_patients=4, size=32, progress=False,
                 classes=("pneumonia", "normal"))


def test_difficulty_range_is_drawn_per_patient(tmp_path):
    kw = dict(n_patients=30, size=32, progress=False, classes=("effusion", "normal"), layout="nih")
    m = generate(tmp_path / "a", difficulty=(0.2, 0.8), **kw)
    per_patient = m.groupby("patient_id")["difficulty"]
    assert (per_patient.nunique() == 1).all()  # all films of a patient alike
    d = per_patient.first()
    assert d.between(0.2, 0.8).all() and d.std() > 0.1
    again = generate(tmp_path / "b", difficulty=[0.2, 0.8], **kw)  # same seed: same draws, same files
    pd.testing.assert_series_equal(m["difficulty"], again["difficulty"])
    one = generate(tmp_path / "c", difficulty=0.5, **kw)
    assert (one["difficulty"] == 0.5).all()
    for bad in ((0.8, 0.2), (0.1, 1.5), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="difficulty"):
            generate(tmp_path / "bad", difficulty=bad, **kw)


def test_marker_changes_only_a_small_corner_region():
    for p in range(1, 7):
        plain, lung, les = render_image(0, p, p % 3, "pneumonia", size=128)
        marked, lung2, les2 = render_image(0, p, p % 3, "pneumonia", size=128, marker=True)
        np.testing.assert_array_equal(lung, lung2)
        np.testing.assert_array_equal(les, les2)
        rows, cols = np.nonzero(plain != marked)
        assert rows.size > 20
        assert rows.max() < 128 * 0.3  # a tag about a fifth of the film's height, in a top corner
        assert cols.max() < 128 * 0.25 or cols.min() >= 128 * 0.75
        assert rows.size < 0.04 * 128 * 128
        assert marked[rows, cols].astype(int).max() > 200  # a bright tag


def test_marker_is_recorded_and_burnt_into_the_file(tmp_path):
    m = generate(tmp_path, shortcut=1.0, classes=("pneumonia",), n_patients=2, size=64,
                 images_per_patient=(1, 1), image_format="png", progress=False)
    for row in m.itertuples():
        assert row.marker
        p = int(row.patient_id[1:])
        on_disk = _gray(tmp_path / row.path)
        np.testing.assert_array_equal(on_disk, render_image(0, p, 0, "pneumonia", size=64, marker=True)[0])


# --------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("kwargs,name", [
    (dict(layout="padchest"), "layout"),
    (dict(classes=("normal", "tuberculosis")), "classes"),
    (dict(classes=()), "classes"),
    (dict(classes=("normal", "normal")), "classes"),
    (dict(size=16), "size"),
    (dict(difficulty=1.5), "difficulty"),
    (dict(difficulty=float("nan")), "difficulty"),
    (dict(shortcut=-0.1), "shortcut"),
    (dict(shortcut_class="effusion", classes=("normal", "covid")), "shortcut_class"),
    (dict(n_patients=0), "n_patients"),
    (dict(images_per_patient=(3, 2)), "images_per_patient"),
    (dict(images_per_patient=(0, 2)), "images_per_patient"),
    (dict(seed=-1), "seed"),
    (dict(image_format="gif"), "image_format"),
    (dict(jpeg_quality=0), "jpeg_quality"),
    (dict(split_fractions=(0.5, 0.1, 0.1)), "split_fractions"),
    (dict(split_fractions=(0.0, 0.5, 0.5)), "split_fractions"),
    (dict(class_fractions={"normal": 0.5, "tb": 0.5}), "class_fractions: unknown class 'tb'"),
    (dict(class_fractions={"normal": 1.2, "covid": -0.2}), "share of 'covid' must be a number >= 0"),
    (dict(class_fractions={"normal": 0.5, "covid": "half"}), "share of 'covid' must be a number >= 0"),
    (dict(class_fractions={"normal": 0.5, "covid": 0.4}), "class_fractions must sum to 1"),
    (dict(class_fractions={}), "class_fractions must be a non-empty mapping"),
    (dict(class_fractions=[0.5, 0.5]), "class_fractions must be a non-empty mapping"),
    (dict(class_fractions={"normal": 0.5, "covid": 0.5}, classes=("normal", "effusion")),
     r"class_fractions names \['covid', 'normal'\] but classes are \['normal', 'effusion'\]"),
])
def test_bad_arguments_raise_value_error_naming_them(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()  # nothing written before validation


@pytest.mark.parametrize("kwargs,name", [
    (dict(label="tb"), "label"), (dict(size=8), "size"), (dict(difficulty=2), "difficulty"),
    (dict(subtype="fungal"), "subtype"), (dict(seed=-3), "seed"),
])
def test_render_image_validates_arguments(kwargs, name):
    args = {"seed": 0, "patient": 1, "image": 0, "label": "normal", **kwargs}
    with pytest.raises(ValueError, match=name):
        render_image(args.pop("seed"), args.pop("patient"), args.pop("image"), args.pop("label"), **args)


# --------------------------------------------------------------------------- ensure

def test_ensure_reuses_and_regenerates(tmp_path):
    out = tmp_path / "data"
    args = dict(n_patients=4, size=32, seed=1, progress=False)
    first = ensure(out, **args)
    stamp = (out / "synthetic.csv").stat().st_mtime_ns
    marker_file = out / "chest_xray" / "touched"
    marker_file.write_text("kept if reused")
    again = ensure(out, **args)
    pd.testing.assert_frame_equal(first, again)
    assert again["patient_id"].map(type).eq(str).all()
    assert (out / "synthetic.csv").stat().st_mtime_ns == stamp and marker_file.exists()
    changed = ensure(out, **{**args, "seed": 2})
    assert not marker_file.exists()  # old contents wiped
    assert set(changed["seed"]) == {2}
    assert json.loads((out / "synthetic.json").read_text())["arguments"]["seed"] == 2
    marker_file.write_text("kept if reused")
    skewed = ensure(out, **{**args, "seed": 2, "class_fractions": {"normal": 0.75, "covid": 0.25}})
    assert not marker_file.exists() and skewed["label"].value_counts().index[0] == "normal"
    assert ensure(out, **{**args, "seed": 2, "class_fractions": {"normal": 0.75, "covid": 0.25}}).equals(skewed)
    layout = ensure(out, **{**args, "layout": "covid-chestxray"})
    assert (out / "metadata.csv").is_file() and not (out / "chest_xray").exists()
    assert len(layout) == len(pd.read_csv(out / "metadata.csv"))


def test_ensure_regenerates_an_incomplete_dataset(tmp_path):
    args = dict(n_patients=2, size=32, progress=False)
    ensure(tmp_path, **args)
    info = json.loads((tmp_path / "synthetic.json").read_text())
    info["complete"] = False
    (tmp_path / "synthetic.json").write_text(json.dumps(info))
    ensure(tmp_path, **args)
    assert json.loads((tmp_path / "synthetic.json").read_text())["complete"] is True


def test_ensure_and_generate_refuse_to_wipe_a_foreign_folder(tmp_path):
    (tmp_path / "thesis.txt").write_text("precious")
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        ensure(tmp_path, n_patients=2, size=32, progress=False)
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        generate(tmp_path, n_patients=2, size=32, progress=False)
    assert (tmp_path / "thesis.txt").read_text() == "precious"


def test_ensure_rejects_unknown_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown argument"):
        ensure(tmp_path, n_patient=3)


def test_a_mimic_is_a_normal_film_with_the_findings_faint_look_alike():
    """`mimics`: a share of normal patients whose films carry a faint shadow drawn like the set's
    subtler findings (the upper half of its difficulty range), with a normal label and an empty
    lesion mask; nothing changes for other patients or when the share is 0."""
    from cxrnb.synthetic.write import patient_mimic

    st = {"mimics": 0.5, "classes": ["normal", "effusion"], "seed": 1, "difficulty": [0.4, 0.8]}
    draws = [patient_mimic(st, p, "normal") for p in range(400)]
    chosen = [d for d in draws if d is not None]
    assert 0.4 < len(chosen) / len(draws) < 0.6
    assert all(f == "effusion" and 0.6 <= d <= 0.8 for f, d in chosen)
    assert patient_mimic(st, 0, "effusion") is None and patient_mimic({**st, "mimics": 0.0}, 0, "normal") is None
    p = next(i for i, d in enumerate(draws) if d is not None)
    plain, lung, les = render_image(1, p, 0, "normal", size=96, difficulty=0.5)
    mimic, lung2, les2 = render_image(1, p, 0, "normal", size=96, difficulty=0.5, mimic=draws[p])
    _, _, where = render_image(1, p, 0, "effusion", size=96, difficulty=0.5)
    assert not les.any() and not les2.any() and np.array_equal(lung, lung2)
    gain = mimic.astype(float) - plain
    assert gain[where > 0].mean() > 5  # a shadow where the finding would be
    assert np.abs(gain[lung == 0]).mean() < 1  # and nowhere else
    with pytest.raises(ValueError, match="mimic must be"):
        render_image(1, p, 0, "normal", size=96, mimic=("normal", 0.5))
