"""Workshop readiness: realistic synthetic populations, the one install setting, projector figures,
notebook text backed by printed numbers, no references to notebooks that do not exist."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cxrnb
import cxrnb.notebook as nb
from cxrnb import plots
from cxrnb.splits import leaking_patients, official_split
from cxrnb.synthetic import POPULATIONS, generate
from cxrnb.validate import duplicate_pixels, load_index

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMALL = dict(n_patients=60, size=64, realistic=True, progress=False)


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle-pneumonia")
    generate(root, layout="kaggle-pneumonia", **SMALL)
    return root, load_index("kaggle-pneumonia", root, progress=False, classes=["normal", "bacteria", "virus"]).index


def test_kaggle_layout_holds_a_paediatric_pneumonia_population(kaggle):
    root, index = kaggle
    m = pd.read_csv(root / "synthetic.csv")
    assert set(m["label"]) == {"normal", "pneumonia"}  # no COVID, no effusion
    assert m["age"].between(1, 5).all()
    assert m["view"].isna().all()  # Kaggle records no view
    share = m.drop_duplicates("patient_id")["label"].value_counts(normalize=True)
    assert share["pneumonia"] == pytest.approx(POPULATIONS["kaggle-pneumonia"]["class_fractions"]["pneumonia"], abs=0.05)
    assert set(index["label"]) == {"normal", "bacteria", "virus"}


def test_kaggle_layout_has_mixed_sizes_modes_duplicates_and_an_official_split_that_leaks(kaggle):
    _, index = kaggle
    assert index[["width", "height"]].drop_duplicates().shape[0] > len(index) // 2
    assert {"L", "RGB"} <= set(index["mode"])
    dups = duplicate_pixels(index)
    assert dups["pixel_hash"].nunique() == 2 and dups["patient_id"].nunique() == 4
    assert 1 <= len(leaking_patients(official_split(index), "patient_id")) <= 3


def test_covid_layout_views_differ_by_class_as_in_the_real_collection(tmp_path):
    generate(tmp_path, layout="covid-chestxray", **SMALL)
    index = load_index("covid-chestxray", tmp_path, progress=False, classes=["covid", "pneumonia", "normal"]).index
    ap = index["view"].str.startswith("AP").groupby(index["label"]).mean()
    assert ap["covid"] > 0.6 > 0.3 > ap["normal"]
    assert index["age"].min() >= 18


def test_nih_layout_is_read_by_the_nih_reader_at_the_real_imbalance(tmp_path):
    m = generate(tmp_path, layout="nih", **{**SMALL, "n_patients": 100})
    csv = pd.read_csv(tmp_path / "Data_Entry_2017.csv")
    assert list(csv.columns)[:7] == ["Image Index", "Finding Labels", "Follow-up #", "Patient ID",
                                     "Patient Age", "Patient Gender", "View Position"]
    index = load_index("nih", tmp_path, progress=False, finding="Effusion").index
    assert len(index) == len(m)
    assert index["label"].value_counts().to_dict() == m["label"].value_counts().to_dict()
    share = m.drop_duplicates("patient_id")["label"].value_counts(normalize=True)["effusion"]
    assert share == pytest.approx(0.1, abs=0.02)


def test_realistic_data_is_byte_identical_for_the_same_seed(tmp_path):
    for name in ("a", "b"):
        generate(tmp_path / name, layout="covid-chestxray", **{**SMALL, "n_patients": 8})
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_install_cells_come_from_the_one_setting_and_no_colab_link_exists_without_a_repository(
        tmp_path, monkeypatch):
    monkeypatch.delenv("CXRNB_REPOSITORY", raising=False)
    assert nb.REPOSITORY is None, "no public repository yet: none may be invented"
    copies = [shutil.copy(p, tmp_path / p.name) for p in NOTEBOOKS]
    readme = shutil.copy(REPO / "README.md", tmp_path / "README.md")
    assert nb.sync_notebooks(copies, readme=readme) == [], "run cxrnb.notebook.sync_notebooks(..., readme=README.md)"
    assert nb.INSTALL_SOURCE == f"cxrnb=={cxrnb.__version__}"  # the package's own version
    for p in NOTEBOOKS:
        cells = json.loads(p.read_text())["cells"]
        assert "".join(cells[1]["source"]) == nb.install_cell()
        assert "colab.research.google.com" not in p.read_text()
    assert "colab.research.google.com" not in (REPO / "README.md").read_text()
    with pytest.raises(ValueError, match="no public repository"):
        nb.colab_url(NOTEBOOKS[0])


def test_setting_the_repository_adds_every_badge_and_readme_link_and_unsetting_removes_them(
        tmp_path, monkeypatch):
    copies = [Path(shutil.copy(p, tmp_path / p.name)) for p in NOTEBOOKS]
    readme = Path(shutil.copy(REPO / "README.md", tmp_path / "README.md"))
    monkeypatch.setenv("CXRNB_REPOSITORY", "someone/cxrnb")  # as at release time
    assert nb.sync_notebooks(copies, readme=readme) == [*copies, readme]
    table = [line for line in readme.read_text().splitlines() if line.startswith("| `0")]
    assert len(table) == len(NOTEBOOKS)
    for p in copies:
        first = "".join(json.loads(p.read_text())["cells"][0]["source"])
        url = f"https://colab.research.google.com/github/someone/cxrnb/blob/main/notebooks/{p.name}"
        assert first.startswith(f"{nb.BADGE}({url})\n\n# {p.name[:2]} ")
        assert sum(row.endswith(f"| [open]({url}) |") for row in table) == 1
    assert nb.sync_notebooks(copies, readme=readme) == []  # idempotent
    monkeypatch.delenv("CXRNB_REPOSITORY")
    nb.sync_notebooks(copies, readme=readme)
    assert readme.read_text() == (REPO / "README.md").read_text()
    for p, original in zip(copies, NOTEBOOKS):
        assert json.loads(p.read_text()) == json.loads(original.read_text())


@pytest.mark.parametrize("env,cwd,source", [
    ({}, "outside", f"cxrnb=={cxrnb.__version__}"),
    ({"CXRNB_INSTALL": "--no-deps /w/cxrnb-9-py3-none-any.whl"}, "outside", "--no-deps /w/cxrnb-9-py3-none-any.whl"),
    ({}, "notebooks", ".."),
])
def test_install_cell_installs_the_pinned_version_unless_overridden_or_in_the_checkout(
        env, cwd, source, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.delenv("CXRNB_INSTALL", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path if cwd == "outside" else REPO / "notebooks")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cxrnb" else object())
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    exec(nb.install_cell(), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", *source.split()]]
    monkeypatch.setattr(subprocess, "call", lambda cmd: 1)
    with pytest.raises(RuntimeError, match=f"pip could not install {re.escape(source)}: set CXRNB_INSTALL"):
        exec(nb.install_cell(), {})


def test_where_keeps_outputs_inside_the_working_directory_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert nb.where("../outputs") == Path("outputs")
    assert nb.where("/abs/x") == Path("/abs/x")
    monkeypatch.chdir(REPO / "notebooks")
    assert nb.where("../outputs") == Path("../outputs")


def test_figures_are_projector_sized_with_a_colour_legend(kaggle):
    _, index = kaggle
    grid = plots.sample_grid(index.assign(lung_mask=None, lesion_mask=None), n_per_class=2)
    assert plots.is_photo(grid) and grid.dpi >= 100
    assert grid.get_figwidth() * grid.dpi / 2 >= 190  # about 200 px per film
    chart = plots.overview(index)
    assert not plots.is_photo(chart) and chart.dpi >= 100
    ticks = chart.axes[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks))


def test_sample_grid_legend_names_the_overlay_colours(tmp_path):
    generate(tmp_path, layout="kaggle-pneumonia", **{**SMALL, "n_patients": 6})
    index = load_index("synthetic", tmp_path, progress=False).index
    fig = plots.sample_grid(index, n_per_class=1)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["lung outline", "lesion outline"]
    assert [h.get_color() for h in legend.legend_handles] == [plots.LUNG, plots.LESION]


def test_plural_and_source_vs_label():
    assert (plots.plural(1, "file"), plots.plural(2, "file"), plots.plural(0, "patient")) == ("1 file", "2 files", "0 patients")
    mix = pd.DataFrame({"source": ["a", "a", "b", "b"], "label": ["covid", "covid", "normal", "covid"]})
    table, acc = plots.source_vs_label(mix)
    assert acc == 0.75 and table.loc["b", "normal"] == 1


# Each lesson the markdown of notebook 01 claims, and the printed line that backs it on the default run.
LESSONS_01 = [
    (r"always answering 'pneumonia' scores (\d+\.\d)% accuracy", lambda v: 60 < float(v) < 85),
    (r"(\d+) distinct sizes", lambda v: int(v) > 50),
    (r"files per mode: L \d+, RGB (\d+)", lambda v: int(v) > 0),
    (r"(\d+) images share their pixels", lambda v: int(v) >= 2),
    (r"patient ids in more than one official split: (\d+)", lambda v: int(v) >= 1),
    (r"patient groups \(duplicates joined\): (\d+)", lambda v: int(v) >= 1),
    (r"covid (\d+) of \d+, normal \d+ of \d+", lambda v: int(v) > 0),
    (r"the collection alone predicts the label with (\d+)% accuracy", lambda v: int(v) == 100),
    (r"a random split by image puts (\d+) patients", lambda v: int(v) > 0),
]


@pytest.mark.parametrize("pattern,check", LESSONS_01, ids=[p[:30] for p, _ in LESSONS_01])
def test_notebook_01_prints_the_number_behind_each_lesson(pattern, check):
    text = _outputs(REPO / "notebooks" / "01_data_exploration.ipynb")
    found = re.search(pattern, text)
    assert found, f"no output matches {pattern!r}"
    assert check(found.group(1)), found.group(0)


def test_notebooks_refer_only_to_notebooks_that_exist_or_are_being_written():
    names = {p.stem[:2] for p in NOTEBOOKS} | {"03", "04", "05"}
    for p in NOTEBOOKS:
        md = "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
        for ref in re.findall(r"\b(0\d)_[a-z_]+", md):
            assert ref in names, f"{p.name} refers to notebook {ref}"
        for link in re.findall(r"\]\(((?:\.\./)?[\w./-]+\.(?:md|py|ipynb))", md):
            assert (p.parent / link).resolve().is_file(), f"{p.name}: broken link {link}"


def test_notebooks_open_with_objectives_prerequisites_time_and_end_with_recap_and_exercises():
    for p in NOTEBOOKS:
        md = "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
        for part in ("You will learn", "Prerequisites", "Time:", "## Recap", "## Exercises", "glossary"):
            assert part in md, f"{p.name} lacks {part!r}"


def test_notebooks_state_the_times_of_docs_workshop():
    """A notebook that says how long it takes to work through says what docs/workshop.md's table
    says, alone and in the plans."""
    rows = {m[0]: m[1:] for m in re.findall(r"\| `(\d\d)_\w+` \|[^|]*\| (\d+–\d+) min with exercises \| (\d+) min",
                                             (REPO / "docs" / "workshop.md").read_text())}
    assert sorted(rows) == [p.name[:2] for p in NOTEBOOKS]
    stated = 0
    for p in NOTEBOOKS:
        md = "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
        found = re.search(r"(\d+–\d+) minutes to work through.*?about (\d+) minutes in the workshop plans", md, re.S)
        if "minutes to work through" in md:
            assert found and found.groups() == rows[p.name[:2]], p.name
            stated += 1
    assert stated >= 2


def test_workshop_docs_hold_plans_times_and_a_glossary():
    plan = (REPO / "docs" / "workshop.md").read_text()
    for part in ("Half-day", "Full-day", "Colab", "01_data_exploration", "02_augmentation_preview"):
        assert part in plan
    assert re.search(r"\d+ s", plan), "measured times"
    glossary = (REPO / "docs" / "glossary.md").read_text()
    for term in ("PA", "AP", "AP supine", "costophrenic angle", "lookup table"):
        assert f"**{term.lower()}**" in glossary.lower(), term


def _outputs(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))


def test_show_writes_the_figure_and_returns_it_for_display(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "figures" / "line.png"  # the folder does not exist yet
    assert nb.show(fig, path) is fig
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    plt.close(fig)
