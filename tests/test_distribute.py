"""Training beyond one device goes through `tf.distribute`: the pipeline's datasets and `train`
under a MirroredStrategy over 2 logical CPU devices (what MultiWorkerMirroredStrategy and
Colab's TPUStrategy take the same way, through `train(..., strategy=)`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Logical devices must be configured before TensorFlow starts, so the check runs in its own process.
SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cxrnb.notebook import load_split
from cxrnb.pipeline import make_dataset
from cxrnb.train import TrainConfig, train

out = sys.argv[1]
split = load_split("synthetic", out + "/data", out, n_patients=24, size=64, seed=0)
classes = sorted(split["label"].unique())
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
train_rows = split[split["split"] == "train"]
ds = make_dataset(train_rows, classes, image_size=32, batch_size=8, training=True, augment="default",
                  progress=False, drop_remainder=True)
x, y = next(iter(strategy.experimental_distribute_dataset(ds)))
xs, ys = strategy.experimental_local_results(x), strategy.experimental_local_results(y)
config = TrainConfig.preset("default", image_size=32, batch_size=8, epochs=2, seed=0)
result = train(config, split, out + "/run", strategy=strategy, n_boot=20)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "devices": [t.device for t in xs],
                  "shapes": [list(t.shape) for t in xs], "labels": [int(t.shape[0]) for t in ys],
                  "finite": bool(np.isfinite(xs[0].numpy()).all()), "epochs": len(result.history),
                  "n_predictions": len(result.predictions), "n_rows": len(split)}))
"""


def test_pipeline_datasets_and_training_run_under_a_mirrored_strategy_on_two_devices(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                       timeout=600, env=env, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert [d.rsplit("/", 1)[-1] for d in out["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert out["shapes"] == [[4, 32, 32, 1], [4, 32, 32, 1]]  # each replica gets half of a batch of 8
    assert out["labels"] == [4, 4] and out["finite"]
    assert out["epochs"] == 2 and out["n_predictions"] == out["n_rows"]  # every film predicted
