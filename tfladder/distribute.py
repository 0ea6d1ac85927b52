"""Distribution strategies by name: `default`, `mirrored`, `multi_worker`, `tpu`.

The caller opens `strategy.scope()` (STYLE.md: a model never picks its own
strategy); `tfladder.training.train` does so for the strategy it is given.
What makes multi-device training match one device here:

* losses are `sum(per-example) / global batch` (`HierarchicalModel.train_step`);
* each replica takes its own rows of the global batch's noise (`batch_noise`);
* batch-norm statistics are synchronized across replicas;
* batches are single tensors (Keras 3 multi-worker `fit` rejects tuples);
* under `multi_worker` every worker reads the whole input pipeline and keeps
  its rows of each global batch (`distribute_batches`), and only the chief
  writes files (`is_chief`).

On CPU-only hosts `mirrored` reduces through one device: the default
collective all-reduce of this TF version mis-orders packed gradient chunks
across logical CPU devices ("Shape mismatch in the collective instance").
"""
import tensorflow as tf


def _mirrored(devices=None):
    devices = devices or [d.name for d in tf.config.list_logical_devices("GPU")] or [
        d.name for d in tf.config.list_logical_devices("CPU")]
    cpu_only = all("CPU" in d.upper() for d in devices)
    cross_device_ops = tf.distribute.ReductionToOneDevice() if cpu_only else None
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)


def _multi_worker(devices=None):
    if devices:
        raise ValueError("multi_worker takes its devices from TF_CONFIG; do not pass devices.")
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu(devices=None):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _default(devices=None):
    if devices:
        raise ValueError("the default strategy runs on one device; use 'mirrored' for devices.")
    return tf.distribute.get_strategy()


def _cluster(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return (resolver, cluster) if cluster and resolver.task_type is not None else (None, {})


def is_multi_worker(strategy=None):
    """Whether `strategy` spans several processes (a cluster in TF_CONFIG)."""
    return bool(_cluster(strategy or tf.distribute.get_strategy())[1])


def is_chief(strategy=None):
    """Whether this process is the one that writes files.

    True for a single process (no cluster), for the `chief` task of a
    cluster, and for worker 0 of a cluster without a chief (the convention of
    `MultiWorkerMirroredStrategy`); False for the other workers.
    """
    resolver, cluster = _cluster(strategy or tf.distribute.get_strategy())
    if not cluster:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def distribute_batches(strategy, dataset):
    """`dataset` of global batches, split so that every replica gets its rows.

    Under a multi-worker strategy every worker runs the whole input pipeline
    (its batches depend only on the seed and the epoch, so they are the same
    everywhere) and each of its replicas keeps rows `[r B / R, (r + 1) B / R)`
    of every global batch of B rows (replica r of R): the training is that of
    one device on the same global batches. TensorFlow's automatic sharding
    would instead hand out whole batches to the workers, because the batch
    size of these pipelines is not static. Other strategies get `dataset`
    unchanged (Keras splits each batch over the local replicas itself).
    """
    if not is_multi_worker(strategy):
        return dataset
    replicas = strategy.num_replicas_in_sync

    def per_worker(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def slices(batch):
            size = tf.shape(batch)[0]

            def rows(j):
                r = first + tf.cast(j, tf.int32)
                return batch[size * r // replicas:size * (r + 1) // replicas]

            return tf.data.Dataset.range(local).map(rows)

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
        return dataset.flat_map(slices).with_options(options)

    return strategy.distribute_datasets_from_function(per_worker)


STRATEGIES = {
    "default": _default,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
    "tpu": _tpu,
}


def split_cpu(count):
    """Splits the host CPU into `count` logical devices (before any TF op runs).

    For exercising `mirrored` on a CPU-only machine: each logical CPU acts as
    one replica.
    """
    if count < 1:
        raise ValueError(f"count of logical CPU devices must be >= 1, got {count}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise ValueError("logical CPU devices must be configured before TensorFlow runs any "
                         f"operation: {error}") from error


def get_strategy(name="default", devices=None):
    """A `tf.distribute.Strategy` by name.

    Args:
      name: One of `STRATEGIES`: "default" (one device), "mirrored" (all local
        GPUs, else all logical CPUs, or `devices`), "multi_worker" (the cluster
        in the `TF_CONFIG` environment variable) or "tpu".
      devices: Optional device names for "mirrored", e.g. ["/gpu:0", "/gpu:1"].

    Raises:
      ValueError: for an unknown name (listing the choices).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {name!r}.")
    return STRATEGIES[name](devices)
