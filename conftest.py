"""pytest hooks for the whole repository (unit tests and the notebooks' nbval items).

`make test` runs under pytest-xdist (``-n 2 --dist loadscope``): the unit tests spread over the
workers by module, while every notebook cell goes to one worker, in the series' order. The
notebooks must not run side by side: they share ``outputs/`` (01 writes the dataset and split that
03 reads, 03 trains the run that 04 and 05 explain), and each notebook's cells share one kernel.
nbval's items ignore xdist's ``xdist_group`` mark (their node ids never get the group suffix), so
the grouping is done by the scheduler: every ``.ipynb`` node id is one scope. The tests that
execute whole notebooks in their own folders (tests/test_notebooks_real.py, about 35 s each) are
a scope each, so the two workers share them at the end instead of one worker running them all.
"""
from __future__ import annotations

import pytest

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # plain `pytest`, without pytest-xdist: nothing to schedule
    pass
else:
    class _NotebooksTogether(LoadScopeScheduling):
        """LoadScope scheduling (a test module per worker at a time) with all notebooks one scope
        and each whole-notebook test its own."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.endswith(".ipynb"):
                return "notebooks"
            if path.endswith("test_notebooks_real.py"):
                return nodeid  # independent (own tmp folders), long: one scope each
            return super()._split_scope(nodeid)

    @pytest.hookimpl(optionalhook=True)  # `-p no:xdist` leaves the hook unknown
    def pytest_xdist_make_scheduler(config, log):
        """pytest-xdist's hook: schedule with `_NotebooksTogether` whatever ``--dist`` says."""
        return _NotebooksTogether(config, log)
