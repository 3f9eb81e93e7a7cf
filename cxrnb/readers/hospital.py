"""The hospital-style sources (RSNA Pneumonia, DICOM class folders, CheXpert, MIMIC-CXR-JPG).

Their readers and `register` calls are in `cxrnb.radiology`, which other modules import for its
box and mask helpers too; importing it here is what registers them. A new source needs no such
indirection: its module in this package holds its reader and its `register` call.
"""
from importlib import import_module

import_module("cxrnb.radiology")  # the end of that module registers the four sources
