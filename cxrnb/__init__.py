"""cxrnb: the helper package behind the chest X-ray notebook series.

One module per stage of the data flow:
`synthetic` (embedded dataset) -> `sources` (readers -> index) -> `validate` (drop report)
-> `splits` (patient-level) -> `pipeline` (tf.data) with `augment` -> `models` -> `train` ->
`evaluate`, `explain` (CAMs) -> `plots`; `cli` for the shell. The notebooks' helpers live in
`lessons`, one module per notebook.
Importing `cxrnb` is cheap: TensorFlow is only imported by the modules that need it.
"""
__version__ = "0.1.0"
