"""Solutions to the exercises of notebook 05 (shortcut learning), run by tests/test_exercises.py.

They need no trained model: each one checks a property of the data or of a measurement that the
notebook's conclusions rest on, on small synthetic sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrnb.lessons import shortcuts
from cxrnb.synthetic import generate, render_image

MARKER = dict(n_patients=40, size=64, layout="kaggle-pneumonia", classes=["normal", "pneumonia"], difficulty=0.5,
              progress=False)


def exercise_1(workdir: Path) -> dict:
    """shortcut=0.5 instead of 0.9: about half of the pneumonia films carry the marker, no normal
    film does. The marker still says "pneumonia" every time it appears (precision 1); it is
    only silent more often, so reading it alone gets about half of the pneumonia films right."""
    shares = {}
    for p in (0.9, 0.5):
        index = generate(workdir / f"shortcut{p}", shortcut=p, **MARKER)
        shares[p] = index.groupby("label")["marker"].mean()
    assert shares[0.5]["normal"] == shares[0.9]["normal"] == 0.0
    assert 0.3 < shares[0.5]["pneumonia"] < 0.7 < shares[0.9]["pneumonia"]
    return {f"marked pneumonia films at shortcut={p}": float(s["pneumonia"]) for p, s in shares.items()}


def exercise_2(workdir: Path) -> dict:
    """Without lung masks (the real collections) the lungs are blanked with a fixed box: it covers
    nearly every lung pixel (over 90 %) but also over half of the film (70 % of the rows x 80 % of
    the columns), heart and mediastinum included: a stricter test than blanking the lungs only."""
    films = [render_image(0, p, k, "pneumonia", size=64) for p in range(1, 13) for k in range(2)]
    lungs = np.stack([lung for _, lung, _ in films]) > 0
    box = shortcuts.lung_box_mask(64) > 0
    covered = float((lungs & box).sum() / lungs.sum())
    area = float(box.mean())
    assert covered > 0.9
    assert abs(area - 0.7 * 0.8) < 0.01
    return {"share of lung pixels inside the box": covered, "share of the film inside the box": area}


def exercise_3(workdir: Path) -> dict:
    """Re-rendering a film without its marker changes only the pixels of the marker's box (a few
    per cent of the film: 3.5 % on the notebook's 256 px films, 6 % on these 64 px ones, where a
    glyph cell rounds up to 2 pixels): anatomy, lesion, exposure and noise are the same film, so
    any change of a model's answer on the counterfactual films is caused by the marker alone."""
    index = generate(workdir / "marker", shortcut=1.0, **MARKER)
    marked = index[index["marker"]].head(8)
    with_marker, _ = shortcuts.rerender(marked, 64)
    without, _ = shortcuts.rerender(marked, 64, marker=False)
    changed = with_marker != without
    box = shortcuts.marker_masks(marked, 64) > 0
    assert not (changed & ~box).any()
    assert changed.any(axis=(1, 2)).all()
    assert box.mean() < 0.07
    return {"films": len(marked), "changed pixels outside the marker box": int((changed & ~box).sum()),
            "share of the film in the marker box": float(box.mean())}
