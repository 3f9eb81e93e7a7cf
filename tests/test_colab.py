"""The Colab path: a fresh virtual environment without cxrnb runs notebook 01 from a folder outside
the repository; the notebook's own install cell installs cxrnb by name and version, as it does from
the package index, here from a locally built wheel (``--find-links dist cxrnb==X.Y.Z``).

TensorFlow & co come from the running environment through a .pth file (fast, offline), pointing
at a folder of links to its packages without cxrnb's: pip must not find cxrnb==X.Y.Z already
installed, and a .pth line does not run that folder's own .pth hooks, so the editable cxrnb
install of the running environment stays invisible (checked below).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


import cxrnb

REPO = Path(__file__).resolve().parents[1]
SMALL = {"SYNTHETIC": {"n_patients": 24, "size": 64, "layout": "kaggle-pneumonia", "defects": True, "realistic": True},
         "COVID_SYNTHETIC": {"n_patients": 16, "size": 64, "layout": "covid-chestxray", "realistic": True}}


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "IPYTHONDIR")}
    env.update(kw.pop("env", {}))
    kw.setdefault("cwd", Path(str(env.get("TMPDIR", "/tmp"))))  # never the repository: "" on sys.path
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, **kw)


def _wheel(tmp: Path) -> Path:
    """`make wheel`'s command; without build isolation when the local setuptools is new enough."""
    try:
        from setuptools import __version__ as v
        isolated = int(v.split(".")[0]) < 77
    except ImportError:
        isolated = True
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", REPO]
    r = _run(cmd if isolated else cmd[:5] + ["--no-build-isolation"] + cmd[5:])
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("cxrnb-*.whl")
    return wheel


def test_fresh_venv_runs_notebook_01_outside_the_repo_installing_cxrnb_by_name_and_version(tmp_path):
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", venv])
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    shared = tmp_path / "shared"
    shared.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "cxrnb" not in entry.name.lower():  # cxrnb-X.Y.Z.dist-info, its editable hooks
            (shared / entry.name).symlink_to(entry)
    (site / "shared_env.pth").write_text(f"{shared}\n")
    probe = _run([py, "-c", "import importlib.util as u, importlib.metadata as m; "
                  "print(u.find_spec('cxrnb') is None, u.find_spec('papermill') is not None, "
                  "'cxrnb' not in {d.metadata['Name'] for d in m.distributions()})"], cwd=tmp_path)
    assert probe.stdout.split() == ["True", "True", "True"], probe.stdout + probe.stderr

    work = tmp_path / "work"  # outside the repository: no ../pyproject.toml
    work.mkdir()
    shutil.copy(REPO / "notebooks" / "01_data_exploration.ipynb", work)
    params = json.dumps(SMALL)
    r = _run([py, "-m", "papermill", "01_data_exploration.ipynb", "run.ipynb", "-k", "python3",
              "-y", params, "--cwd", work], cwd=work, timeout=600,
             env={"PIP_FIND_LINKS": str(wheel.parent), "PIP_NO_INDEX": "1",  # the index, offline
                  "TF_CPP_MIN_LOG_LEVEL": "3", "IPYTHONDIR": str(tmp_path / "ipython")})
    assert r.returncode == 0, r.stderr[-3000:]
    cells = json.loads((work / "run.ipynb").read_text())["cells"]
    text = "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))
    version = cxrnb.__version__
    assert wheel.name.startswith(f"cxrnb-{version}-")
    assert f"installed cxrnb from cxrnb=={version}" in text  # the install cell's default source
    assert f"versions: cxrnb {version}," in text
    assert "(cxrnb from the installed package)" in text
    assert list((site).glob("cxrnb/__init__.py")), "cxrnb was installed into the fresh venv"
    assert (work / "outputs" / "split.csv").is_file()  # "../outputs" became ./outputs, not /outputs
    assert not (tmp_path / "outputs").exists()
