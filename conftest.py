"""pytest hooks for the whole repository (unit tests and the notebooks' nbval items).

`make test` runs under pytest-xdist (``-n 2 --dist loadgroup``): the unit tests spread over the
workers, while every notebook cell goes to one worker, in the series' order. The notebooks must
not run side by side: they share ``outputs/`` (01 writes the dataset and split that 03 reads, 03
trains the run that 04 and 05 explain), and each notebook's cells share one kernel.
"""
from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group("notebooks"))
