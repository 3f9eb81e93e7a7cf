"""Notebook 05's lessons (cxrnb.lessons.shortcuts): marker boxes, counterfactual films, blanked
lungs, source labels, the marker and collection lessons."""
import keras
import numpy as np
import pandas as pd
import pytest

from cxrnb import explain as E
from cxrnb.lessons import shortcuts as SC
from cxrnb.lessons.shortcuts import collection_lesson, marker_lesson
from cxrnb.synthetic.render import render_image

N = 48


def manifest(n: int = 6) -> pd.DataFrame:
    labels = ["covid", "normal"] * (n // 2)
    return pd.DataFrame({"seed": 3, "patient_id": [f"p{i:04d}" for i in range(n)], "image_index": 0,
                         "label": labels, "marker": [lab == "covid" for lab in labels],
                         "difficulty": 0.5, "source": "synthetic"})


def test_marker_mask_is_exactly_where_the_marker_is_burnt():
    for p, size in ((1, 48), (4, 64), (7, 128)):
        with_, _, _ = render_image(3, p, 1, "covid", size=size, marker=True)
        without, _, _ = render_image(3, p, 1, "covid", size=size)
        box = SC.marker_mask(3, p, 1, size) > 0
        changed = with_ != without
        assert not (changed & ~box).any() and changed.sum() > 0.9 * box.sum()


def test_rerender_follows_the_marker_flags_and_keeps_the_film():
    idx = manifest()
    kept, lungs = SC.rerender(idx, N)
    none, _ = SC.rerender(idx, N, marker=False)
    boxes = SC.marker_masks(idx, N) > 0
    assert kept.shape == (6, N, N) and lungs.shape == (6, N, N)
    diff = kept != none
    assert diff[idx["marker"].to_numpy()].any(axis=(1, 2)).all()
    assert not diff[~idx["marker"].to_numpy()].any()
    assert not (diff & ~boxes).any()                          # only the marker differs


def constant_model(p_covid: float) -> keras.Model:
    """Predicts covid with probability `p_covid` whatever the film (classes: covid, normal)."""
    inp = keras.Input((N, N, 1))
    x = keras.layers.Conv2D(1, 1, name="c")(inp)
    z = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    m = keras.Model(inp, keras.layers.Activation("softmax")(z))
    m.get_layer("logits").set_weights([np.zeros((1, 2)), np.log([p_covid, 1 - p_covid])])
    return m


def test_counterfactual_accuracy_swaps_the_marker_to_the_other_class():
    idx = manifest()
    t = SC.counterfactual_accuracy(constant_model(0.9), idx, ["covid", "normal"], N, "covid")
    assert list(t.index) == ["as generated", "no marker", "marker on the other class"]
    assert (t["accuracy"] == 0.5).all()
    assert t["with_marker"].tolist() == [0.5, 0.0, 0.5]
    assert SC.accuracy(constant_model(0.1), SC.rerender(idx, N)[0], idx["label"], ["covid", "normal"]) == 0.5
    with pytest.raises(ValueError, match="shortcut_class 'effusion' is not one of the classes"):
        SC.counterfactual_accuracy(constant_model(0.9), idx, ["covid", "normal"], N, "effusion")
    with pytest.raises(ValueError, match=r"index lacks column\(s\) \['marker'\]"):
        SC.rerender(idx.drop(columns="marker"), N)


def test_marker_energy_of_a_map_on_the_marker():
    idx = manifest(2)
    boxes = SC.marker_masks(idx, N)
    assert E.energy_share(boxes.astype(np.float32), boxes).tolist() == [1.0, 1.0]


def test_marker_cells_is_the_box_side_in_cam_cells():
    idx = manifest(4)
    from cxrnb.synthetic.render import marker_box

    sides = [np.sqrt(h * w) for h, w in (marker_box(3, p, 0, 64)[2:] for p in range(4))]
    expected = np.sqrt(np.mean(np.square(sides))) / (64 / 8)
    assert SC.marker_cells(idx, 64, 8) == pytest.approx(expected)
    assert SC.marker_cells(idx, 64, 16) == pytest.approx(2 * expected)  # a grid twice as fine


def test_blank_lungs_with_masks_or_the_documented_box():
    imgs = np.random.default_rng(0).integers(0, 256, (2, 40, 40), dtype=np.uint8)
    lungs = np.zeros((2, 40, 40), np.uint8)
    lungs[:, 10:30, 5:15] = 255
    out, how = SC.blank_lungs(imgs, lungs)
    assert how == "lung masks" and out.dtype == np.uint8
    assert (out[0][lungs[0] > 0] == int(imgs[0][lungs[0] == 0].mean())).all()
    assert (out[lungs == 0] == imgs[lungs == 0]).all()
    out, how = SC.blank_lungs(imgs.astype(np.float32) / 255, fill=0.0)
    assert how == "lung-field box (rows 15%-85%, columns 10%-90%)"
    assert (out[:, 6:34, 4:36] == 0).all() and (out[:, :6] == (imgs[:, :6] / 255).astype(np.float32)).all()
    with pytest.raises(ValueError, match=r"lung masks have shape \(2, 20, 20\) but the images are \(2, 40, 40\)"):
        SC.blank_lungs(imgs, lungs[:, :20, :20])


def test_source_classifier_relabels_by_source():
    idx = pd.DataFrame({"path": ["a", "b", "c"], "label": ["covid", "normal", "normal"],
                        "source": ["actualmed", "kaggle", "kaggle"]})
    seen = {}

    def fake_train(config, split, run_dir, classes=None, **kw):
        seen.update(config=config, split=split, run_dir=run_dir, classes=classes, kw=kw)
        return "result"

    assert SC.train_source_classifier(idx, fake_train, "quick", "runs/src", progress=False) == "result"
    assert seen["split"]["label"].tolist() == ["actualmed", "kaggle", "kaggle"]
    assert seen["split"]["finding"].tolist() == ["covid", "normal", "normal"]
    assert seen["classes"] == ["actualmed", "kaggle"] and seen["kw"] == {"progress": False}
    with pytest.raises(ValueError, match="index has 1 source"):
        SC.source_split(idx.assign(source="one"))
    again = SC.source_split(SC.source_split(idx))  # split first, stratified by source, then train
    assert again["finding"].tolist() == ["covid", "normal", "normal"]


def _probe_index(n_groups: int, shift: float, seed: int = 0):
    """Two sources of noise films, 3 films per patient; source B's films `shift` grey levels brighter."""
    rng = np.random.default_rng(seed)
    rows, imgs = [], []
    for g in range(2 * n_groups):
        src = "A" if g % 2 else "B"
        for k in range(3):
            imgs.append(np.clip(rng.normal(100 + (shift if src == "B" else 0), 30, (16, 16)), 0, 255))
            rows.append({"path": f"{g}-{k}.png", "label": "normal", "patient_id": f"p{g}", "source": src})
    return pd.DataFrame(rows), np.stack(imgs).astype(np.uint8)


def test_source_probe_finds_a_grey_level_difference_and_not_noise():
    idx, imgs = _probe_index(20, shift=25)
    found = SC.source_probe(idx, imgs, n_boot=200)
    assert found.balanced_accuracy > 0.9 and found.ci["balanced_accuracy"].low > 0.75
    idx, imgs = _probe_index(20, shift=0)
    none = SC.source_probe(idx, imgs, n_boot=200)
    assert none.ci["balanced_accuracy"].low < 0.5 < none.ci["balanced_accuracy"].high + 0.1
    assert none.balanced_accuracy < 0.7
    assert SC.grey_statistics(imgs).shape == (len(imgs), len(SC.PROBE_FEATURES))
    with pytest.raises(ValueError, match="fewer than folds=5"):
        SC.source_probe(*_probe_index(3, shift=25))
    with pytest.raises(ValueError, match="lacks column 'source'"):
        SC.source_probe(idx.drop(columns="source"), imgs)


# --------------------------------------------------------------------------- films as stored

STORED = 128  # the stored films' size of the marker dataset below


@pytest.fixture(scope="module")
def marker_data(tmp_path_factory):
    """A small Kaggle-layout marker dataset (JPEG files, 128 px) read as the notebooks read it."""
    from cxrnb.sources import read_synthetic
    from cxrnb.synthetic import generate

    root = tmp_path_factory.mktemp("marker")
    generate(root, n_patients=12, size=STORED, layout="kaggle-pneumonia", classes=["normal", "pneumonia"], shortcut=0.9,
             split_fractions=(0.7, 0.0, 0.3), progress=False)
    return read_synthetic(root)


def dilate(masks: np.ndarray, px: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(masks > 0, structure=np.ones((1, 2 * px + 1, 2 * px + 1), bool))


@pytest.mark.parametrize("size", [64, 48])
def test_rerendered_films_are_the_test_films_pixel_for_pixel(marker_data, size):
    from cxrnb.pipeline import load_images, load_masks

    idx = marker_data
    films, lungs = SC.rerender(idx, size)
    assert np.array_equal(films, load_images(idx, size, progress=False))   # same render, JPEG, decode, resize
    assert np.array_equal(lungs, load_masks(idx, size)[0])
    none, _ = SC.rerender(idx, size, marker=False)
    marked = idx["marker"].to_numpy(bool)
    changed = none != films
    assert marked.sum() >= 4 and changed[marked].any(axis=(1, 2)).all()
    assert not changed[~marked].any()
    box = SC.marker_masks(idx, size)
    # JPEG works on 8 x 8 blocks of the stored film: its ringing stays within a block of the marker
    assert not (changed & ~dilate(box, int(np.ceil(8 * size / STORED)))).any()
    assert (changed & (box > 0)).sum() > (changed & (box == 0)).sum()   # most of the change is the marker
    assert (box[marked] > 0).mean() < 0.05


def test_rerender_as_stored_for_realistic_films_and_refuses_copies(tmp_path):
    from cxrnb.pipeline import load_images
    from cxrnb.sources import read_synthetic
    from cxrnb.synthetic import generate

    generate(tmp_path, n_patients=6, size=64, layout="covid-chestxray", realistic=True, defects=True, progress=False)
    idx = read_synthetic(tmp_path)
    made = idx[idx["patient_id"].str[1:].astype(int) <= 6]   # PNG, cropped, resized, some RGB
    assert np.array_equal(SC.rerender(made, 48)[0], load_images(made, 48, progress=False))
    with pytest.raises(ValueError, match="p9101 is not one of the 6 rendered patients"):
        SC.rerender(idx[idx["patient_id"] == "p9101"], 48)
    with pytest.raises(ValueError, match="marker boxes of a realistic dataset are not known"):
        SC.marker_masks(made, 48)


def edge_model(size: int) -> keras.Model:
    """Calls a film pneumonia when it has sharp edges (neighbours over 0.5 apart): on these films,
    only the burnt-in marker's letter has them. Classes: normal, pneumonia."""
    inp = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(4, 2, activation="relu", name="edges")(inp)
    z = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    m = keras.Model(inp, keras.layers.Activation("softmax")(z))
    k = np.zeros((2, 2, 1, 4), np.float32)      # x - right, right - x, x - below, below - x
    k[0, 0, 0] = [1, -1, 1, -1]
    k[0, 1, 0, :2] = [-1, 1]
    k[1, 0, 0, 2:] = [-1, 1]
    m.get_layer("edges").set_weights([k, np.full(4, -0.5, np.float32)])
    m.get_layer("logits").set_weights([np.array([[0.0, (size - 1) ** 2]] * 4), np.array([0.0, -8.0])])
    return m


def grey_model(size: int, w: float, b: float, cls: int = 0) -> keras.Model:
    """Class `cls` has logit w * mean grey + b, the other 0: `cls` when the mean grey is above -b / w."""
    inp = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(1, 1, name="c")(inp)
    z = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    m = keras.Model(inp, keras.layers.Activation("softmax")(z))
    m.get_layer("c").set_weights([np.ones((1, 1, 1, 1)), np.zeros(1)])
    m.get_layer("logits").set_weights([np.roll([[w, 0.0]], cls, axis=1), np.roll([b, 0.0], cls)])
    return m


def test_marker_effect_of_a_marker_reader_against_a_control(marker_data):
    idx, size = marker_data, STORED
    control = grey_model(size, 0.01, 1.0, cls=1)            # says pneumonia (class 1) whatever the film
    fx = SC.marker_effect(edge_model(size), control, idx, ["normal", "pneumonia"], size, "pneumonia",
                          seed=0, n_boot=500)
    normal, marked = (idx["label"] == "normal").to_numpy(), idx["marker"].to_numpy(bool)
    acc = {m: {w: iv.estimate for w, iv in ways.items()} for m, ways in fx.accuracy.items()}
    assert acc["marker"] == pytest.approx({"as generated": np.mean(normal | marked), "no marker": normal.mean(),
                                           "marker on the other class": 0.0})
    assert acc["control"] == pytest.approx(dict.fromkeys(SC.WAYS, 1 - normal.mean()))
    d = fx.drop["marker"]
    assert d.estimate == pytest.approx(marked.mean()) and 0 < d.low <= d.estimate <= d.high
    assert (fx.drop["control"].estimate, fx.drop["control"].low, fx.drop["control"].high) == (0, 0, 0)
    assert fx.energy["marker"].estimate > 0.5 > 5 * fx.box_area                 # the map sits on the marker
    assert fx.energy["control"].estimate < 3 * fx.box_area                       # about the box's area
    assert (fx.n_films, fx.n_marked, fx.n_patients) == (len(idx), marked.sum(), idx["patient_id"].nunique())
    assert marker_lesson(fx).verdict() == "The marker model reads the marker, not the lungs: yes"
    assert marker_lesson(fx, min_drop=0.9).verdict() == "The marker model reads the marker, not the lungs: no"
    t = fx.table()
    assert list(t.index) == ["marker", "control"] and t.loc["marker", "drop"] == pytest.approx(d.estimate)
    with pytest.raises(ValueError, match="no test film carries the marker"):
        SC.marker_effect(control, control, idx[~marked], ["normal", "pneumonia"], size, "pneumonia", n_boot=10)


# --------------------------------------------------------------------------- collection

def _normals(bright: dict[str, list[int]]) -> tuple[pd.DataFrame, np.ndarray]:
    """Normal films of uniform grey per patient: 1 bright (200), 0 dark (50); patients named by source."""
    rows, imgs = [], []
    for src, pats in bright.items():
        for i, films in enumerate(pats):
            for b in films:
                rows.append({"label": "normal", "patient_id": f"{src}{i}", "source": src})
                imgs.append(np.full((16, 16), 200 if b else 50, np.uint8))
    return pd.DataFrame(rows), np.stack(imgs)


COVID_MODEL = dict(size=16, w=20.0, b=-10.0)  # "covid" (class 0) when the mean grey is above 0.5


def test_collection_effect_counts_normal_films_called_covid_by_source():
    model = grey_model(**COVID_MODEL)
    idx, imgs = _normals({"A": [[1, 1], [1, 1], [1, 0], [0, 0]], "B": [[1], [0], [0], [0], [0]]})
    fx = SC.collection_effect(model, idx, imgs, ["covid", "normal"], positive_source="A", n_boot=2000)
    assert fx.called["A"].estimate == 5 / 8 and fx.called["B"].estimate == 1 / 5
    assert fx.other is fx.called["B"] and fx.difference.estimate == pytest.approx(5 / 8 - 1 / 5)
    # B: one film per patient, so the resampled share is binomial(5, 0.2) / 5: 2.5 % and 97.5 % at 0 and 3/5
    assert (fx.called["B"].low, fx.called["B"].high, fx.called["B"].unit) == (0.0, 0.6, "image")
    assert fx.called["A"].unit == "patient" and fx.called["A"].low < 5 / 8 < fx.called["A"].high
    assert fx.n_films == {"A": 8, "B": 5} and list(fx.table().index) == ["A", "B", "other sources", "difference"]
    claim = "The model learned the collection: it calls normal films of the covid collection covid"
    assert collection_lesson(fx).verdict() == f"{claim}: no"   # interval reaches 0
    clear = SC.collection_effect(model, *_normals({"A": [[1, 1], [1], [1]], "B": [[0], [0, 0], [0]], "C": [[0]]}),
                                 ["covid", "normal"], positive_source="A", n_boot=200)
    assert (clear.difference.estimate, clear.difference.low, clear.difference.high) == (1.0, 1.0, 1.0)
    assert clear.other.estimate == 0.0 and clear.n_films == {"A": 4, "B": 4, "C": 1}
    assert collection_lesson(clear).verdict() == f"{claim}: yes"


def test_collection_effect_says_what_is_missing():
    model = grey_model(**COVID_MODEL)
    idx, imgs = _normals({"A": [[1]], "B": [[0]]})
    args = (model, idx, imgs, ["covid", "normal"])
    with pytest.raises(ValueError, match="normals_index lacks column 'collection'"):
        SC.collection_effect(*args, source_column="collection", positive_source="A")
    with pytest.raises(ValueError, match="positive_class 'pneumonia' is not one of the model's classes"):
        SC.collection_effect(*args, positive_class="pneumonia", positive_source="A")
    with pytest.raises(ValueError, match=r"column 'source' names 1 source\(s\) \['A'\]"):
        SC.collection_effect(model, idx.assign(source="A"), imgs, ["covid", "normal"], positive_source="A")
    with pytest.raises(ValueError, match="positive_source 'X' is not a value of column 'source'"):
        SC.collection_effect(*args, positive_source="X")
    with pytest.raises(ValueError, match="normals_index holds films labelled 'covid'"):
        SC.collection_effect(model, idx.assign(label="covid"), imgs, ["covid", "normal"], positive_source="A")


def test_collection_test_trains_on_the_mixed_set_and_scores_the_normal_films_it_never_saw(monkeypatch):
    """Notebook 05's collection test: split by patient, train, then the collection effect on the
    normal films whose patients were neither trained nor validated on; no lesson when only one
    collection has such films. Training and reading are stand-ins here (a model that calls a
    bright film covid: collection A's normal films are bright, B's dark)."""
    from types import SimpleNamespace

    from cxrnb.splits import split_by_patient
    from cxrnb.train import TrainConfig

    model, classes = grey_model(**COVID_MODEL), ["covid", "normal"]
    normals, imgs = _normals({"A": [[1, 1], [1], [1, 1], [1]], "B": [[0]] * 7 + [[1]]})
    normals = normals.assign(path=[f"n{i}.png" for i in range(len(normals))], view="PA", root="data")
    covid = pd.DataFrame({"path": [f"c{i}.png" for i in range(8)], "label": "covid", "view": "PA", "root": "data",
                          "patient_id": [f"C{i}" for i in range(8)], "source": "A"})
    mixed = pd.concat([covid, normals[normals["source"] == "B"]], ignore_index=True)
    trained, read = [], []

    def fake_train(config, split, run_dir, **kw):
        trained.append((config, split, run_dir, kw))
        return SimpleNamespace(model=model, classes=classes)

    def fake_load_images(rows, size, **kw):
        read.append((rows, size, kw))
        return imgs[rows.index]

    monkeypatch.setattr(SC, "train", fake_train)
    monkeypatch.setattr(SC, "load_images", fake_load_images)
    config = TrainConfig.preset("default", image_size=32)
    run, lesson = SC.collection_test(config, mixed, normals, "runs/article", positive_source="A", cache="c",
                                     seed=3, n_boot=200)
    split = split_by_patient(mixed, seed=3)
    assert run.model is model and trained[0][1].equals(split)
    assert trained[0][2:] == ("runs/article", {"overwrite": True, "cache": "c"})
    fitted = set(split.loc[split["split"] != "test", "patient_id"])
    held_out = normals[~normals["patient_id"].isin(fitted)]
    assert read[0][0].equals(held_out) and read[0][1:] == (32, {"cache": "c", "progress": False})
    expected = SC.collection_lesson(SC.collection_effect(model, held_out, imgs[held_out.index], classes,
                                                         positive_source="A", seed=3, n_boot=200))
    pd.testing.assert_frame_equal(lesson.table, expected.table)
    assert lesson.verdict() == expected.verdict()
    assert lesson.table.loc["A", "films"] == 6 and lesson.table.loc["B", "films"] == (held_out["source"] == "B").sum()
    only_b = normals[normals["source"] == "B"]
    assert SC.collection_test(config, mixed, only_b, "runs/article", positive_source="A", seed=3)[1] is None


def test_lungs_blanked_scores_a_runs_test_films_with_and_without_the_lungs():
    from types import SimpleNamespace

    model = grey_model(**COVID_MODEL)               # covid when the film is bright on average
    films = np.full((4, 16, 16), 200, np.uint8)
    films[:, :4] = 0                                # a dark band above the lungs
    lungs = np.zeros_like(films)
    lungs[:, 4:] = 255
    rows = pd.DataFrame({"label": ["covid", "covid", "normal", "covid"]})
    batch = SimpleNamespace(images=films, lungs=lungs, rows=rows)
    calls = []

    def test_batch(part, cache=None):
        calls.append((part, cache))
        return batch

    run = SimpleNamespace(model=model, classes=["covid", "normal"], metrics={"majority_class": "normal"},
                          batch=test_batch)
    scores, how = SC.lungs_blanked(run, cache="c")
    assert calls == [("test", "c")] and how == "lung masks"
    assert scores == {"accuracy": 0.75, "lungs blanked": 0.25, "majority baseline": 0.25}  # blanked: all dark
    assert SC.lungs_blanked(run, masks=False)[1].startswith("lung-field box")
