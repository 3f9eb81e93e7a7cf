"""The synthetic layouts of rsna-pneumonia, dicom, chexpert and mimic-cxr-jpg: written by the
generator, read by the real readers, and carried through the notebooks' data path (01-03:
prepare -> index -> validate -> split) by parameters alone."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import cxrnb.notebook as nb
from cxrnb import explain, plots
from cxrnb.cli import main
from cxrnb.index import read_index, write_index
from cxrnb.pipeline import load_images, load_masks
from cxrnb.splits import check_no_leakage, official_column, official_split
from cxrnb.synthetic import generate
from cxrnb.synthetic.hospital import IDENTIFIERS
from cxrnb.validate import load_index

#: Layout -> the task the notebooks' TASK parameter would carry for it.
TASKS = {"rsna-pneumonia": {}, "dicom": {}, "chexpert": {"uncertain": "positive", "negative": "rest"},
         "mimic-cxr-jpg": {"negative": "rest"}}
SMALL = {"n_patients": 24, "size": 64, "realistic": True}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {name: (root / name, generate(root / name, layout=name, seed=3, progress=False, **SMALL)) for name in TASKS}


@pytest.mark.parametrize("layout", list(TASKS))
def test_layout_is_read_by_its_real_reader_and_by_the_manifest(layouts, layout, tmp_path):
    root, manifest = layouts[layout]
    res = load_index(layout, root, progress=False, **TASKS[layout])
    assert len(res.index) + len(res.report) == len(manifest)
    assert set(res.index["path"]) <= set(manifest["path"].str.replace("CheXpert-v1.0-small/", "", regex=False))
    assert res.index["label"].nunique() == 2 and res.index["patient_id"].nunique() >= 10
    syn, rep = load_index("synthetic", root, progress=False)
    assert len(syn) == len(manifest) and len(rep) == 0
    for csv in (write_index(res.index, tmp_path / "i.csv"), write_index(res.report, tmp_path / "r.csv")):
        text = csv.read_text()
        assert not any(v in text for v in IDENTIFIERS.values())


def test_dicom_layout_holds_every_encoding_and_the_rsna_layout_real_ones(layouts):
    import pydicom

    root, manifest = layouts["dicom"]
    seen = set()
    for rel in manifest["path"]:
        ds = pydicom.dcmread(root / rel, stop_before_pixels=True)
        seen.add((ds.PhotometricInterpretation, int(ds.BitsStored), ds.file_meta.TransferSyntaxUID.name,
                  "." in rel.rsplit("/", 1)[-1], "WindowCenter" in ds, "RescaleSlope" in ds))
        assert str(ds.PatientName) == IDENTIFIERS["PatientName"]  # carried, and never indexed (above)
    kinds = {(m, b, t.split()[0]) for m, b, t, *_ in seen}
    assert {("MONOCHROME2", 8, "Explicit"), ("MONOCHROME2", 8, "JPEG"), ("MONOCHROME2", 12, "Explicit"),
            ("MONOCHROME1", 12, "RLE")} == kinds
    assert any(not ext and window and rescale for *_, ext, window, rescale in seen)  # 12-bit, no extension
    rsna, _ = layouts["rsna-pneumonia"]
    ds = pydicom.dcmread(next((rsna / "stage_2_train_images").iterdir()), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.name.startswith("JPEG Baseline") and ds.Modality == "CR"


def test_layouts_are_deterministic(tmp_path):
    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synthetic.json"}

    for layout in ("dicom", "mimic-cxr-jpg"):
        a = generate(tmp_path / "a" / layout, layout=layout, n_patients=4, size=48, seed=1, progress=False)
        generate(tmp_path / "b" / layout, layout=layout, n_patients=4, size=48, seed=1, progress=False)
        assert len(a) and digest(tmp_path / "a" / layout) == digest(tmp_path / "b" / layout)


def test_rsna_boxes_enclose_the_lesions_and_feed_localisation(layouts):
    root, manifest = layouts["rsna-pneumonia"]
    idx, _ = load_index("rsna-pneumonia", root, progress=False)
    pos = idx[idx["label"] == "pneumonia"].head(4)
    _, lesions = load_masks(pos, 64)
    truth = manifest.set_index("path").loc[pos["path"], "lesion_mask"]
    from PIL import Image

    for box, rel in zip(lesions, truth):
        m = np.asarray(Image.open(root / rel).resize((64, 64), Image.Resampling.NEAREST)) > 127
        assert m.any() and (box[m] > 0).mean() > 0.95  # the box covers its lesion
        assert (box > 0).sum() >= m.sum()
    maps = {"centre": np.stack([np.pad(np.ones((8, 8)), 28) for _ in range(len(pos))])}
    table = explain.localisation(maps, None, lesions, seed=0)
    assert {"lesion_energy", "pointing_game"} <= set(table.columns) and table.loc["random map", "n_lesion"] == len(pos)


def test_box_overlay_draws_boxes_over_films(layouts):
    root, _ = layouts["rsna-pneumonia"]
    idx, _ = load_index("rsna-pneumonia", root, progress=False)
    fig = plots.box_overlay(idx, n=4, size=96, seed=0)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    assert rgb.std() > 20  # films, not a blank page
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    assert red.sum() > 100  # the boxes
    with pytest.raises(ValueError, match="no 'boxes' column"):
        plots.box_overlay(idx.drop(columns=["boxes"]))


@pytest.mark.parametrize("layout", list(TASKS))
def test_notebooks_01_to_03_data_path_by_parameters_alone(layout, tmp_path, capsys):
    """Notebooks 01-05's data path (`nb.DataSpec`: prepare, index, split) on each layout, read
    (a) as DATASET="synthetic" with SYNTHETIC={"layout": ...} and (b) by its own reader with the
    same SYNTHETIC options still in the parameters cell: they are ignored for a real source."""
    out = tmp_path / "outputs"
    synthetic = {"layout": layout, **SMALL}
    syn = nb.DataSpec("synthetic", tmp_path / "syn", out / "a", synthetic=synthetic, seed=0)
    split = syn.split()
    check_no_leakage(split)
    assert set(split["split"]) == {"train", "val", "test"} and syn.collection == layout
    data_dir = syn.prepare()
    real = nb.DataSpec(layout, data_dir, out / "b", task=TASKS[layout], synthetic=synthetic, seed=0)
    assert real.options == {} and real.collection == layout
    res = real.index()
    assert res.summary().startswith(f"{len(res.index)} images kept")
    own = real.split()
    check_no_leakage(own)
    again = real.split()  # notebook 02/03: reused
    assert again[["path", "split"]].values.tolist() == own[["path", "split"]].values.tolist()
    assert own[["path", "split"]].values.tolist() == nb.load_split(
        layout, data_dir, out / "c", task=TASKS[layout], seed=0)[["path", "split"]].values.tolist()
    if official_column(own):
        assert set(official_split(own, val=0.1, fix_leaks=True)["split"]) <= {"train", "val", "test"}
    x = load_images(own.head(4), 32, progress=False, cache=out / "cache")
    assert x.shape == (4, 32, 32) and x.std() > 5
    assert "split:" in capsys.readouterr().out


def test_cli_synth_and_index_new_sources(tmp_path, capsys):
    assert main(["-q", "synth", str(tmp_path / "rsna"), "--layout", "rsna-pneumonia", "--n-patients", "12",
                 "--size", "64", "--classes", "normal", "pneumonia"]) == 0
    assert main(["-q", "index", "rsna-pneumonia", str(tmp_path / "rsna"), "--out", str(tmp_path / "i.csv"),
                 "--report", str(tmp_path / "r.csv")]) == 0
    idx = read_index(tmp_path / "i.csv")
    assert set(idx["label"]) == {"no_pneumonia", "pneumonia"} and "boxes" in idx
    assert main(["-q", "synth", str(tmp_path / "cx"), "--layout", "chexpert", "--n-patients", "12", "--size", "64",
                 "--classes", "normal", "effusion"]) == 0
    assert main(["-q", "index", "chexpert", str(tmp_path / "cx"), "--out", str(tmp_path / "c.csv"),
                 "--uncertain", "positive"]) == 0
    assert main(["-q", "index", "chexpert", str(tmp_path / "cx"), "--out", str(tmp_path / "c.csv"),
                 "--uncertain", "sometimes"]) == 2
    assert "choose from ['ignore', 'positive', 'negative']" in capsys.readouterr().err
