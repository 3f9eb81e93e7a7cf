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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    random.seed(seed)
    np.random.seed(seed)
    if tensorflow:
        import keras

        keras.utils.set_random_seed(seed)
    import matplotlib as mpl
    import pandas as pd

    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9,
                         "axes.titlesize": 10, "image.interpolation": "antialiased"})
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_colwidth", 60)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def prepare_data(dataset: str, data_dir: str | Path, *, seed: int = 0, progress: bool = True,
                 **synthetic) -> Path:
    """Return the dataset folder, generating the synthetic set there if `dataset` is "synthetic".

    `synthetic` options go to `cxrnb.synthetic.ensure` (n_patients, size, classes, layout,
    shortcut, difficulty ...). For a real source the folder must exist: the error says where
    to get the data.
    """
    data_dir = Path(data_dir)
    if dataset == "synthetic":
        from .synthetic import ensure

        ensure(data_dir, seed=seed, progress=progress, **synthetic)
        return data_dir
    if not data_dir.is_dir():
        hint = DOWNLOADS.get(dataset, "")
        raise FileNotFoundError(f"{data_dir}: dataset folder for {dataset!r} not found. Get it with: {hint}")
    return data_dir
