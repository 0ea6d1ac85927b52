"""The guarded training step skips non-finite updates and stops on repeated ones."""
import keras
import numpy as np
import tensorflow as tf

from tests.helpers import small_model
from tfladder.callbacks import StopOnRepeatedSkips


def _binary(n, seed=0):
    return (np.random.RandomState(seed).rand(n, 28, 28, 1) > 0.5).astype(np.float32)


def test_a_nan_batch_is_skipped_and_counted():
    model = small_model("lvae")
    model.compile(keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in model.trainable_weights]
    poisoned = _binary(8)
    poisoned[3, 5, 5, 0] = np.nan                     # forces a NaN loss and gradient
    logs = model.train_on_batch(poisoned, return_dict=True)
    assert logs["skipped_updates"] == 1.0
    for old, new in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(model.optimizer.iterations) == 0       # the optimizer never stepped
    logs = model.train_on_batch(_binary(8), return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(old, new.numpy())
               for old, new in zip(before, model.trainable_weights))


def test_infinite_gradients_are_skipped():
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    model.trainable_weights[0].assign(tf.fill(model.trainable_weights[0].shape, np.inf))
    logs = model.train_on_batch(_binary(4), return_dict=True)
    assert logs["skipped_updates"] == 1.0


def test_training_stops_after_repeated_skips():
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=1)   # callbacks per step
    data = _binary(64)
    data[:, 0, 0, 0] = np.nan                         # every batch is poisoned
    stopper = StopOnRepeatedSkips(patience=3)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), epochs=5,
                        callbacks=[stopper], verbose=0).history
    assert stopper.stopped_at == 2                    # third batch of the first epoch
    assert len(history["loss"]) == 1
    assert history["skipped_updates"][0] == 3.0


def test_guard_under_a_one_device_mirrored_strategy():
    """A distribution strategy (even with one replica) takes the zero-gradient path."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = small_model("vae")
        model.compile(keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in model.trainable_weights]
    poisoned = _binary(8)
    poisoned[0, 0, 0, 0] = np.nan
    logs = model.fit(tf.data.Dataset.from_tensor_slices(poisoned).batch(8), epochs=1,
                     verbose=0).history
    assert logs["skipped_updates"] == [1.0]
    # First step: zero gradients and zero Adam moments leave every weight as it was.
    for old, new in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, new.numpy())
    history = model.fit(tf.data.Dataset.from_tensor_slices(_binary(16)).batch(8), epochs=1,
                        verbose=0).history
    assert history["skipped_updates"] == [0.0] and np.isfinite(history["loss"][0])


def test_repeated_skips_are_counted_across_multi_step_executions():
    """With steps_per_execution = 4 the callback runs once per 4 steps; it still
    counts skipped updates, not executions."""
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=4)
    data = _binary(64)
    data[:, 0, 0, 0] = np.nan
    stopper = StopOnRepeatedSkips(patience=6)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), epochs=5,
                        callbacks=[stopper], verbose=0).history
    assert stopper.stopped_at == 7                    # end of the second execution: 8 >= 6
    assert history["skipped_updates"][0] == 8.0


def test_a_partly_skipped_execution_does_not_stop_training():
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=4)
    data = _binary(64)
    data[::8, 0, 0, 0] = np.nan                       # one poisoned batch in every two
    stopper = StopOnRepeatedSkips(patience=3)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), epochs=2,
                        callbacks=[stopper], verbose=0).history
    assert stopper.stopped_at is None
    assert history["skipped_updates"] == [8.0, 8.0]
