"""Notebook hygiene, and the notebooks on the real subsets in ../shared/data (parameters cell only)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SHARED_PARAMETERS = ("DATASET", "DATA_DIR", "TASK", "SYNTHETIC", "OUTPUT_DIR", "SEED")

REAL = {
    "kaggle-pneumonia": ("kaggle-pneumonia", {"classes": ["normal", "bacteria", "virus"]}),
    "covid-chestxray": ("actualmed-covid", {"classes": ["covid", "normal"]}),
    "nih": ("nih-chestxray14", {"finding": "Effusion"}),
}


def parameters(nb_path: Path) -> dict:
    cells = json.loads(nb_path.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


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


@pytest.mark.parametrize("dataset", sorted(REAL))
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_real_subset(nb_path, dataset, shared_data, tmp_path):
    folder, task = REAL[dataset]
    params = {"DATASET": dataset, "DATA_DIR": str(shared_data(folder)), "OUTPUT_DIR": str(tmp_path),
              "TASK": task}
    import papermill as pm  # the notebooks extra; only these tests run notebooks

    nb = pm.execute_notebook(nb_path, tmp_path / nb_path.name, parameters=params, cwd=nb_path.parent,
                             kernel_name="python3", progress_bar=False, execution_timeout=1200)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    split = pd.read_csv(tmp_path / "split.csv", dtype={"patient_id": str})
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    assert (tmp_path / "figures").is_dir() and any((tmp_path / "figures").iterdir())
