"""`train`: one function that trains a zoo variant and writes its folder.

The shape of the Flax examples' `train_and_evaluate(config, workdir)`: the
`tfladder train` command and the benchmarks are thin wrappers around it.

```none
workdir/
  backup/        the last complete epoch (EpochCheckpoint, atomic): a killed run resumes
    latest.weights.h5        weights + optimizer state (+ the epoch count)
    training_metadata.json   {"epoch": epochs done, "batch": 0}, as BackupAndRestore wrote it
  logs/          TensorBoard: scalars, KL per layer, sample and traversal grids per epoch
  history.csv    one row per epoch (the learning curve), kept across resumes
  run.json       the run manifest: variant, model, recipe, data (and its sha256),
                 limit, library versions; a resume or a finished run is only
                 accepted for the same manifest
  .lock          held (an OS file lock) while a process trains in this workdir
  model/         the trained variant, zoo-style (tfladder.zoo.load(workdir/"model"))
```

#### Faults and reproducibility

A run killed at any instant (even while it writes a checkpoint) resumes from
its last complete epoch when the same call is made again, and loses at most
the epoch it was in. The resumed run is the uninterrupted run: the checkpoint
restores the weights and the optimizer state (whose step counter keys the
model's own noise), and the training data come from
`tfladder.data.load(..., epochs=..., first_epoch=...)`, whose epoch e depends
only on (seed, e). With `deterministic=True`, the same call gives bit-identical
weights and metrics in every process on the same machine and software.

#### Two-phase recipes

A recipe with `likelihood_epochs` (the colour VLAEs) trains `epochs` epochs
with the likelihood head frozen at zero, then `likelihood_epochs` more with
the generator frozen (`VariationalLadderAutoencoder.set_training_phase`) and
a fresh optimizer whose step count continues the first phase's. The epochs
are numbered through both phases (history, checkpoints, `metrics.json`); a
checkpoint taken in either phase, or exactly between them, resumes.
"""
import dataclasses
import json
import math
import os
import pathlib
import platform
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfladder import data as data_lib
from tfladder import distribute, zoo
from tfladder.callbacks import EpochCheckpoint, ImageSummaries, StopOnRepeatedSkips, WallTime
from tfladder.checks import check_positive_int
from tfladder.fileio import write_text_atomically
from tfladder.precision import check_precision, dtype_policy
from tfladder.models import FAMILIES
from tfladder.zoo import artifacts

MAX_STEPS_PER_EXECUTION = 32
MODEL_DIR = "model"
BACKUP_DIR = "backup"
DONE = "TRAINING_COMPLETE"
MANIFEST = "run.json"
LOCK = ".lock"


class WorkdirBusy(RuntimeError):
    """Another process is training in this workdir."""


class RecipeMismatch(ValueError):
    """The workdir holds a run of another variant, recipe or data."""


class TrainResult(NamedTuple):
    model: object
    history: dict
    folder: pathlib.Path


def train(variant, workdir, *, data=None, epochs=None, batch_size=None, seed=None,
          limit=None, strategy=None, verbose=1, command=None, deterministic=False,
          callbacks=(), steps_per_execution=None, jit_compile=False, data_dir=None,
          precision="float32"):
    """Trains zoo `variant` (a name or a `zoo.Variant`) and writes `workdir/model`.

    Re-running the same call resumes from the last completed epoch
    (`tfladder.callbacks.EpochCheckpoint` in `workdir/backup`, which also
    resumes a backup written by `keras.callbacks.BackupAndRestore`): weights,
    optimizer state and epoch are restored and the data stream continues with
    the next epoch exactly as an uninterrupted run would. Once the run is
    complete it returns the finished model without training again.

    Seeds: `keras.utils.set_random_seed(seed)` (Python, NumPy and TensorFlow's
    global seed) is always called before the model is built. With
    `deterministic=True`, `tf.config.experimental.enable_op_determinism()` is
    called too (process-wide and irreversible: TensorFlow then picks
    deterministic kernels, refuses unseeded random ops and turns off automatic
    XLA); `metrics.json` records `"deterministic"`.

    Args:
      variant: Zoo name or `zoo.Variant`.
      workdir: Folder for checkpoints, logs and the trained variant.
      data: Override of the variant's data source (a `tfladder.data` name or
        `.npz` path, e.g. a local copy of the variant's dataset).
      data_dir: A folder holding local copies `<dataset>.npz` (else
        `$TFLADDER_DATA_DIR`, else TFDS); see `tfladder.data`. The card
        records the dataset's name and the local file's name and sha256,
        never its path.
      epochs, batch_size, seed: Overrides of the variant's recipe.
      limit: Use only the first `limit` training images.
      strategy: A `tf.distribute.Strategy` (default: the current one). Under
        a multi-worker strategy every worker makes the same call with the
        same `workdir`, on a filesystem they share; only the chief
        (`distribute.is_chief`) writes to it, the others read its checkpoint
        to resume and return their model and this call's history.
      verbose: Keras progress-bar verbosity.
      command: The command line that launched the run, recorded in the card.
      deterministic: Enable TensorFlow op determinism (see above), for
        bit-identical reruns; may be slower.
      callbacks: Extra Keras callbacks (e.g. per-epoch measurements); they run
        before the epoch checkpoint is written.
      steps_per_execution: Train steps per call of Keras' compiled loop (its
        batch callbacks then run once per call). Must divide the steps per
        epoch; default: `default_steps_per_execution(steps per epoch)`, and
        1 under a multi-worker strategy (Keras' multi-step loop fails there).
      precision: A Keras dtype policy: "float32", "mixed_bfloat16" (CPUs with
        AVX-512 BF16 / AMX, TPUs) or "mixed_float16" (GPUs; loss scaling).
        The stochastic layers, the KL terms, the likelihood and the ELBO stay
        float32. Variables are float32 under every policy, so the trained
        folder loads under any policy; `metrics.json` records the one trained
        with. A resume must use the same precision.
      jit_compile: Compile the whole training step with XLA (Keras' "auto"
        leaves it off on CPU-only machines). Without it the optimizer update
        alone is XLA-compiled (`HierarchicalModel.train_step`).

    Returns:
      `TrainResult(model, history, folder)`.

    Raises:
      tfladder.callbacks.CheckpointError: if `workdir/backup` holds a
        checkpoint that cannot be loaded (it is never silently discarded).
      ValueError: for a bad recipe, mismatched data, or a checkpoint that is
        already past `epochs`.
    """
    variant = zoo.get(variant) if isinstance(variant, str) else variant
    recipe = dataclasses.replace(
        variant.recipe,
        **{k: v for k, v in dict(epochs=epochs, batch_size=batch_size, seed=seed).items()
           if v is not None})
    _check_recipe(recipe)
    spec = dataclasses.replace(variant.data, source=data) if data else variant.data
    # Read from `source` (a place); record the dataset's name and the file's hash.
    data_lib.check_available(spec.source, data_dir)
    path = data_lib.local_file(spec.source, data_dir)
    source = path or spec.source
    dataset = variant.data.source if (data and path and os.path.isfile(data)) else spec.source
    spec = dataclasses.replace(spec, source=source)
    recorded = dataclasses.replace(
        spec, source=dataset, file=os.path.basename(path) if path else None,
        sha256=artifacts.sha256(path) if path else None)
    if limit is not None:
        limit = check_positive_int("limit", limit)
    workdir = pathlib.Path(workdir)
    folder = workdir / MODEL_DIR
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)   # Only the chief writes the workdir.

    # Everything about the data is checked before anything is written.
    for split in (spec.train_split, spec.test_split):
        shape = data_lib.split_image_shape(spec.source, split)
        if tuple(shape) != tuple(variant.model["image_shape"]):
            raise ValueError(f"data {spec.source} split {split!r} has images of shape "
                             f"{tuple(shape)}, but variant {variant.name!r} expects "
                             f"{tuple(variant.model['image_shape'])}.")
    num_train = data_lib.num_examples(spec.source, spec.train_split)
    if limit:
        num_train = min(num_train, int(limit))
    steps_per_epoch = math.ceil(num_train / recipe.batch_size)
    multi_worker = distribute.is_multi_worker(strategy)
    steps_per_execution = _steps_per_execution(steps_per_execution, steps_per_epoch,
                                               multi_worker)
    check_precision(precision)
    manifest = {**run_manifest(variant, recorded, recipe, limit), "precision": precision}
    with _workdir_lock(workdir, chief), dtype_policy(precision):
        return _train_locked(variant, workdir, folder, spec, recorded, recipe, manifest, data,
                             limit, steps_per_epoch, multi_worker, strategy, chief, verbose,
                             command, deterministic, callbacks, steps_per_execution,
                             jit_compile)


def _steps_per_execution(requested, steps_per_epoch, multi_worker):
    """The steps per compiled call: `requested`, checked, or the default."""
    if requested is None:
        return 1 if multi_worker else default_steps_per_execution(steps_per_epoch)
    if not (isinstance(requested, int) and requested >= 1
            and steps_per_epoch % requested == 0):
        raise ValueError(f"steps_per_execution must be a positive divisor of the "
                         f"{steps_per_epoch} steps per epoch, got {requested!r}.")
    if multi_worker and requested > 1:
        # Keras' multi-step loop puts strategy.run inside tf.cond, which fails
        # across workers ("You must feed a value for placeholder tensor";
        # keras-team/keras#19246).
        raise ValueError(f"steps_per_execution must be 1 under a multi-worker strategy, got "
                         f"{requested}.")
    return requested


def _train_locked(variant, workdir, folder, spec, recorded, recipe, manifest, data, limit,
                  steps_per_epoch, multi_worker, strategy, chief, verbose, command,
                  deterministic, callbacks, steps_per_execution, jit_compile):
    """`train` once the workdir is locked and the data checked."""
    _check_manifest(workdir, manifest, finished=(workdir / DONE).exists())
    if (workdir / DONE).exists():
        logging.info("%s is complete; loading it instead of training again.", folder)
        return TrainResult(zoo.load(folder), _read_history(workdir), folder)
    logging.info("Training %s with %s on %d replica(s).", variant.name,
                 type(strategy).__name__, strategy.num_replicas_in_sync)
    validation_steps = math.ceil(data_lib.num_examples(spec.source, spec.test_split)
                                 / recipe.batch_size)
    if chief:
        workdir.mkdir(parents=True, exist_ok=True)
        if not (workdir / MANIFEST).exists():
            write_text_atomically(workdir / MANIFEST, json.dumps(manifest, indent=2))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(recipe.seed)

    total_epochs = recipe.epochs + recipe.likelihood_epochs
    checkpoint = EpochCheckpoint(workdir / BACKUP_DIR, write=chief)
    # A checkpoint past the first phase holds the second phase's optimizer.
    phase = ("likelihood" if recipe.likelihood_epochs
             and checkpoint.epochs_done() > recipe.epochs else "hierarchy")
    with strategy.scope():
        model = FAMILIES[variant.family](
            **variant.model, seed=recipe.seed,
            kl_warmup_steps=int(round(recipe.warmup_epochs * steps_per_epoch)))
        if recipe.likelihood_epochs:
            _check_two_phases(model)
            model.set_training_phase(phase)
        # compile() also builds the model and the optimizer, so a checkpoint can load.
        model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                      steps_per_execution=steps_per_execution, jit_compile=bool(jit_compile))

    initial_epoch = checkpoint.restore(model)
    if initial_epoch > total_epochs:
        raise ValueError(f"{checkpoint.directory} holds {initial_epoch} epochs, more than "
                         f"epochs={total_epochs}: pass epochs >= {initial_epoch}.")
    if initial_epoch:
        logging.info("Resuming %s after epoch %d of %d (optimizer step %d).", variant.name,
                     initial_epoch, total_epochs, int(model.optimizer.iterations))
    if chief:
        _forget_epochs_from(workdir, initial_epoch)

    # Epoch e of the training stream depends only on (seed, e): a resumed run
    # sees the batches an uninterrupted one sees. Validation replays one fixed
    # draw of the test split at every epoch (dynamic binarization included).
    def train_stream(first_epoch, epochs):
        return distribute.distribute_batches(strategy, data_lib.load(
            spec.source, spec.train_split, recipe.batch_size, binarize=spec.binarize,
            seed=recipe.seed, limit=limit, epochs=epochs, first_epoch=first_epoch))

    first_phase_data = (train_stream(initial_epoch, recipe.epochs)
                        if initial_epoch < recipe.epochs else None)
    test_data = distribute.distribute_batches(strategy, data_lib.load(
        spec.source, spec.test_split, recipe.batch_size, binarize=spec.binarize,
        seed=recipe.seed + 1, epochs=1))
    wall_time = WallTime(workdir / "wall_time.json")
    writers = [
        wall_time,
        keras.callbacks.CSVLogger(str(workdir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(workdir / "logs")),
        ImageSummaries(workdir / "logs", seed=recipe.seed),
    ]
    callbacks = [
        *(writers if chief else []),
        StopOnRepeatedSkips(),
        keras.callbacks.TerminateOnNaN(),
        *callbacks,
        checkpoint,   # Last: an epoch is checkpointed only once it is logged.
    ]
    fit_history = {}

    def fit(train_data, first_epoch, epochs):
        return model.fit(
            train_data, validation_data=test_data, epochs=epochs,
            initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
            # A distributed test set has no known length: given steps, Keras
            # would keep its exhausted iterator across epochs; without, it restarts.
            validation_steps=None if multi_worker else validation_steps,
            callbacks=callbacks, verbose=verbose,
            shuffle=False).history   # the stream is already shuffled per (seed, epoch)

    if first_phase_data is not None:
        fit_history = fit(first_phase_data, initial_epoch, recipe.epochs)
    if recipe.likelihood_epochs and phase == "hierarchy" and not model.stop_training:
        _start_likelihood_phase(model, recipe, strategy, steps_per_execution, jit_compile)
    if recipe.likelihood_epochs and initial_epoch < total_epochs and not model.stop_training:
        first_epoch = max(initial_epoch, recipe.epochs)
        second = fit(train_stream(first_epoch, total_epochs), first_epoch, total_epochs)
        fit_history = {k: fit_history.get(k, []) + v for k, v in second.items()}
    if not chief:
        return TrainResult(model, fit_history, folder)
    history = _read_history(workdir)
    metrics = {
        "variant": variant.name,
        "epochs": total_epochs,
        "deterministic": bool(deterministic),
        "jit_compile": bool(jit_compile),
        "precision": keras.config.dtype_policy().name,
        "train_seconds_total": wall_time.total(),
        "machine": machine(),
        "train_command": portable_command(command) if command else _equivalent_command(
            variant.name, data, recipe, limit, deterministic, jit_compile),
        "final_train_elbo": history["elbo"][-1] if history else None,
        "final_test_elbo": history["val_elbo"][-1] if history else None,
        "history": history,
    }
    save_variant(model, folder, variant, recorded, recipe, metrics)
    write_text_atomically(workdir / DONE, json.dumps({"seconds": wall_time.total()}))
    checkpoint.delete()   # Only once DONE exists: a run killed before still resumes.
    return TrainResult(model, history, folder)


def default_steps_per_execution(steps_per_epoch, limit=MAX_STEPS_PER_EXECUTION):
    """The largest divisor of `steps_per_epoch` that is at most `limit`.

    Several steps per call of the compiled training loop remove Keras'
    per-step Python work (about 4% of an lvae_mnist step here). Keras' last
    call of an epoch takes a full `steps_per_execution` batches from the
    iterator, even past the end of the epoch; with a divisor every epoch is
    exactly `steps_per_epoch` batches of its (seed, epoch) stream, which
    resuming relies on. 235 steps (MNIST, batch 256) give 5.
    """
    steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
    return max(d for d in range(1, min(limit, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def save_variant(model, folder, variant, spec, recipe, metrics):
    """Writes a zoo-style folder: config, weights, SavedModel, figures, card, checksums.

    The folder is written aside and renamed into place (`artifacts.write_folder`).
    The weights and the export come from an uncompiled copy of `model`, so the
    artifacts hold the model's variables only (no optimizer state).
    """
    return artifacts.write_variant(folder, inference_copy(model), metrics, variant=variant,
                                   data=spec, recipe=recipe, seed=recipe.seed)


def run_manifest(variant, spec, recipe, limit):
    """What identifies a run: the workdir accepts a resume only for the same manifest.

    `epochs` is recorded but may grow on resume (a longer run continues the
    same stream); everything else must match.
    """
    if spec.sha256 is None and os.path.isfile(str(spec.source)):   # a bare path
        spec = dataclasses.replace(spec, file=os.path.basename(spec.source),
                                   sha256=artifacts.sha256(spec.source))
    return {
        "variant": variant.name,
        "family": variant.family,
        "model": json.loads(json.dumps(variant.model, default=list)),
        "data": dataclasses.asdict(spec),
        "recipe": dataclasses.asdict(recipe),
        "limit": limit,
        "versions": artifacts.versions(),
    }


def _check_manifest(workdir, manifest, finished):
    """Refuses a workdir whose `run.json` differs from this call's, in one line."""
    path = pathlib.Path(workdir) / MANIFEST
    if not path.exists():
        if finished or (pathlib.Path(workdir) / BACKUP_DIR).exists():
            logging.warning("%s has no %s (written by an older tfladder): the recipe of the "
                            "resumed run cannot be checked.", workdir, MANIFEST)
        return
    recorded = json.loads(path.read_text())
    recorded.setdefault("precision", "float32")   # manifests older than the precision option
    differences = []
    for key, value in _flatten(manifest).items():
        old = _flatten(recorded).get(key)
        if old == value or (key == "recipe.epochs" and not finished):
            continue
        differences.append(f"{key} {old!r} -> {value!r}")
    if differences:
        state = "finished" if finished else "interrupted"
        raise RecipeMismatch(f"{workdir} holds an {state} run of another recipe ("
                           + "; ".join(differences) + "). Use a new --workdir, or rerun "
                           "with the recorded values to " + ("load" if finished else "resume")
                           + " it.")


def _flatten(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


class _workdir_lock:
    """An exclusive OS lock on `workdir/.lock` (`fcntl.flock`), held while training.

    The kernel releases it when the process dies, so a killed run never
    leaves a stale lock. Only the chief of a multi-worker run locks.
    """

    def __init__(self, workdir, enabled=True):
        self.path = pathlib.Path(workdir) / LOCK
        self.enabled = enabled
        self.handle = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:    # Not POSIX: no lock.
            return self
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "another process"
            self.handle.close()
            raise WorkdirBusy(f"{self.path.parent} is in use by another tfladder train "
                               f"({owner}); wait for it to finish or use another --workdir.")
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {platform.node()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()   # closing releases the lock
        return False


def machine():
    """A short description of the machine a run trained on (for the card)."""
    gpus = len(tf.config.list_physical_devices("GPU"))
    return f"{platform.machine()}, {os.cpu_count()} CPU cores" + (f", {gpus} GPU(s)"
                                                                   if gpus else "")


def inference_copy(model):
    """An uncompiled model with `model`'s configuration and weights."""
    copy = type(model).from_config(model.get_config())
    copy.build()
    copy.set_weights(model.get_weights())
    return copy


def portable_command(command):
    """`command` with every absolute or `..` path cut to its last part: a card
    says `--data mnist.npz`, not where the file was on the training machine
    (paths relative to the working folder, e.g. `zoo/vae_mnist`, are kept)."""
    def portable(token):
        outside = os.path.isabs(token) or ".." in pathlib.PurePath(token).parts
        return os.path.basename(token.rstrip("/")) if outside and os.path.exists(token) \
            else token
    return " ".join(portable(token) for token in command.split(" "))


def _equivalent_command(name, data, recipe, limit, deterministic=False, jit_compile=False):
    """The `tfladder train` command line that reproduces a library call."""
    parts = ["tfladder", "train", name, f"--epochs {recipe.epochs}",
             f"--batch-size {recipe.batch_size}", f"--seed {recipe.seed}"]
    if data:
        parts.append(f"--data {os.path.basename(str(data))}")
    if limit:
        parts.append(f"--limit {limit}")
    if deterministic:
        parts.append("--deterministic")
    if jit_compile:
        parts.append("--jit-compile")
    return " ".join(parts)


def _start_likelihood_phase(model, recipe, strategy, steps_per_execution, jit_compile):
    """Second phase of a two-phase recipe: the generator frozen, a fresh optimizer
    for the likelihood head, scales and inference rungs. Its step count continues
    the first phase's, so the schedules keyed by it (warm-up, progressive fade-in)
    stay complete and the model's noise stays distinct per step."""
    step = int(model.optimizer.iterations)
    with strategy.scope():
        model.set_training_phase("likelihood")
        model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                      steps_per_execution=steps_per_execution, jit_compile=bool(jit_compile))
        model.optimizer.iterations.assign(step)


def _check_two_phases(model):
    """A recipe with `likelihood_epochs` needs a model with a likelihood head."""
    if model.likelihood_head is None:
        raise ValueError(
            f"likelihood_epochs needs a model with a likelihood head (a "
            f"VariationalLadderAutoencoder with generator='spatial' and an observation with "
            f"pixel_scales or channel_coupling); got {type(model).__name__} with observation "
            f"{model.observation_spec!r}.")


def _forget_epochs_from(workdir, first_epoch):
    """Drops the `history.csv` rows of epochs >= `first_epoch`, which a resumed
    run trains (again), so that every epoch is logged once."""
    path = pathlib.Path(workdir) / "history.csv"
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    if not lines:
        return
    header = lines[0]
    kept = [header] + [line for line in lines[1:] if line and line != header
                       and int(float(line.split(",")[0])) < first_epoch]
    if len(kept) != len(lines):
        write_text_atomically(path, "\n".join(kept) + "\n")


def _read_history(workdir):
    """The per-epoch history from `history.csv` (survives resumes)."""
    path = pathlib.Path(workdir) / "history.csv"
    if not path.exists():
        return {}
    rows = [line.split(",") for line in path.read_text().strip().splitlines()]
    header, values = rows[0], [r for r in rows[1:] if r and r[0] != rows[0][0]]
    # A resumed run appends a second header and may repeat an epoch: keep the last.
    by_epoch = {int(r[0]): r for r in values}
    return {name: [float(by_epoch[e][i]) for e in sorted(by_epoch)]
            for i, name in enumerate(header) if name != "epoch"}


def _check_recipe(recipe):
    for name in ("epochs", "batch_size"):
        value = getattr(recipe, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    value = recipe.likelihood_epochs
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"likelihood_epochs must be a non-negative integer, got {value!r}.")
    seed = recipe.seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}.")
