"""tf.distribute: MirroredStrategy over two logical CPUs matches one device.

Logical devices must be configured before TensorFlow runs anything, so each
check runs in a fresh subprocess.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

import tfladder
from tfladder import distribute

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from tfladder import distribute
    distribute.split_cpu(2)
    import keras, tensorflow as tf
    sys.path.insert(0, {root!r})
    from tests.helpers import small_model

    x = (np.random.RandomState(0).rand(96, 28, 28, 1) > 0.5).astype("float32")

    def run(strategy, family):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = small_model(family, kl_warmup_steps=4)
            model.compile(keras.optimizers.Adam(1e-3))
        data = tf.data.Dataset.from_tensor_slices(x).batch(16)
        history = model.fit(data, epochs=3, verbose=0).history
        return history, [w.numpy() for w in model.weights], strategy.num_replicas_in_sync

    result = {{}}
    for family in ("lvae", "vlae"):
        single, w1, n1 = run(distribute.get_strategy("default"), family)
        mirrored, w2, n2 = run(distribute.get_strategy("mirrored"), family)
        result[family] = dict(
            replicas=[n1, n2], loss=[single["loss"], mirrored["loss"]],
            elbo=[single["elbo"], mirrored["elbo"]],
            kl=[single["kl_1"], mirrored["kl_1"]],
            max_weight_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
            max_weight=max(float(np.max(np.abs(a))) for a in w1))
    print("RESULT" + json.dumps(result))
""")


@pytest.fixture(scope="module")
def mirrored_vs_single():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run([sys.executable, "-c", SCRIPT.format(root=root)], env=env,
                             capture_output=True, text=True, timeout=600, cwd=root)
    lines = [l for l in process.stdout.splitlines() if l.startswith("RESULT")]
    assert lines, process.stderr[-3000:]
    return json.loads(lines[0][len("RESULT"):])


@pytest.mark.parametrize("family", ["lvae", "vlae"])
def test_mirrored_matches_single_device(mirrored_vs_single, family):
    result = mirrored_vs_single[family]
    assert result["replicas"] == [1, 2]
    for key in ("loss", "elbo", "kl"):
        single, mirrored = result[key]
        assert mirrored == pytest.approx(single, rel=1e-4), key
    # Stated tolerance: after 18 Adam steps, weights agree to 1e-3 (float
    # reassociation in the all-reduce and the synchronized batch norm).
    assert result["max_weight_diff"] < 1e-3 * max(1.0, result["max_weight"])


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="strategy must be one of"):
        tfladder.distribute.get_strategy("horovod")


def test_cli_trains_with_the_mirrored_strategy(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run(
        [sys.executable, "-m", "tfladder.cli", "train", "vae_mnist", "--data", "mnist_offline",
         "--epochs", "1", "--limit", "200", "--batch-size", "50", "--strategy", "mirrored",
         "--cpu-devices", "2", "--workdir", str(tmp_path / "w"),
         "--verbose"],        # the strategy's log line is an INFO log
        env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert (tmp_path / "w" / "model" / "SHA256SUMS").exists()
    assert "MirroredStrategy on 2 replica(s)" in process.stderr


class _ClusterStrategy:
    """Stands in for a strategy whose cluster comes from TF_CONFIG."""

    def __init__(self, cluster, task_type, task_id):
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)


TWO_WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
WITH_CHIEF = {"chief": ["127.0.0.1:0"], **TWO_WORKERS}


@pytest.mark.parametrize("strategy, chief, multi_worker", [
    (None, True, False),                                   # one process, default strategy
    (_ClusterStrategy(TWO_WORKERS, "worker", 0), True, True),
    (_ClusterStrategy(TWO_WORKERS, "worker", 1), False, True),
    (_ClusterStrategy(WITH_CHIEF, "chief", 0), True, True),
    (_ClusterStrategy(WITH_CHIEF, "worker", 0), False, True),
    (_ClusterStrategy({**WITH_CHIEF, "evaluator": ["127.0.0.1:3"]}, "evaluator", 0), False,
     True),
])
def test_only_the_chief_writes(strategy, chief, multi_worker):
    assert distribute.is_chief(strategy) is chief
    assert distribute.is_multi_worker(strategy) is multi_worker
