"""Shared fixtures: small image writers and the real subsets in ../shared/data (skip if absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRNB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """Path of a real subset folder under shared/data; skips the test when it is absent."""

    def get(name: str) -> Path:
        p = SHARED_DATA / name
        if not p.is_dir():
            pytest.skip(f"real subset {p} not available")
        return p

    return get


def xray_like(size: int = 64, seed: int = 0) -> np.ndarray:
    """A cheap uint8 picture with structure (so resizing and hashing are meaningful)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = 120 + 80 * np.sin(6 * x + seed) * np.cos(4 * y) + rng.normal(0, 10, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def write_image():
    """write_image(path, array_or_None, mode="L", fmt=None, size=64, seed=0) -> path."""

    def write(path: Path, arr: np.ndarray | None = None, *, mode: str = "L", fmt: str | None = None,
              size: int = 64, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        a = xray_like(size, seed) if arr is None else arr
        img = Image.fromarray(a)
        if mode != img.mode:
            img = img.convert(mode)
        img.save(path, format=fmt)
        return path

    return write
