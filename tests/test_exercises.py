"""Every exercise solution under notebooks/solutions runs and its predictions hold."""
from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

SOLUTIONS = sorted((Path(__file__).resolve().parents[1] / "notebooks" / "solutions").glob("ex[0-9][0-9]_*.py"))
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CASES = [(p, name) for p in SOLUTIONS for name, _ in inspect.getmembers(_module(p), inspect.isfunction)
         if name.startswith("exercise_")]


def test_every_notebook_with_exercises_has_a_solution_file_with_two_to_four_exercises():
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if "## Exercises" not in nb.read_text():
            continue
        sol = NOTEBOOKS / "solutions" / f"ex{nb.stem}.py"
        assert sol.is_file(), f"{nb.name} has exercises but no {sol.name}"
        assert sol.name in nb.read_text(), f"{nb.name} does not link its solutions {sol.name}"
        n = len([c for c in CASES if c[0] == sol])
        assert 2 <= n <= 4, f"{sol.name}: {n} exercises, want 2-4"


@pytest.mark.parametrize("path,name", CASES, ids=[f"{p.stem}.{n}" for p, n in CASES])
def test_solution_runs_and_its_prediction_holds(path, name, tmp_path):
    result = getattr(_module(path), name)(tmp_path)
    assert isinstance(result, dict) and result
