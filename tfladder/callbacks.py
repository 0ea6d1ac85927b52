"""Keras callbacks for tfladder training."""
import json
import pathlib
import shutil
import time

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfladder import figures, fileio
from tfladder.fileio import write_atomically, write_text_atomically  # noqa: F401


class StopOnRepeatedSkips(keras.callbacks.Callback):
    """Stops training after `patience` consecutive skipped (non-finite) updates.

    `HierarchicalModel.train_step` skips an update whose loss or gradient is
    not finite and counts it in the `skipped_updates` metric (a per-epoch
    sum). One skip is survivable; a run of them means the model has diverged,
    so this stops it with a message, like `TerminateOnNaN` but without losing
    the last good weights.
    """

    def __init__(self, patience=20):
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}.")
        self.patience = int(patience)
        self.consecutive = 0
        self.stopped_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = 0.0
        self._last_batch = -1

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1, Keras calls this once per execution of
        # `batch - last batch` steps, with the epoch's running sum of skips.
        skipped = float((logs or {}).get("skipped_updates", 0.0))
        steps, new = batch - self._last_batch, skipped - self._seen
        if new >= steps:
            self.consecutive += steps           # every step of the execution skipped
        else:
            self.consecutive = new              # at most this many at its end
        self._seen, self._last_batch = skipped, batch
        if self.consecutive >= self.patience:
            self.stopped_at = batch
            logging.error("Stopping: %d consecutive updates had a non-finite loss or gradient "
                          "and were skipped; the weights are those of the last finite update.",
                          self.consecutive)
            self.model.stop_training = True


class StopOnInterrupt(keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` at the next batch or epoch end once `event` is set.

    Python turns Ctrl-C into a `KeyboardInterrupt` in whatever Python code
    the main thread runs next; when that is a finalizer (`__del__` of a
    TensorFlow object during `fit`), the exception is printed as "ignored"
    and training goes on to the end. A SIGINT handler that also sets `event`
    (see `tfladder.cli`) makes the interrupt reach `fit` here, at a point
    where nothing swallows it.
    """

    def __init__(self, event):
        super().__init__()
        self.event = event

    def _check(self):
        if self.event.is_set():
            raise KeyboardInterrupt("interrupted")

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_test_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


# ----------------------------------------------------------------- checkpoints
WEIGHTS_FILE = "latest.weights.h5"         # The names keras.callbacks.BackupAndRestore uses,
METADATA_FILE = "training_metadata.json"   # so that its backups resume with EpochCheckpoint.
_EPOCH_ATTR = "tfladder_epoch"             # Epochs done, stored inside the weights file too.


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


class EpochCheckpoint(keras.callbacks.Callback):
    """Atomic, resumable end-of-epoch checkpoints of weights + optimizer state.

    A drop-in replacement of `keras.callbacks.BackupAndRestore` (epoch
    frequency) that survives being killed at any instant. After every complete
    epoch it writes, each through a temporary file, fsync and `os.replace`:

    1. `directory/latest.weights.h5`: `model.save_weights`, which holds the
       model's variables and the optimizer's (iteration count, learning rate,
       Adam moments), with the number of epochs done stored in the file as
       the HDF5 attribute `tfladder_epoch`;
    2. `directory/training_metadata.json`: `{"epoch": epochs done, "batch": 0}`,
       last, as `BackupAndRestore` writes it.

    The folder and file names and the metadata keys are those of
    `BackupAndRestore`, so a folder it wrote resumes here. The epoch count
    inside the weights file makes the pair consistent: killed between the two
    renames, the new weights win over the old metadata.

    Call `restore()` before `fit` and pass the epoch it returns as
    `initial_epoch` (this callback does not set `model._initial_epoch`). An
    epoch cut short by `model.stop_training` (e.g. `TerminateOnNaN`) is not
    checkpointed. Put this callback after the callbacks that log an epoch
    (e.g. `CSVLogger`), so that a checkpointed epoch is always logged.
    The checkpoint is kept after training; `delete()` removes it. With
    `write=False` the callback only restores (the other workers of a
    multi-worker run, which read the chief's checkpoint).
    """

    def __init__(self, directory, write=True):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.weights_path = self.directory / WEIGHTS_FILE
        self.metadata_path = self.directory / METADATA_FILE
        self.write = bool(write)   # False: restore only (a non-chief worker)
        self._cut_short = False

    # ---------------------------------------------------------------- saving
    def on_epoch_begin(self, epoch, logs=None):
        self._cut_short = False

    def on_train_batch_end(self, batch, logs=None):
        if self.model.stop_training:
            self._cut_short = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.write:
            return
        if self._cut_short:
            logging.warning("Epoch %d was stopped early: not checkpointed (the checkpoint "
                            "keeps the last complete epoch).", epoch)
            return
        self.save(epoch + 1)

    def save(self, epochs_done):
        """Writes the checkpoint of the state after `epochs_done` complete epochs."""
        self.directory.mkdir(parents=True, exist_ok=True)

        def write_weights(tmp):
            self.model.save_weights(str(tmp))
            with h5py.File(tmp, "a") as handle:
                handle.attrs[_EPOCH_ATTR] = int(epochs_done)

        write_atomically(self.weights_path, write_weights)
        write_text_atomically(self.metadata_path,
                              json.dumps({"epoch": int(epochs_done), "batch": 0}))

    # ------------------------------------------------------------- restoring
    def remove_leftovers(self):
        """Deletes temporary files of writers that were killed mid-write."""
        if not self.directory.is_dir():
            return
        for name in (WEIGHTS_FILE, METADATA_FILE):
            for leftover in self.directory.glob(f"{fileio.TMP_PREFIX}*-{name}"):
                logging.warning("Removing %s, left by an interrupted checkpoint write.", leftover)
                leftover.unlink(missing_ok=True)

    def epochs_done(self):
        """The number of complete epochs in the checkpoint (0 if there is none).

        Raises:
          CheckpointError: if the checkpoint is unreadable or inconsistent.
        """
        if self.write:   # a reader must not touch files the chief may be writing
            self.remove_leftovers()
        metadata_epoch = self._metadata_epoch()
        if not self.weights_path.exists():
            if metadata_epoch:
                raise CheckpointError(
                    f"{self.metadata_path} records {metadata_epoch} epoch(s) but "
                    f"{self.weights_path} is missing. Restore it, or delete {self.directory} "
                    "to train from scratch.")
            return 0
        weights_epoch = self._weights_epoch()
        if weights_epoch is None:            # Written by keras.callbacks.BackupAndRestore.
            if metadata_epoch is None:
                raise CheckpointError(
                    f"{self.weights_path} exists but {self.metadata_path} is missing, so the "
                    "epoch it was saved at is unknown (a write interrupted by an older "
                    f"checkpointer?). Delete {self.directory} to train from scratch.")
            return metadata_epoch
        if metadata_epoch != weights_epoch:
            logging.warning("%s says %s epoch(s) but %s holds %d: the run was stopped between "
                            "the two writes; resuming after epoch %d.", self.metadata_path,
                            metadata_epoch, self.weights_path, weights_epoch, weights_epoch)
        return weights_epoch

    def restore(self, model=None):
        """Loads the checkpoint into `model` (default: `self.model`), which must be
        built and compiled with its optimizer built. Returns the number of epochs
        done, the `initial_epoch` of the next `fit` (0 without a checkpoint).

        Raises:
          CheckpointError: if the checkpoint exists but cannot be loaded (e.g. a
            weights file truncated by a non-atomic writer): never silently
            starts over.
        """
        model = self.model if model is None else model
        epochs = self.epochs_done()
        if not self.weights_path.exists():
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(str(self.weights_path))
        except Exception as error:   # h5py raises OSError, Keras ValueError, ...
            raise CheckpointError(
                f"Cannot load the checkpoint {self.weights_path} ({type(error).__name__}: "
                f"{error}). It may have been truncated by an interrupted write, or belong to "
                f"another model. Delete {self.directory} to train from scratch.") from error
        logging.info("Restored %s: %d epoch(s) done, optimizer step %s.", self.weights_path,
                     epochs, int(model.optimizer.iterations) if model.optimizer else None)
        return epochs

    def delete(self):
        """Removes the checkpoint folder."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _metadata_epoch(self):
        if not self.metadata_path.exists():
            return None
        try:
            return int(json.loads(self.metadata_path.read_text())["epoch"])
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{self.metadata_path} is not valid checkpoint metadata "
                                  f"({error}).") from error

    def _weights_epoch(self):
        try:
            with h5py.File(self.weights_path, "r") as handle:
                value = handle.attrs.get(_EPOCH_ATTR)
        except OSError as error:
            raise CheckpointError(
                f"Cannot read the checkpoint {self.weights_path} ({error}). It may have been "
                "truncated by an interrupted write (keras.callbacks.BackupAndRestore writes "
                f"in place). Delete {self.directory} to train from scratch.") from error
        return None if value is None else int(value)


class KLPerUnitHistory(keras.callbacks.Callback):
    """Records each latent unit's KL on fixed images after every epoch.

    The history (LVAE paper Fig. 4: which units stay active during training)
    is rewritten atomically to `path` (`.npz`, one array `layer_<l>` of shape
    `[epochs, d_l]` per layer plus `epoch`); a resumed run keeps the epochs
    recorded before its `initial_epoch`.
    """

    def __init__(self, images, path, batch_size=500):
        super().__init__()
        self.images = images
        self.path = pathlib.Path(path)
        self.batch_size = int(batch_size)
        self.epochs, self.rows = [], []

    def on_train_begin(self, logs=None):
        self.epochs, self.rows = [], []
        if self.path.exists():
            with np.load(self.path) as saved:
                layers = sorted((k for k in saved.files if k.startswith("layer_")),
                                key=lambda k: int(k.split("_")[1]))
                for i, epoch in enumerate(saved["epoch"]):
                    self.epochs.append(int(epoch))
                    self.rows.append([saved[k][i] for k in layers])

    def on_epoch_end(self, epoch, logs=None):
        from tfladder.evaluation import kl_per_unit
        keep = [i for i, e in enumerate(self.epochs) if e < epoch + 1]
        self.epochs = [self.epochs[i] for i in keep] + [epoch + 1]
        self.rows = [self.rows[i] for i in keep] + [
            kl_per_unit(self.model, self.images, self.batch_size)]
        arrays = {"epoch": np.asarray(self.epochs)}
        for l in range(len(self.rows[0])):
            arrays[f"layer_{l + 1}"] = np.stack([row[l] for row in self.rows])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, lambda tmp: _save_npz(tmp, arrays))


def _save_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


class WallTime(keras.callbacks.Callback):
    """Adds each finished epoch's duration to `workdir/wall_time.json`, so the
    total training time survives interruptions and resumes."""

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def total(self):
        return json.loads(self.path.read_text())["seconds"] if self.path.exists() else 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.total() + time.time() - self._started
        write_text_atomically(self.path, json.dumps({"seconds": round(seconds, 1),
                                                     "epochs_done": epoch + 1}))


class ImageSummaries(keras.callbacks.Callback):
    """Writes sample and layer-traversal grids to TensorBoard after every epoch."""

    def __init__(self, log_dir, seed=0):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(pathlib.Path(log_dir) / "images"))
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=epoch):
            tf.summary.image("samples", figures.sample_grid(self.model, seed=self.seed)[None])
            for l, block in enumerate(figures.layer_traversals(self.model, seed=self.seed)):
                tf.summary.image(f"traversal/layer_{l + 1}", block[None])
        self.writer.flush()
