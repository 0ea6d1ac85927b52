"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 (TF_CONFIG).

Both workers must end with identical weights, the loss curve must match one
device on the same global batch, and the chief's checkpoint must restore in
a single process. `tfladder.training.train` under the strategy: the workers
agree, and only the chief writes the shared workdir.
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


def _run_cluster(out, mode):
    ports = ",".join(map(str, _free_ports(2)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(i), ports, str(out), mode],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    return _run_cluster(tmp_path_factory.mktemp("multiworker"), "fit")


@pytest.fixture(scope="module")
def cluster_train(tmp_path_factory):
    return _run_cluster(tmp_path_factory.mktemp("multiworker_train"), "train")


# The `fit` cluster (plain Keras fit under MultiWorkerMirroredStrategy): slow; the
# `train` cluster below checks the same agreement in the default run.
@pytest.mark.slow
def test_workers_end_with_identical_weights(cluster_run):
    first, second = (np.load(cluster_run / f"weights_{i}.npz") for i in range(2))
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])


@pytest.mark.slow
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


@pytest.mark.slow
def test_chief_checkpoint_restores_in_one_process(cluster_run):
    model = small_model("lvae")
    model.load_weights(str(cluster_run / "chief.weights.h5"))
    weights = np.load(cluster_run / "weights_0.npz")
    for saved, restored in zip(weights.files, model.weights):
        np.testing.assert_array_equal(weights[saved], restored.numpy())


def test_train_workers_agree_and_only_the_chief_writes(cluster_train):
    first, second = (np.load(cluster_train / f"train_weights_{i}.npz") for i in range(2))
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
    histories = [json.loads((cluster_train / f"train_history_{i}.json").read_text())
                 for i in range(2)]
    assert len(histories[0]["loss"]) == 2
    assert histories[1]["loss"] == pytest.approx(histories[0]["loss"], rel=1e-6)

    run = cluster_train / "run"
    # One writer: one history with one row per epoch, one TensorBoard stream,
    # no temporary files, and the finished folder verifies and loads.
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 3, rows
    assert len(list((run / "logs" / "train").glob("events.out.tfevents.*"))) == 1
    assert not [p for p in run.rglob("*") if p.name.startswith("tmp-")]
    assert (run / "TRAINING_COMPLETE").exists() and not (run / "backup").exists()
    from tfladder import zoo
    model = zoo.load(run / "model")
    for saved, restored in zip(first.files, model.weights):
        np.testing.assert_array_equal(first[saved], restored.numpy())


def test_train_across_workers_is_training_on_one_device(cluster_train, tmp_path):
    """Each worker keeps its rows of every global batch: the two-worker run is the
    single-process run on the same global batches, seeds and data."""
    from tfladder import training
    single = training.train("vae_mnist", tmp_path / "single", data="mnist_offline", epochs=2,
                            batch_size=100, limit=200, seed=0, verbose=0)
    history = json.loads((cluster_train / "train_history_0.json").read_text())
    for key in ("loss", "kl_1", "val_elbo"):
        assert history[key] == pytest.approx(single.history[key], rel=1e-4), key
    weights = np.load(cluster_train / "train_weights_0.npz")
    for saved, variable in zip(weights.files, single.model.weights):
        np.testing.assert_allclose(weights[saved], variable.numpy(), rtol=1e-4, atol=1e-5)
