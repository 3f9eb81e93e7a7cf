"""First-cell helpers of the notebooks: installing, reproducible set-up, folders, versions, the split.

Each notebook's first cell installs cxrnb when it is missing (Colab, a fresh kernel): by name and
exact version from the package index, `INSTALL_SOURCE`, made from the package's own version and
copied into every notebook by `sync_notebooks` (a test checks the copies). "Open in Colab" badges
and links exist only once `REPOSITORY` names a public repository (`repository`). The parameters
cell names a dataset and folders, and `DataSpec` turns them into data: it prepares the folder
(`prepare_data` makes the embedded synthetic set when asked for it, cheaply reused on re-runs, or
checks that a real dataset folder exists and says what to put there), indexes it and hands
notebook 01's split to the later notebooks (`save_split`, `load_split`), so no notebook branches
on the dataset's name. `ensure_run` gives notebooks 04-05 notebook 03's run. `where` makes
``../outputs`` work from any working directory. To run a notebook
with other parameters, use papermill (``papermill 01_data_exploration.ipynb out.ipynb -p SEED 1``).
"""
from __future__ import annotations

import io
import json
import os
import platform
import random
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

#: The public GitHub repository (``owner/name``) once there is one, or None: then no notebook
#: carries a Colab badge and the README has no Colab column. The environment variable
#: ``CXRNB_REPOSITORY`` sets it for one `sync_notebooks` run (see docs/release.md).
REPOSITORY: str | None = None
#: What pip installs in Colab or a kernel without cxrnb: this version, by name, from the package
#: index (as d2l's notebooks pin d2l). The environment variable ``CXRNB_INSTALL`` overrides it
#: (a wheel from `make wheel`, or a ``git+`` URL of a fork).
INSTALL_SOURCE = f"cxrnb=={__version__}"
#: Marks the first cell of every notebook (the install cell that `sync_notebooks` writes).
INSTALL_TAG = "install"



def install_cell() -> str:
    """Source of the notebooks' first cell: install cxrnb when it is missing.

    The cell cannot import cxrnb, so it carries `INSTALL_SOURCE` as text; inside the repository
    it installs the checkout instead. A failed install names the way out (``CXRNB_INSTALL``), and
    the cell says to restart the runtime when pip changed a package the kernel had already
    imported (Colab preloads NumPy)."""
    return f'''# Colab or a fresh kernel: install cxrnb when it is missing, this version from the package index
# (cxrnb.notebook.INSTALL_SOURCE); CXRNB_INSTALL overrides it: a wheel from `make wheel`, a git+ URL.
import importlib.util, importlib.metadata as md, os, subprocess, sys
if importlib.util.find_spec("cxrnb") is None:
    src = os.environ.get("CXRNB_INSTALL") or (".." if os.path.exists("../pyproject.toml") else "{INSTALL_SOURCE}")
    before = {{m: md.version(m) for m in ("numpy", "tensorflow") if importlib.util.find_spec(m)}}
    if subprocess.call([sys.executable, "-m", "pip", "install", "-q", *src.split()]):
        raise RuntimeError(f"pip could not install {{src}}: set CXRNB_INSTALL (see the README, section Colab)")
    changed = [m for m, v in before.items() if md.version(m) != v and m in sys.modules]
    print("installed cxrnb from", src.split()[-1].rsplit("/", 1)[-1])
    if changed:
        print(f"pip changed {{', '.join(changed)}}: restart the runtime (Runtime > Restart session), then run all cells again")'''


def repository(name: str | None = None) -> str | None:
    """The public repository the Colab links point to: `name`, else ``CXRNB_REPOSITORY``, else
    `REPOSITORY`; None while there is none (then no badge or link is made: none may be invented)."""
    return name or os.environ.get("CXRNB_REPOSITORY") or REPOSITORY


def colab_url(notebook: str | Path, *, repo: str | None = None, branch: str = "main") -> str:
    """The "Open in Colab" address of a notebook of the repository (see `repository`)."""
    repo = repository(repo)
    if repo is None:
        raise ValueError("no public repository is configured (cxrnb.notebook.REPOSITORY or CXRNB_REPOSITORY): "
                         "there is no Colab address")
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{Path(notebook).name}"


#: How every Colab badge starts (the first line of a notebook's first markdown cell).
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"


def colab_badge(notebook: str | Path, *, repo: str | None = None) -> str:
    """Markdown of the "Open in Colab" badge of a notebook."""
    return f"{BADGE}({colab_url(notebook, repo=repo)})"


def sync_notebooks(paths, *, readme: str | Path | None = None, repo: str | None = None) -> list[Path]:
    """Rewrite each notebook's install cell (tagged `INSTALL_TAG`) and Colab badge, and the Colab
    column of `readme`'s series table, from the settings; return the files that changed.

    The badge is the first line of the first markdown cell: present when `repository` names one,
    absent otherwise, so setting the repository at release and running this adds every link."""
    import nbformat

    repo = repository(repo)
    changed = []
    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        for cell in nb.cells:
            if INSTALL_TAG in cell.get("metadata", {}).get("tags", []):
                cell.source = install_cell()
        intro = next((c for c in nb.cells if c.cell_type == "markdown"), None)
        if intro is not None:
            text = intro.source.split("\n", 1)[1].lstrip("\n") if intro.source.startswith(BADGE) else intro.source
            intro.source = f"{colab_badge(path, repo=repo)}\n\n{text}" if repo else text
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    if readme is not None and _sync_readme(Path(readme), repo):
        changed.append(Path(readme))
    return changed


_COLAB_CELL = re.compile(r" \[open\]\(https://colab\.research\.google\.com/[^)]*\) \|$")


def _sync_readme(path: Path, repo: str | None) -> bool:
    """Give the README's series table (``| notebook | story |``) a Colab column of links when
    `repo` is set, none otherwise; True when the file changed."""
    lines = path.read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| notebook | story |"))
    extra = (" Colab |", " --- |") if repo else ("", "")
    new = ["| notebook | story |" + extra[0], "| --- | --- |" + extra[1]]
    end = start + 2
    while end < len(lines) and lines[end].startswith("| `"):
        row = _COLAB_CELL.sub("", lines[end])
        name = row.split("`")[1]
        new.append(row + (f" [open]({colab_url(name + '.ipynb', repo=repo)}) |" if repo else ""))
        end += 1
    if lines[start:end] == new:
        return False
    path.write_text("\n".join(lines[:start] + new + lines[end:]))
    return True


def show(fig, path: str | Path):
    """Write `fig` as PNG at `path` (`cxrnb.plots.save`: folders made, nothing clipped) and return
    it: a cell that ends in ``nb.show(fig, out / "figures" / "01_overview.png")`` keeps the figure
    file and shows the figure below the cell."""
    from .plots import save

    save(fig, path)
    return fig


def where(path: str | Path) -> Path:
    """A parameters-cell path that works from any working directory.

    Paths such as ``../outputs`` mean "beside the notebooks folder" inside the repository; in
    Colab or a copied notebook (no ``../pyproject.toml``) they would climb out of the working
    directory (``/content/..`` is ``/``), so the leading ``..`` is dropped: ``./outputs``."""
    p = Path(path)
    if p.is_absolute() or not p.parts or p.parts[0] != ".." or Path("../pyproject.toml").is_file():
        return p
    return Path(*p.parts[1:]) if len(p.parts) > 1 else Path(".")


def versions() -> str:
    """One line: the versions this notebook ran with (and where cxrnb was imported from)."""
    from importlib import metadata

    import cxrnb

    parts = [f"cxrnb {cxrnb.__version__}", f"Python {platform.python_version()}"]
    for dist in ("numpy", "pandas", "tensorflow", "keras", "matplotlib"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} missing")
    where_from = "repository checkout" if (Path(cxrnb.__file__).parents[1] / "pyproject.toml").is_file() \
        else "installed package"
    return "versions: " + ", ".join(parts) + f" (cxrnb from the {where_from})"


def setup(seed: int = 0, *, dpi: int = 100, tensorflow: bool = False) -> None:
    """Seed Python, NumPy (and, when `tensorflow`, Keras/TF with deterministic ops: the
    `cxrnb.train.seed_everything` every training starts with), quiet logs, projector-sized figures
    (charts as PNG, X-ray grids as JPEG), and print the versions."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets
    # A warning can be part of a lesson (patients across official splits); its default format shows
    # the kernel's temporary file path, which changes every run: show category and message only.
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"
    random.seed(seed)
    np.random.seed(seed)
    if tensorflow:  # the seeding `train` does, from one place: Python, NumPy, TF; deterministic ops
        from .train import seed_everything

        seed_everything(seed)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # e.g. "triggered tf.function retracing": noise in a lesson
    import matplotlib as mpl
    import pandas as pd

    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9,
                         "axes.titlesize": 10, "image.interpolation": "antialiased"})
    _inline_figures()
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_colwidth", None)  # explanation tables must not truncate text
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    print(versions())


def _inline_figures() -> None:
    """Show returned `Figure` objects inline (plots builds them without pyplot)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and hasattr(ip, "kernel"):
        from matplotlib.figure import Figure

        from .plots import is_photo

        ip.run_line_magic("matplotlib", "inline")
        # charts and line art as PNG (sharp text); X-ray grids are noise-rich photographs, where
        # JPEG keeps notebooks small (PNG is about 4x larger): `plots.photo` marks them
        fmts = ip.display_formatter.formatters
        fmts["image/png"].for_type(Figure, lambda f: None if is_photo(f) else _figure_bytes(f, "png"))
        fmts["image/jpeg"].for_type(Figure, lambda f: _figure_bytes(f, "jpeg") if is_photo(f) else None)
        for mime in ("image/svg+xml", "application/pdf"):
            fmts[mime].type_printers.pop(Figure, None)


def _figure_bytes(fig, fmt: str) -> bytes:
    """The figure rendered for the notebook; ``bbox_inches="tight"`` so no label is clipped."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, bbox_inches="tight", **({"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {}))
    return buf.getvalue()


def prepare_data(dataset: str, data_dir: str | Path, *, seed: int = 0, **synthetic) -> Path:
    """Return the dataset folder, generating the synthetic set there if `dataset` is "synthetic".

    `synthetic` options go to `cxrnb.synthetic.ensure` (n_patients, size, classes, layout,
    shortcut, difficulty ...). It prints one line that is the same whether the data was just
    made or reused (no progress bar), so notebook outputs do not depend on earlier runs. For
    a real source the folder must exist: the error says where to get the data.
    """
    data_dir = where(data_dir)
    if dataset == "synthetic":
        from .synthetic import ensure

        m = ensure(data_dir, seed=seed, progress=False, **synthetic)
        print(f"synthetic dataset: {len(m)} images of {m['patient_id'].nunique()} patients "
              f"in {data_dir.as_posix()} (seed {seed})")
        return data_dir
    if not data_dir.is_dir():
        from .sources import SOURCES

        hint = SOURCES[dataset].download if dataset in SOURCES else f"no such source; choose one of {sorted(SOURCES)}"
        raise FileNotFoundError(f"{data_dir}: dataset folder for {dataset!r} not found. Get it with: {hint}")
    return data_dir


def _split_params(dataset: str, data_dir: str | Path, output_dir: str | Path, task: dict | None,
                  seed: int, val: float, test: float, synthetic: dict) -> dict:
    """What a split depends on, as JSON values; the data folder relative to the output folder.

    For the synthetic set also the generator's version: a new version rewrites the files for the
    same options (e.g. which films carry a marker), and a split saved before would describe the
    old ones."""
    from .synthetic import GENERATOR_VERSION

    rel = Path(os.path.relpath(os.path.abspath(data_dir), os.path.abspath(output_dir))).as_posix()
    made = {"generator": GENERATOR_VERSION} if dataset == "synthetic" else {}
    return json.loads(json.dumps({"dataset": dataset, "data_dir": rel, "task": task or {}, "seed": seed,
                                  "val": val, "test": test, "synthetic": synthetic, **made}, sort_keys=True))


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
    out = where(output_dir)
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


@dataclass(frozen=True)
class DataSpec:
    """A dataset as a notebook's parameters cell names it, prepared, indexed and split in one place.

    `dataset` is a source name ("synthetic" or a real one, see `cxrnb.sources`), `data_dir` its
    folder, `output_dir` where the split, the image cache and the run folders go. `task` holds the
    reader's options (classes, views ...); `synthetic` the generator's, used only when `dataset`
    is "synthetic" (so the parameters cell can keep them while naming a real source). `seed`,
    `val` and `test` fix the patient-level split. Notebooks build one from their parameters and
    never branch on the dataset's name.
    """

    dataset: str
    data_dir: str | Path
    output_dir: str | Path = "outputs"
    task: Mapping[str, Any] = field(default_factory=dict)
    synthetic: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    val: float = 0.15
    test: float = 0.15

    @property
    def options(self) -> dict[str, Any]:
        """The generator's options for the synthetic set, none for a real source."""
        return dict(self.synthetic) if self.dataset == "synthetic" else {}

    @property
    def collection(self) -> str:
        """The collection's name: the source's, or for the synthetic set the layout it imitates."""
        return str(self.options.get("layout", self.dataset)) if self.dataset == "synthetic" else self.dataset

    @cached_property
    def _root(self) -> Path:
        return prepare_data(self.dataset, self.data_dir, seed=self.seed, **self.options)

    def prepare(self) -> Path:
        """The dataset folder, the synthetic set generated there first (`prepare_data`): once per
        spec, so its line is printed once (`index` prepares too)."""
        return self._root

    def index(self, *, progress: bool = False):
        """`cxrnb.validate.load_index` of the folder: the validated index and its drop report."""
        from .validate import load_index

        return load_index(self.dataset, self.prepare(), cache=where(self.output_dir) / "cache",
                          progress=progress, **dict(self.task))

    def split(self):
        """The patient-level split, reused from ``output_dir/split.csv`` when made with these
        parameters (`load_split`)."""
        return load_split(self.dataset, self.data_dir, self.output_dir, task=dict(self.task), seed=self.seed,
                          val=self.val, test=self.test, **self.options)

    def save_split(self, split) -> Path:
        """Write `split` as this spec's ``split.csv`` with its parameters (`save_split`)."""
        return save_split(split, where(self.output_dir), self.dataset, where(self.data_dir), task=dict(self.task),
                          seed=self.seed, val=self.val, test=self.test, **self.options)


def ensure_run(run_dir: str | Path, data: DataSpec, *, preset: str = "default", image_size: int = 128,
               epochs: int = 20):
    """Notebook 03's finished run (`cxrnb.train.Run`), loaded; trained first when absent.

    Later notebooks explain notebook 03's model. Run alone (no run folder, or an unfinished
    one), they train the same recipe on `data`'s split here, so they still work top to bottom.
    Prints one line either way.
    """
    from .train import INCOMPLETE, Run, TrainConfig, train

    run_dir = where(run_dir)
    if not (run_dir / "metrics.json").is_file() or (run_dir / INCOMPLETE).exists():
        config = TrainConfig.preset(preset, image_size=image_size, epochs=epochs, seed=data.seed)
        train(config, data.split(), run_dir, overwrite=True, cache=where(data.output_dir) / "cache")
    run = Run.load(run_dir)
    cfg = run.config
    print(f"run {run_dir.name}: {cfg.name} ({cfg.model}, {cfg.image_size} px), classes {run.classes}, "
          f"best epoch {run.metrics['best_epoch']} of {run.metrics['epochs_run']}")
    return run


def parameters(path: str | Path) -> dict:
    """The literal assignments of a notebook's cell tagged "parameters" (what papermill replaces):
    for tests and benchmarks that run a notebook with some of its parameters changed."""
    import ast

    cells = json.loads(Path(path).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}
