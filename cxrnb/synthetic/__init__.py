"""The embedded synthetic chest X-ray dataset: the offline default of every notebook and test.

`render.py` draws one frontal radiograph with its lung and lesion masks (`render_image`, a pure
function of its arguments); `write.py` lays whole datasets out on disk like a real source
(`generate`) and reuses one generated with the same arguments (`ensure`); `film` and `encode`
remake one stored file from the arguments `read_settings` reads back.
"""
from .render import CLASSES, SUBTYPES, VIEWS, render_image
from .write import (FINDINGS, GENERATOR_VERSION, LAYOUTS, MANIFEST, METADATA_COLUMNS, NIH_COLUMNS, POPULATIONS,
                    SETTINGS, encode, ensure, film, generate, read_manifest, read_settings)

__all__ = ["CLASSES", "SUBTYPES", "VIEWS", "render_image", "FINDINGS", "GENERATOR_VERSION", "LAYOUTS",
           "MANIFEST", "METADATA_COLUMNS", "NIH_COLUMNS", "POPULATIONS", "SETTINGS", "encode", "ensure", "film", "generate",
           "read_manifest", "read_settings"]
