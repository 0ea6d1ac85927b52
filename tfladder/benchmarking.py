"""Speed measurements behind `benchmarks/throughput.py`.

Every rate is a median over several timed windows taken after warm-up steps,
so compilation and cache effects are excluded; compare rates measured in one
run (this machine's timings drift between runs).

Rates come in two clocks. Wall-clock rates are what a user sees; they depend
on how many cores the process gets. Rates per CPU-second (the process's user +
system time) measure the work a step costs and stay comparable when other jobs
share the machine. `op_time_breakdown` profiles the training step op by op.
"""
import collections
import contextlib
import glob
import re
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf


def _median_rate(run_window, windows, cpu=False):
    """Median of `run_window()` -> (work, seconds) rates over `windows` calls.

    With `cpu=True` returns `(wall rate, rate per CPU-second)`, both medians.
    """
    rates, cpu_rates = [], []
    for _ in range(windows):
        cpu_started = time.process_time()
        work, seconds = run_window()
        rates.append(work / seconds)
        cpu_rates.append(work / max(time.process_time() - cpu_started, 1e-9))
    if cpu:
        return statistics.median(rates), statistics.median(cpu_rates)
    return statistics.median(rates)


def matmul_peak(size=2048, repeats=10, windows=5, cpu=False):
    """Practical float32 peak: FLOP/s of a `size x size` matmul (2 n^3 per product).

    With `cpu=True` returns `(FLOP/s, FLOP per CPU-second)`.
    """
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    product(a, b).numpy()

    def window():
        started = time.perf_counter()
        for _ in range(repeats):
            product(a, b).numpy()
        return 2.0 * size ** 3 * repeats, time.perf_counter() - started

    return _median_rate(window, windows, cpu)


def train_step_flops(model, batch_size):
    """Floating-point operations of one training step (forward + backward + update),
    counted by the TensorFlow profiler on the step's graph."""
    spec = tf.TensorSpec([batch_size, *model.image_shape], tf.float32)
    step = tf.function(model.train_step).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(step.graph, options=options)
    return float(profile.total_float_ops)


def in_memory_batches(images, batch_size):
    """An endless, prefetched dataset of `batch_size` images sliced from `images`."""
    return (tf.data.Dataset.from_tensor_slices(images).repeat()
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


class _WindowTimer(keras.callbacks.Callback):
    """Wall and CPU seconds of every epoch (= timed window) of a `fit` call."""

    def __init__(self):
        super().__init__()
        self.windows = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self._started
        self.windows.append((time.perf_counter() - wall, time.process_time() - cpu))


def training_throughput(model, images, batch_size, steps=20, windows=5, warmup=5, cpu=False):
    """Training examples per second of `model.fit` on in-memory batches (prefetched).

    One `fit` call runs a warm-up epoch of `warmup` steps and then `windows`
    epochs of `steps` steps, each timed; like a training run it keeps one
    iterator over the data (`steps_per_epoch` is set) and calls its callbacks.
    `images` may also be a `tf.data.Dataset` of batches (used as is).
    With `cpu=True` returns `(examples/s, examples per CPU-second)`.
    """
    if isinstance(images, tf.data.Dataset):
        data = images
    else:
        data = in_memory_batches(images, batch_size)
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)     # traces and compiles
    timer = _WindowTimer()
    model.fit(data, steps_per_epoch=steps, epochs=windows + 1, callbacks=[timer], verbose=0)
    timed = timer.windows[1:]              # the first epoch starts a new iterator: not timed
    work = steps * batch_size
    wall_rate = statistics.median(work / wall for wall, _ in timed)
    if not cpu:
        return wall_rate
    return wall_rate, statistics.median(work / max(c, 1e-9) for _, c in timed)


def interleaved_throughput(models, data, batch_size, steps=10, rounds=9, warmup=3,
                           trace_contexts=None):
    """Training rates of several models measured in alternating windows.

    Each model runs its compiled train function (what `fit` calls once per
    `steps_per_execution` steps) on one persistent iterator of its dataset,
    as `fit` does within a run, so a pipeline's start-up cost is paid once,
    in the warm-up. `steps` must be a multiple of every model's
    `steps_per_execution`.

    Args:
      models: `{label: compiled model}`.
      data: `{label: dataset}` or one dataset for every model.
      trace_contexts: `{label: context manager factory}` entered around that
        model's warm-up steps, where its train function is traced (to compare
        against a patched variant).

    Returns `{label: {"wall": [...], "cpu": [...]}}` (examples per second and
    per CPU-second, one entry per round). Alternating windows in one process
    expose every variant to the same background load; compare per-round
    ratios, not absolute rates.
    """
    if not isinstance(data, dict):
        data = {label: data for label in models}
    runs = {}
    for label, model in models.items():
        if steps % model.steps_per_execution:
            raise ValueError(f"steps ({steps}) must be a multiple of the steps_per_execution "
                             f"of {label!r} ({model.steps_per_execution}).")
        model.make_train_function()
        step = model.train_function
        iterator = iter(data[label])
        context = (trace_contexts or {}).get(label, contextlib.nullcontext)
        with context():
            for _ in range(warmup):
                step(iterator)
        runs[label] = (model, step, iterator)
    rates = {label: {"wall": [], "cpu": []} for label in models}
    for _ in range(rounds):
        for label, (model, step, iterator) in runs.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps // model.steps_per_execution):
                step(iterator)                               # steps_per_execution steps
            int(model.optimizer.iterations.numpy())          # waits for the last step
            work = steps * batch_size
            rates[label]["wall"].append(work / (time.perf_counter() - started))
            rates[label]["cpu"].append(work / max(time.process_time() - cpu_started, 1e-9))
    return rates


def pipeline_rate(dataset, batches=200, warmup=5):
    """Batches per second that `dataset` delivers on its own (no training step)."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - started)


def ratio_summary(rates, label, baseline, clock="wall"):
    """`(median, min, max)` of the per-round rate ratios `label / baseline`."""
    ratios = [a / b for a, b in zip(rates[label][clock], rates[baseline][clock])]
    return statistics.median(ratios), min(ratios), max(ratios)


# ------------------------------------------------------------------ profiling
# TensorFlow kernels appear in the host trace as "node/name:OpType"; XLA-compiled
# code appears as thunks ("MatMul.158", "add_multiply_fusion.3") carrying an
# `hlo_op` stat. Runtime bookkeeping events ("ExecutorState::Process", ...)
# are neither and are left out.
_TF_OP = re.compile(r"^[^:]+:([A-Za-z0-9_]+)$")
_XLA_SUFFIX = re.compile(r"[._]\d+$")


def _phase(node_name, optimizer_name):
    if f"/{optimizer_name}/" in node_name or node_name.startswith(f"{optimizer_name}/"):
        return "optimizer update"
    if "global_norm" in node_name or "IsFinite" in node_name:
        return "finiteness check"
    if node_name.startswith("gradient_tape/") or "/gradient_tape/" in node_name:
        return "backward"
    return "forward and metrics"


def profile_events(step, logdir=None):
    """Runs `step()` under the TensorFlow profiler; returns the host-CPU op events.

    Returns a list of `(kind, name, seconds)` with kind `"tf"` (a TensorFlow
    kernel; name "node/name:OpType") or `"xla"` (an XLA thunk; name the HLO
    instruction). Times are exclusive: a thunk nested in another (an XLA
    conditional's branch) is not counted twice.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = logdir or tempfile.mkdtemp(prefix="tfladder_profile_")
    # Level 3 records XLA's per-thunk events as well as TensorFlow kernels.
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=3,
                                                       python_tracer_level=0,
                                                       device_tracer_level=0)
    tf.profiler.experimental.start(logdir, options=options)
    try:
        step()
    finally:
        tf.profiler.experimental.stop()
    paths = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    with open(max(paths, key=lambda p: (len(p), p)), "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        hlo_stat = {k for k, v in plane.stat_metadata.items() if v.name == "hlo_op"}
        for line in plane.lines:
            kept = []
            for event in line.events:
                metadata = plane.event_metadata[event.metadata_id]
                name = metadata.name
                if any(stat.metadata_id in hlo_stat
                       for stat in list(event.stats) + list(metadata.stats)):
                    kind = "xla"
                elif _TF_OP.match(name):
                    kind = "tf"
                else:
                    continue
                kept.append([event.offset_ps, event.duration_ps, kind, name.strip()])
            # Exclusive times: subtract each event's duration from the event enclosing it.
            kept.sort(key=lambda e: (e[0], -e[1]))
            exclusive = [e[1] for e in kept]
            stack = []
            for i, (start, duration, _, _) in enumerate(kept):
                while stack and kept[stack[-1]][0] + kept[stack[-1]][1] <= start:
                    stack.pop()
                if stack:
                    exclusive[stack[-1]] -= duration
                stack.append(i)
            events.extend((kind, name, max(t, 0) / 1e12)
                          for (_, _, kind, name), t in zip(kept, exclusive))
    return events


def op_time_breakdown(model, images, batch_size, steps=10, warmup=3, group="type"):
    """Seconds per training step spent in each kind of op, from a profile.

    Runs `warmup` unprofiled and then `steps` profiled `model.fit` steps on
    in-memory batches of `images`, and sums the op events of the host trace
    (see `profile_events`).

    Args:
      group: `"type"`: TensorFlow op type ("MatMul", "Mul", ...) or, for XLA
        code, the HLO instruction without its number ("MatMul",
        "add_multiply_fusion", ...; prefixed "xla:"). `"phase"`: "forward and
        metrics", "backward", "finiteness check", "optimizer update" (from the
        node's name scope) and "XLA" for compiled code.

    Returns:
      `{key: seconds per step}`, largest first. Times are kernel times summed
      over threads: on several cores they can add up to more than the step's
      wall time, and under a shared machine's load they include time the
      thread waited for a core.
    """
    data = in_memory_batches(images, batch_size)
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    events = profile_events(lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0))
    optimizer_name = getattr(model.optimizer, "name", "adam")
    totals = collections.Counter()
    for kind, name, seconds in events:
        if kind == "xla":
            key = "XLA" if group == "phase" else "xla:" + _XLA_SUFFIX.sub("", name)
        else:
            node, op_type = name.rsplit(":", 1)
            key = _phase(node, optimizer_name) if group == "phase" else op_type
        totals[key] += seconds / steps
    return dict(totals.most_common())


def op_count_per_step(model, images, batch_size, steps=5, warmup=3):
    """TensorFlow kernels and XLA thunks executed per training step: `(tf, xla)`."""
    data = in_memory_batches(images, batch_size)
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    events = profile_events(lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0))
    counts = collections.Counter(kind for kind, _, _ in events)
    return counts["tf"] / steps, counts["xla"] / steps


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


def compiled(model_factory, jit_compile, steps_per_execution=1, xla_optimizer_update=True):
    """A freshly built and compiled model (`jit_compile` True/False)."""
    model = model_factory()
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution,
                  xla_optimizer_update=xla_optimizer_update)
    return model


def binary_images(count, image_shape, seed=0):
    return (np.random.RandomState(seed).rand(count, *image_shape) > 0.5).astype(np.float32)
