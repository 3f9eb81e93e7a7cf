"""Shortcut measurements: marker boxes, counterfactual films, blanked lungs, source labels."""
import keras
import numpy as np
import pandas as pd
import pytest

from cxrnb import explain as E
from cxrnb import shortcut as SC
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
