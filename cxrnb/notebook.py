"""First-cell helpers of the notebooks: reproducible set-up, the dataset folder, the split.

Each notebook's parameters cell names a dataset and a folder; `prepare_data` makes the
embedded synthetic set there when asked for it (cheaply reused on re-runs), or checks that a
real dataset folder exists and says what to put there when it does not. `save_split` and
`load_split` hand notebook 01's split to the later notebooks. To run a notebook with other
parameters, use papermill (``papermill 01_data_exploration.ipynb out.ipynb -p SEED 1``).
"""
from __future__ import annotations

import json
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


def _split_params(dataset: str, data_dir: str | Path, output_dir: str | Path, task: dict | None,
                  seed: int, val: float, test: float, synthetic: dict) -> dict:
    """What a split depends on, as JSON values; the data folder relative to the output folder."""
    rel = Path(os.path.relpath(os.path.abspath(data_dir), os.path.abspath(output_dir))).as_posix()
    return json.loads(json.dumps({"dataset": dataset, "data_dir": rel, "task": task or {}, "seed": seed,
                                  "val": val, "test": test, "synthetic": synthetic}, sort_keys=True))


def save_split(split, output_dir: str | Path, dataset: str, data_dir: str | Path, *, task: dict | None = None,
               seed: int = 0, val: float = 0.15, test: float = 0.15, **synthetic) -> Path:
    """Write ``split.csv`` and, beside it, ``split.json`` with the parameters it was made with.

    `load_split` reuses the CSV only when those parameters match its own, so a later notebook
    run with another task, seed or fraction never trains on a stale split.
    """
    from .index import atomic_write, write_index

    out = Path(output_dir)
    params = _split_params(dataset, data_dir, out, task, seed, val, test, synthetic)
    csv = write_index(split, out / "split.csv", mkdir=True)
    atomic_write(out / "split.json", lambda tmp: tmp.write_text(json.dumps(params, indent=1, sort_keys=True)))
    return csv


def load_split(dataset: str, data_dir: str | Path, output_dir: str | Path, *, task: dict | None = None,
               seed: int = 0, val: float = 0.15, test: float = 0.15, **synthetic):
    """The patient-level split of notebook 01: read ``output_dir/split.csv`` or rebuild it.

    The saved split is reused only when ``split.json`` beside it (see `save_split`) records the
    same dataset, data folder, task, seed, fractions and synthetic options; otherwise (a
    notebook run alone, or with other parameters) the index and split are rebuilt quietly and
    saved. Prints the same one-line summary either way, so outputs are reproducible.
    """
    import pandas as pd

    from .index import read_index
    from .splits import check_no_leakage, split_by_patient
    from .validate import load_index

    root = prepare_data(dataset, data_dir, seed=seed, **synthetic)
    out = Path(output_dir)
    csv, saved = out / "split.csv", out / "split.json"
    params = _split_params(dataset, root, out, task, seed, val, test, synthetic)
    try:
        same = csv.is_file() and json.loads(saved.read_text()) == params
    except (OSError, ValueError):  # no parameters saved, or unreadable: rebuild
        same = False
    if same:
        split = read_index(csv)
    else:
        index, _ = load_index(dataset, root, progress=False, cache=out / "cache", **(task or {}))
        split = split_by_patient(index, val=val, test=test, seed=seed)
        save_split(split, out, dataset, root, task=task, seed=seed, val=val, test=test, **synthetic)
    check_no_leakage(split)
    counts = split["split"].value_counts()
    print(f"split: {len(split)} images of {split['patient_id'].nunique()} patients; "
          + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
          + "; classes " + ", ".join(sorted(pd.unique(split["label"]))))
    return split
