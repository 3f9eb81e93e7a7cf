"""Modules that add data sources. Each calls `cxrnb.sources.register` when imported;
`cxrnb.sources` imports every module of this package once its own readers are registered, so a
new source is one module here (with its test and its synthetic layout) and nothing else edited.
Readers from another installed package register through the ``cxrnb.sources`` entry-point group
(``[project.entry-points."cxrnb.sources"] name = "package.module"``).
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from importlib.metadata import entry_points


def load(package: str = __name__, path: Iterable[str] = __path__, group: str = "cxrnb.sources") -> list[str]:
    """Import every module of `package` (found on `path`) and every entry point of `group`; the
    names of what was imported. Importing twice registers nothing twice (Python caches modules)."""
    names = [importlib.import_module(f"{package}.{m.name}").__name__ for m in pkgutil.iter_modules(list(path))]
    for ep in entry_points(group=group):
        ep.load()
        names.append(ep.value)
    return names
