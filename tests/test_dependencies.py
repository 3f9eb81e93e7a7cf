"""Every third-party package the cxrnb package imports is declared in pyproject.toml."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: import name -> distribution name, where they differ
DISTRIBUTION = {"cv2": "opencv-python", "PIL": "Pillow", "sklearn": "scikit-learn", "skimage": "scikit-image",
                "imgaug": "pyimgaug", "tf_keras_vis": "tf-keras-vis", "yaml": "pyyaml"}


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for py in (ROOT / "cxrnb").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for n in names:
                found.setdefault(n.split(".")[0], set()).add(py.relative_to(ROOT).as_posix())
    return found


def test_every_third_party_import_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower()
                for d in meta["dependencies"] + [x for v in meta["optional-dependencies"].values() for x in v]}
    third_party = {m: files for m, files in _imports().items()
                   if m not in sys.stdlib_module_names and m not in ("cxrnb", "__future__")}
    assert third_party, "found no imports at all: the scan is broken"
    missing = {m: sorted(f) for m, f in third_party.items() if DISTRIBUTION.get(m, m).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
