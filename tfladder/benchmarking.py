"""Speed measurements behind `benchmarks/throughput.py`.

Every rate is a median over several timed windows taken after warm-up steps,
so compilation and cache effects are excluded; compare rates measured in one
run (this machine's timings drift between runs).
"""
import statistics
import time

import keras
import numpy as np
import tensorflow as tf


def _median_rate(run_window, windows):
    """Median of `run_window()` -> (work, seconds) rates over `windows` calls."""
    rates = []
    for _ in range(windows):
        work, seconds = run_window()
        rates.append(work / seconds)
    return statistics.median(rates)


def matmul_peak(size=2048, repeats=10, windows=5):
    """Practical float32 peak: FLOP/s of a `size x size` matmul (2 n^3 per product)."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    product(a, b).numpy()

    def window():
        started = time.perf_counter()
        for _ in range(repeats):
            product(a, b).numpy()
        return 2.0 * size ** 3 * repeats, time.perf_counter() - started

    return _median_rate(window, windows)


def train_step_flops(model, batch_size):
    """Floating-point operations of one training step (forward + backward + update),
    counted by the TensorFlow profiler on the step's graph."""
    spec = tf.TensorSpec([batch_size, *model.image_shape], tf.float32)
    step = tf.function(model.train_step).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(step.graph, options=options)
    return float(profile.total_float_ops)


def training_throughput(model, images, batch_size, steps=20, windows=5, warmup=5):
    """Training examples per second of `model.fit` on in-memory batches (prefetched)."""
    data = (tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)

    def window():
        started = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        return steps * batch_size, time.perf_counter() - started

    return _median_rate(window, windows)


def log_likelihood_throughput(model, images, num_samples=5000, windows=3):
    """Importance samples per second of `model.log_likelihood` (K samples per image)."""
    model.log_likelihood(images, num_samples=min(num_samples, 100))

    def window():
        started = time.perf_counter()
        model.log_likelihood(images, num_samples=num_samples)
        return len(images) * num_samples, time.perf_counter() - started

    return _median_rate(window, windows)


def sample_latency(saved_model_dir, count=64, repeats=20):
    """Median seconds of the SavedModel `sample` endpoint for `count` images."""
    served = tf.saved_model.load(str(saved_model_dir))
    served.sample(tf.constant(count), tf.constant(0))
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        served.sample(tf.constant(count), tf.constant(seed))["images"].numpy()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def compiled(model_factory, jit_compile):
    """A freshly built and compiled model (`jit_compile` True/False)."""
    model = model_factory()
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    return model


def binary_images(count, image_shape, seed=0):
    return (np.random.RandomState(seed).rand(count, *image_shape) > 0.5).astype(np.float32)
