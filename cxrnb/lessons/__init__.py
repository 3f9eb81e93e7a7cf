"""The notebooks' lessons: one module per notebook, the one home of the helpers its cells call.

A cell states the lesson; the helpers here do the plumbing (reading films, training the
experiment, measuring the effect with its interval, judging it). A reader looking for what a
notebook calls looks in its module:

* `augmentation`: ``02_augmentation_preview`` (figures of a policy's draws, unsafe
  augmentations, the articles' presets, findings and masks under augmentation, normalisation,
  resolution).
* `training`: ``03_training`` (`learned`, `leakage`, `imbalance`).
* `interpretation`: ``04_gradcam_interpretation`` (`gradcam_lesson`, `faithfulness_lesson`,
  `sanity_lesson`).
* `shortcuts`: ``05_shortcut_learning`` (counterfactual films, marker and collection effects and
  their lessons, blanked lungs, the source probe).
* `core`: what every measured lesson is made of (`Effect`, `effect`, `judge`, `Lesson`,
  `format_table`), re-exported here.

``01_data_exploration`` has no lesson helpers of its own: it calls the data stages
(`cxrnb.validate`, `cxrnb.splits`, `cxrnb.plots`) directly. The stages themselves (data,
pipeline, models, training, evaluation, and the CAM library `cxrnb.explain`) stay outside this
package. Importing `cxrnb.lessons` loads `core` only; a notebook imports its own module
(``from cxrnb.lessons import shortcuts``).
"""
from .core import LESSONS_LOG, Effect, Lesson, effect, format_table, judge, slack

__all__ = ["LESSONS_LOG", "Effect", "Lesson", "effect", "format_table", "judge", "slack"]
