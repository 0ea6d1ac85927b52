"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 (TF_CONFIG).

Both workers must end with identical weights, the loss curve must match one
device on the same global batch, and the chief's checkpoint must restore in
a single process.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import small_model

WORKER = pathlib.Path(__file__).with_name("multiworker_worker.py")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiworker")
    ports = ",".join(map(str, _free_ports(2)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(i), ports, str(out)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    return out


def test_workers_end_with_identical_weights(cluster_run):
    first, second = (np.load(cluster_run / f"weights_{i}.npz") for i in range(2))
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])


def test_loss_curve_matches_single_device(cluster_run):
    keras.utils.set_random_seed(0)
    x = (np.random.RandomState(0).rand(64, 28, 28, 1) > 0.5).astype("float32")
    model = small_model("lvae")
    model.compile(keras.optimizers.Adam(1e-3))
    single = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=2,
                       verbose=0).history
    for i in range(2):
        history = json.loads((cluster_run / f"history_{i}.json").read_text())
        assert history["loss"] == pytest.approx(single["loss"], rel=1e-4)
        assert history["kl_1"] == pytest.approx(single["kl_1"], rel=1e-3)


def test_chief_checkpoint_restores_in_one_process(cluster_run):
    model = small_model("lvae")
    model.load_weights(str(cluster_run / "chief.weights.h5"))
    weights = np.load(cluster_run / "weights_0.npz")
    for saved, restored in zip(weights.files, model.weights):
        np.testing.assert_array_equal(weights[saved], restored.numpy())
