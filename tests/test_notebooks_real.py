"""Notebook hygiene, and the notebooks on the real subsets in ../shared/data (parameters cell only)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cxrnb.notebook import parameters

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SHARED_PARAMETERS = ("DATASET", "DATA_DIR", "TASK", "SYNTHETIC", "OUTPUT_DIR", "SEED")

REAL = {
    "kaggle-pneumonia": ("kaggle-pneumonia", {"classes": ["normal", "bacteria", "virus"]}),
    "covid-chestxray": ("actualmed-covid", {"classes": ["covid", "normal"]}),
    "nih": ("nih-chestxray14", {"finding": "Effusion"}),
    "rsna-pneumonia": ("rsna-pneumonia", {}),
}


def test_notebooks_share_dataset_parameters():
    """Notebooks hand files to each other, so their dataset defaults must be identical."""
    assert len(NOTEBOOKS) >= 2
    first = parameters(NOTEBOOKS[0])
    for nb in NOTEBOOKS[1:]:
        p = parameters(nb)
        assert {k: p.get(k) for k in SHARED_PARAMETERS} == {k: first[k] for k in SHARED_PARAMETERS}, nb.name


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_small_and_clean(nb_path):
    text = nb_path.read_text()
    assert nb_path.stat().st_size < 2_000_000
    for bad in ('"/work/', '"/root/', '"/home/', '"/tmp/', "Traceback"):
        assert bad not in text, f"{nb_path.name} output contains {bad!r}"
    code = [c for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell has been executed"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_state_the_lesson_in_ten_lines_at_most(nb_path):
    """Cells state the lesson, helpers (cxrnb.lessons) do the plumbing: no code cell over 10 lines
    but the install and parameters cells."""
    cells = json.loads(nb_path.read_text())["cells"]
    long = {k: len("".join(c["source"]).splitlines()) for k, c in enumerate(cells) if c["cell_type"] == "code"
            and not {"install", "parameters"} & set(c.get("metadata", {}).get("tags", []))}
    assert all(n <= 10 for n in long.values()), {k: n for k, n in long.items() if n > 10}


#: Per notebook: the real subsets it runs on, and the parameters that keep the run short (the
#: notebooks that train use few epochs and small images here; their lessons use the same data).
QUICK = {"EPOCHS": 2, "IMAGE_SIZE": 64, "LEAKAGE": None, "IMBALANCE": None, "N_IMAGES": 8}
CASES = [(nb, d) for nb in NOTEBOOKS if not nb.name.startswith("05_") for d in sorted(REAL)]
# Notebook 05's real set-up is the articles': COVID from the Actualmed subset, normals from Kaggle's.
CASES += [(nb, "kaggle-pneumonia") for nb in NOTEBOOKS if nb.name.startswith("05_")]


@pytest.mark.parametrize("nb_path,dataset", CASES, ids=[f"{nb.stem}-{d}" for nb, d in CASES])
def test_notebook_runs_on_real_subset(nb_path, dataset, shared_data, tmp_path):
    folder, task = REAL[dataset]
    params = {"DATASET": dataset, "DATA_DIR": str(shared_data(folder)), "OUTPUT_DIR": str(tmp_path),
              "TASK": task}
    names = parameters(nb_path)
    params.update({k: v for k, v in QUICK.items() if k in names})
    if "RUN" in names:  # train here on the real subset, not reuse the embedded run
        params["RUN"] = str(tmp_path / "runs" / "03_main")
    if "COVID_DATASET" in names:
        params.update(COVID_DATASET="covid-chestxray", COVID_DIR=str(shared_data("actualmed-covid")))
    if "MARKER" in names:
        params["MARKER"] = {**names["MARKER"], "n_patients": 40, "size": 64}
    import papermill as pm  # the notebooks extra; only these tests run notebooks

    nb = pm.execute_notebook(nb_path, tmp_path / nb_path.name, parameters=params, cwd=nb_path.parent,
                             kernel_name="python3", progress_bar=False, execution_timeout=1200)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    # the notebook's own split, its lessons' and runs' (not the leakage lesson's deliberately leaky one)
    splits = sorted(p for p in tmp_path.rglob("split.csv") if "image-level" not in p.parts)
    assert splits
    for csv in splits:
        split = pd.read_csv(csv, dtype={"patient_id": str})
        assert split.groupby("patient_id")["split"].nunique().max() == 1, csv
    assert (tmp_path / "figures").is_dir() and any((tmp_path / "figures").iterdir())


#: The synthetic layouts of the hospital sources (DICOM, RSNA boxes, CheXpert, MIMIC-CXR-JPG).
LAYOUTS = ("rsna-pneumonia", "dicom", "chexpert", "mimic-cxr-jpg")
# 01 reads, validates and decodes every layout; 02 and 03 run on the two whose films differ most
# from the embedded default's (DICOM files in four encodings; RSNA's one JPEG DICOM per patient
# with boxes as lesion masks): past `DataSpec.split` their path is the same for every layout (the
# index contract), and each other layout cost another 25-40 s of `make test` for no other code path.
LAYOUT_CASES = [(nb, layout) for nb in NOTEBOOKS if nb.name[:2] == "01" for layout in LAYOUTS]
LAYOUT_CASES += [(nb, layout) for nb in NOTEBOOKS if nb.name[:2] in ("02", "03") for layout in ("dicom", "rsna-pneumonia")]


@pytest.mark.parametrize("nb_path,layout", LAYOUT_CASES, ids=[f"{nb.stem}-{lay}" for nb, lay in LAYOUT_CASES])
def test_notebook_runs_on_each_synthetic_hospital_layout(nb_path, layout, tmp_path):
    """Notebooks 01-03 on a synthetic set written in a hospital source's layout (`LAYOUT_CASES`),
    by the parameters cell alone (SYNTHETIC's layout), as on the embedded default."""
    import papermill as pm

    names = parameters(nb_path)
    params = {"DATA_DIR": str(tmp_path / "data"), "OUTPUT_DIR": str(tmp_path),
              "SYNTHETIC": {"n_patients": 24, "size": 64, "layout": layout, "realistic": True}}
    params.update({k: v for k, v in QUICK.items() if k in names})
    nb = pm.execute_notebook(nb_path, tmp_path / nb_path.name, parameters=params, cwd=nb_path.parent,
                             kernel_name="python3", progress_bar=False, execution_timeout=1200)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert any((tmp_path / "figures").iterdir())
