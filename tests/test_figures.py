"""No figure is blank: every figure the notebooks draw, rendered from small realistic inputs, and
every image the committed notebooks hold, shows more than one colour (and every film or map in
it does)."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cxrnb import plots
from cxrnb.evaluate import evaluate
from cxrnb.explain import Curves
from cxrnb.images import read_gray
from cxrnb.lessons import augmentation
from cxrnb.synthetic import generate
from cxrnb.validate import load_index

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SIZE = 64
CLASSES = ["normal", "pneumonia"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small synthetic Kaggle-layout set: its index, films as model inputs, masks and a blob CAM
    per film (peak on the lesion when there is one), labels and probabilities of a fair model."""
    root = tmp_path_factory.mktemp("figures")
    generate(root, layout="kaggle-pneumonia", n_patients=20, size=SIZE, realistic=True, progress=False)
    index = load_index("synthetic", root, progress=False).index
    rows = index.groupby("label", group_keys=False).head(4).reset_index(drop=True)

    def read(col):
        return np.stack([read_gray(Path(r.root) / getattr(r, col), SIZE, min_side=1)[0]
                         if isinstance(getattr(r, col), str) else np.zeros((SIZE, SIZE), np.uint8)
                         for r in rows.itertuples()])

    films, lungs, lesions = read("path"), read("lung_mask"), read("lesion_mask")
    yy, xx = np.mgrid[:SIZE, :SIZE]
    maps = []
    for le in lesions:
        r, c = np.argwhere(le > 0).mean(0) if le.any() else (SIZE / 2, SIZE / 3)
        maps.append(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 8.0 ** 2)))
    y = np.array([CLASSES.index(lab) for lab in rows["label"]])
    p1 = np.clip(0.25 + 0.5 * y + np.random.default_rng(0).normal(0, 0.2, len(y)), 0.02, 0.98)
    return dict(index=index, rows=rows, x=films[..., None] / 255.0, films=films, lungs=lungs,
                lesions=lesions, maps=np.asarray(maps, np.float32), y=y,
                proba=np.stack([1 - p1, p1], 1))


def test_is_blank_sees_an_empty_figure_a_flat_film_and_a_real_one():
    assert plots.is_blank(Figure())
    flat = Figure()
    ax = flat.subplots()
    ax.imshow(np.full((8, 8), 0.3), cmap="gray", vmin=0, vmax=1)
    ax.set_title("a title and ticks do not make a flat film visible")
    assert plots.is_blank(flat)
    film = Figure()
    film.subplots().imshow(np.random.default_rng(0).random((8, 8)), cmap="gray")
    assert not plots.is_blank(film)
    assert plots.is_blank(np.full((20, 30, 4), 255, np.uint8))               # white PNG
    assert plots.is_blank(np.dstack([np.zeros((20, 30, 3)), np.zeros((20, 30))]))  # transparent
    assert not plots.is_blank(np.random.default_rng(0).integers(0, 255, (20, 30, 3)))


def figures(d) -> dict[str, Figure]:
    """Each figure function the notebooks call, on the data fixture's inputs."""
    index, n = d["index"], len(d["y"])
    names = [CLASSES[i] for i in d["y"]]
    pred = d["proba"].argmax(1)
    fr = np.linspace(0, 1, 9)
    curves = {"gradcam": Curves(fr, np.tile(1 - fr ** 0.5, (n, 1)), np.tile(fr ** 0.3, (n, 1))),
              "random map": Curves(fr, np.tile(1 - fr, (n, 1)), np.tile(fr, (n, 1)))}
    hist = pd.DataFrame({"epoch": range(5), "loss": [0.9, 0.6, 0.5, 0.45, 0.4],
                         "accuracy": [0.5, 0.7, 0.8, 0.82, 0.85], "val_loss": [0.8, 0.7, 0.65, 0.7, 0.72],
                         "val_accuracy": [0.55, 0.65, 0.7, 0.68, 0.66]})
    ev = evaluate(d["y"], d["proba"], CLASSES, groups=d["rows"]["patient_id"], n_boot=20)
    film = d["films"][-1]
    firsts, last = augmentation.first_films(d["rows"], SIZE), d["rows"].iloc[-1]
    return {
        "overview": plots.overview(index),
        "image_sizes": plots.image_sizes(index),
        "sample_grid": plots.sample_grid(index, n_per_class=2, size=SIZE),
        "split_overview": plots.split_overview(index),
        "batch_grid": plots.batch_grid(d["x"], d["y"], CLASSES, n=4, cols=4),
        "learning_curves": plots.learning_curves(hist),
        "confusion_matrix": plots.confusion_matrix(ev),
        "roc_pr_curves": plots.roc_pr_curves(d["y"], d["proba"], CLASSES),
        "calibration_curve": plots.calibration_curve(d["y"], d["proba"], n_bins=5),
        "prediction_grid": plots.prediction_grid(d["x"], d["y"], d["proba"], CLASSES, n=8, cols=4),
        "cam_overlay": plots.cam_overlay(d["x"][-1], d["maps"][-1], lung=d["lungs"][-1],
                                         lesion=d["lesions"][-1]),
        "cam_methods": plots.cam_methods(d["x"][:3], {"gradcam": d["maps"][:3], "layercam": d["maps"][:3] ** 2},
                                         lungs=d["lungs"][:3], lesions=d["lesions"][:3]),
        "cam_grid (indexes)": plots.cam_grid(d["x"], d["maps"], d["y"], pred, CLASSES, n_per_class=2),
        "cam_grid (names)": plots.cam_grid(d["x"], d["maps"], names, [CLASSES[i] for i in pred], CLASSES,
                                           n_per_class=2),
        "faithfulness_curves": plots.faithfulness_curves(curves),
        "augmentation.unsafe_grid": augmentation.unsafe_grid(film),
        "augmentation.preset_grid": augmentation.preset_grid(film, n=2),
        "augmentation.class_grid": augmentation.class_grid(firsts[0], "default", n_aug=2, masks_by_class=firsts[1]),
        "augmentation.resolution_grid": augmentation.resolution_grid(f"{last.root}/{last.path}", (32, 64), 4),
    }


def test_every_notebook_figure_shows_something(data):
    figs = figures(data)
    blank = [name for name, fig in figs.items() if plots.is_blank(fig)]
    assert not blank, f"blank or one-colour figure(s), or a flat film in them: {blank}"
    films = {name: sum(bool(ax.images) for ax in fig.axes) for name, fig in figs.items()}
    assert films["cam_grid (indexes)"] == films["cam_grid (names)"] >= 4  # ok and wrong per class
    assert films["prediction_grid"] == 8 and films["cam_methods"] == 9


def _images(path: Path):
    """(cell number, mime type, decoded RGB(A) pixels) of every image output of a notebook."""
    for k, cell in enumerate(json.loads(path.read_text())["cells"]):
        for out in cell.get("outputs", []):
            for mime in ("image/png", "image/jpeg"):
                if mime in out.get("data", {}):
                    img = Image.open(io.BytesIO(base64.b64decode(out["data"][mime])))
                    yield k, mime, np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_figures_are_not_blank(path):
    found = list(_images(path))
    blank = [f"cell {k} ({mime}, {px.shape[1]}x{px.shape[0]})" for k, mime, px in found if plots.is_blank(px)]
    assert not blank, f"{path.name}: blank or one-colour figure output(s): {blank}"
