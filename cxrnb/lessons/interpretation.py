"""The measured lessons of notebook 04 (Grad-CAM interpretation): is the map of the finding class
on the lesion, faithful to the model, and dependent on what the model learned? Each returns a
`Lesson` (`cxrnb.lessons.core`) judged from `cxrnb.explain`'s measurements.

* `gradcam_lesson`: localisation against the lesion masks, beside a smooth random map.
* `faithfulness_lesson`: deletion and insertion curves against a smooth random map.
* `sanity_lesson`: the model- and data-randomisation checks (Adebayo et al. 2018).

The CAM methods and their checks are a library (`cxrnb.explain`); this module only judges them.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..explain import Curves, faithfulness_gaps, faithfulness_table, localisation, pointing_radius
from .core import Lesson, effect


def gradcam_lesson(maps: dict[str, np.ndarray], lungs, lesions, *, groups=None, seed: int = 0,
                   n_boot: int = 1000, min_ratio: float = 3.0, min_pointing: float = 0.5) -> Lesson:
    """Does the finding class's map point at the lesion? `maps` must be of the *finding* class
    (films with a lesion, correctly classified). Verdict: Grad-CAM puts at least `min_ratio`
    times the lesion's share of the film on the lesion (interval above 1) and its peak falls on
    the lesion (within the pointing game's published tolerance, `cxrnb.explain.pointing_game`) on
    at least `min_pointing` of the films; a smooth random map scores its area share.
    """
    loc = localisation(maps, lungs, lesions, seed=seed, groups=groups, n_boot=n_boot)
    g = loc.loc["gradcam"]
    tolerance = pointing_radius(np.shape(maps["gradcam"]))  # in pixels of these maps
    effects = [effect("lesion energy / lesion area", g["lesion_energy_ratio"], g["lesion_energy_ratio_low"],
                      g["lesion_energy_ratio_high"], at_least=min_ratio, ci_above=1.0),
               effect(f"peak on the lesion or within {tolerance:.0f} px (pointing game)", g["pointing_game"],
                      g["pointing_game_low"], g["pointing_game_high"], at_least=min_pointing)]
    return Lesson(loc, {}, {}, "Grad-CAM of the finding class points at the lesion", effects)


def faithfulness_lesson(curves: Mapping[str, Curves], films=None, *, groups=None, seed: int = 0,
                        n_boot: int = 1000) -> Lesson:
    """Deleting what Grad-CAM highlights must lower the class score faster than deleting a smooth
    random region: the deletion AUC of the random map minus Grad-CAM's, with its patient
    interval above 0. `curves` are `cxrnb.explain.faithfulness`'s; `films` (a boolean mask)
    the films judged: notebook 04 passes those with a finding that the model called correctly,
    whose evidence (the lesion) deletion can remove; a normal film's evidence is an absence.
    The insertion gap is shown beside it, not judged: inserting sharp pixels into a blurred film
    makes a film unlike any training film, and the score can saturate for any map."""
    keep = slice(None) if films is None else np.asarray(films, bool)
    sub = {m: c.select(keep) for m, c in curves.items()}
    g = faithfulness_gaps(sub, groups=None if groups is None else np.asarray(groups)[keep], seed=seed, n_boot=n_boot)
    d, i = g.loc["deletion"], g.loc["insertion"]
    effects = [effect("deletion AUC, random minus Grad-CAM", d["estimate"], d["low"], d["high"],
                      at_least=0.0, ci_above=0.0),
               effect("insertion AUC, Grad-CAM minus random", i["estimate"], i["low"], i["high"])]
    return Lesson(faithfulness_table(sub), {}, {}, "Removing what Grad-CAM highlights changes the score faster "
                  "than removing a random smooth region", effects)


def sanity_lesson(model_check: pd.DataFrame, data_check: pd.DataFrame, *, threshold: float = 0.5) -> Lesson:
    """Adebayo et al. (2018): Grad-CAM's maps must change when the weights are randomised (the
    lowest rank correlation over the cascade's steps where the maps are defined,
    `explain.randomisation_check`'s verdict table: a blank map is never a change) and when the
    same architecture is trained on shuffled labels (`explain.data_randomisation_check`'s).
    Verdict: mean Spearman correlation with the trained model's maps at most `threshold` in both."""
    effects = [effect("Spearman, trained vs weights randomised (lowest over the cascade)",
                      model_check.loc["gradcam", "spearman_lowest"], at_most=threshold),
               effect("Spearman, trained vs trained on shuffled labels", data_check.loc["gradcam", "spearman"],
                      at_most=threshold)]
    table = pd.DataFrame({"weights randomised (lowest)": model_check["spearman_lowest"],
                          "all layers randomised": model_check["spearman_all_random"],
                          "labels shuffled": data_check["spearman"]})
    return Lesson(table, {}, {}, "Grad-CAM's maps depend on what the model learned", effects)
