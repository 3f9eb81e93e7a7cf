"""First-cell helpers of the notebooks: reproducible set-up and the dataset folder.

Each notebook's parameters cell names a dataset and a folder; `prepare_data` makes the
embedded synthetic set there when asked for it (cheaply reused on re-runs), or checks that a
real dataset folder exists and says what to put there when it does not.
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np

#: Where each real source can be downloaded, shown when its folder is missing.
DOWNLOADS = {
    "covid-chestxray": "git clone https://github.com/ieee8023/covid-chestxray-dataset",
    "kaggle-pneumonia": "kaggle datasets download -d paultimothymooney/chest-xray-pneumonia",
    "nih": "https://nihcc.app.box.com/v/ChestXray-NIHCC (Data_Entry_2017.csv + images_*/)",
    "folder": "any folder of <class>/<image> files",
}


def setup(seed: int = 0, *, dpi: int = 80, tensorflow: bool = False) -> None:
    """Seed Python, NumPy (and Keras/TF when `tensorflow`), set quiet logs and small figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets
    random.seed(seed)
    np.random.seed(seed)
    if tensorflow:
        import keras

        keras.utils.set_random_seed(seed)
    import matplotlib as mpl
    import pandas as pd

    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9,
                         "axes.titlesize": 10, "image.interpolation": "antialiased"})
    _inline_figures()
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_colwidth", 60)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _inline_figures() -> None:
    """Show returned `Figure` objects inline (plots builds them without pyplot)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and hasattr(ip, "kernel"):
        ip.run_line_magic("matplotlib", "inline")
        # X-ray grids are noise-rich photographs: JPEG keeps notebooks small (PNG is 4x larger)
        ip.run_line_magic("config", "InlineBackend.figure_formats = ['jpeg']")


def prepare_data(dataset: str, data_dir: str | Path, *, seed: int = 0, **synthetic) -> Path:
    """Return the dataset folder, generating the synthetic set there if `dataset` is "synthetic".

    `synthetic` options go to `cxrnb.synthetic.ensure` (n_patients, size, classes, layout,
    shortcut, difficulty ...). It prints one line that is the same whether the data was just
    made or reused (no progress bar), so notebook outputs do not depend on earlier runs. For
    a real source the folder must exist: the error says where to get the data.
    """
    data_dir = Path(data_dir)
    if dataset == "synthetic":
        from .synthetic import ensure

        m = ensure(data_dir, seed=seed, progress=False, **synthetic)
        print(f"synthetic dataset: {len(m)} images of {m['patient_id'].nunique()} patients "
              f"in {data_dir.as_posix()} (seed {seed})")
        return data_dir
    if not data_dir.is_dir():
        hint = DOWNLOADS.get(dataset, "")
        raise FileNotFoundError(f"{data_dir}: dataset folder for {dataset!r} not found. Get it with: {hint}")
    return data_dir


def execute(notebook: str | Path, parameters: dict, output: str | Path | None = None,
            *, timeout: int = 1200) -> "nbformat.NotebookNode":  # noqa: F821
    """Run a notebook with `parameters` overriding its parameters cell (papermill convention).

    A cell tagged ``injected-parameters`` is inserted after the cell tagged ``parameters``,
    so the notebook runs unchanged otherwise. The kernel starts in the notebook's folder, so
    relative paths mean the same as in Jupyter. Returns the executed notebook (also written to
    `output` when given); raises `nbclient.exceptions.CellExecutionError` on a failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    where = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not where:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    src = "# Parameters injected by cxrnb.notebook.execute\n" + "\n".join(
        f"{k} = {v!r}" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(where[0] + 1, cell)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
    return nb


def load_split(dataset: str, data_dir: str | Path, output_dir: str | Path, *, task: dict | None = None,
               seed: int = 0, val: float = 0.15, test: float = 0.15, **synthetic):
    """The patient-level split of notebook 01: read ``output_dir/split.csv`` or rebuild it.

    The saved split is reused only when it was made from the same dataset folder; otherwise
    (a notebook run alone, or with other parameters) the index and split are rebuilt quietly
    and saved. Prints the same one-line summary either way, so outputs are reproducible.
    """
    import pandas as pd

    from .index import read_index
    from .splits import check_no_leakage, split_by_patient
    from .validate import load_index

    root = prepare_data(dataset, data_dir, seed=seed, **synthetic)
    csv = Path(output_dir) / "split.csv"
    split = read_index(csv) if csv.is_file() else None
    if split is None or set(split["root"].astype(str)) != {str(root)} or set(split["source"]) - {dataset}:
        index, _ = load_index(dataset, root, progress=False, cache=Path(output_dir) / "cache", **(task or {}))
        split = split_by_patient(index, val=val, test=test, seed=seed)
        csv.parent.mkdir(parents=True, exist_ok=True)
        split.to_csv(csv, index=False)
    check_no_leakage(split)
    counts = split["split"].value_counts()
    print(f"split: {len(split)} images of {split['patient_id'].nunique()} patients; "
          + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
          + "; classes " + ", ".join(sorted(pd.unique(split["label"]))))
    return split
