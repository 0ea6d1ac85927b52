"""Keras callbacks for tfladder training."""
import keras
from absl import logging


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

    def on_train_batch_end(self, batch, logs=None):
        skipped = float((logs or {}).get("skipped_updates", 0.0))
        self.consecutive = self.consecutive + 1 if skipped > self._seen else 0
        self._seen = skipped
        if self.consecutive >= self.patience:
            self.stopped_at = batch
            logging.error("Stopping: %d consecutive updates had a non-finite loss or gradient "
                          "and were skipped; the weights are those of the last finite update.",
                          self.consecutive)
            self.model.stop_training = True
