"""One worker of the two-process MultiWorkerMirroredStrategy test (test_multiworker.py).

Usage: python multiworker_worker.py INDEX PORT0,PORT1 OUT_DIR [fit|train]

`fit` (default) runs `model.fit` on a small LVAE; `train` runs
`tfladder.training.train` on a tiny vae_mnist recipe with workdir OUT_DIR/run.
"""
import json
import os
import pathlib
import sys

index, ports, out = int(sys.argv[1]), sys.argv[2].split(","), pathlib.Path(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "fit"
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
    "task": {"type": "worker", "index": index}})
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tfladder import distribute  # noqa: E402  (the strategy comes first in each process)

strategy = distribute.get_strategy("multi_worker")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.helpers import small_model  # noqa: E402

if mode == "train":
    from tfladder import training  # noqa: E402
    result = training.train("vae_mnist", out / "run", data="mnist_offline", epochs=2,
                            batch_size=100, limit=200, seed=0, verbose=0, strategy=strategy)
    np.savez(out / f"train_weights_{index}.npz", *[w.numpy() for w in result.model.weights])
    (out / f"train_history_{index}.json").write_text(json.dumps(
        {k: [float(v) for v in values] for k, values in result.history.items()}))
    sys.exit(0)

keras.utils.set_random_seed(0)
x = (np.random.RandomState(0).rand(64, 28, 28, 1) > 0.5).astype("float32")
with strategy.scope():
    model = small_model("lvae")
    model.compile(keras.optimizers.Adam(1e-3))
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
data = tf.data.Dataset.from_tensor_slices(x).batch(16).with_options(options)
history = model.fit(data, epochs=2, verbose=0).history
np.savez(out / f"weights_{index}.npz", *[w.numpy() for w in model.weights])
if index == 0:                       # only the chief writes the checkpoint
    model.save_weights(str(out / "chief.weights.h5"))
(out / f"history_{index}.json").write_text(json.dumps(
    {k: [float(np.ravel(v)[0]) for v in values] for k, values in history.items()}))
