"""SavedModel export with tensor-only endpoints (servable without tfladder).

Endpoints (all return dicts of named float32 tensors):

| endpoint | inputs | outputs |
| --- | --- | --- |
| `encode` | `x [B, H, W, C]` in [0, 1] | `loc_<l>`, `scale_<l>` per layer (mean-conditioned, see `encode`) |
| `decode` | `z_<l> [B, d_l]` per layer | `mean [B, H, W, C]` of p(x given z) |
| `generate` | `noise_<l> [B, d_l]` per layer | `mean` of the image for that prior noise |
| `sample` | `num_samples` int32 scalar, `seed` int32 scalar | `images [n, H, W, C]` (likelihood means) |
| `elbo` | `x [B, H, W, C]` | `elbo`, `distortion`, `rate [B]`, `kl_per_layer [B, L]` |
| `serve` | `x [B, H, W, C]` | as `elbo`: Keras' default endpoint (`keras.layers.TFSMLayer(path)`) |

Inputs are checked inside the graph: an empty batch, NaN / Inf pixels or
noise, values outside the likelihood's support and `num_samples < 1` fail
with `InvalidArgumentError` whose message says what was expected (shapes
and dtypes are checked by the signatures).

`sample` and `elbo` use stateless random ops, so the same inputs give the
same outputs in every process (PITFALLS.md: a saved `SeedGenerator` would
replay one sequence everywhere; stateful ops differ in every process).

The SavedModel is also where a variant folder keeps its Keras weights, once:
`export_saved_model` adds the variable collection `keras_weights` (the
variables behind `model.weights`, in that order; the endpoints capture the
same variables, so nothing is stored twice) and `keras_weight_names` (each
weight's layer path without Keras' automatic `_<n>` suffixes, and its shape).
`restore_weights(model, directory)` checks both against a freshly built model
and restores the values with `tf.train.Checkpoint`; `tf.saved_model.load`
is not needed (it costs seconds per load).
"""
import os
import pathlib
import re
import shutil

import keras
import tensorflow as tf

from tfladder import fileio

ELBO_SEED = 0
WEIGHTS_COLLECTION = "keras_weights"
NAMES_COLLECTION = "keras_weight_names"
_NAMES_KEY = f"{NAMES_COLLECTION}/0/.ATTRIBUTES/VARIABLE_VALUE"
_AUTO_SUFFIX = re.compile(r"_[0-9]+$")


def endpoint_functions(model):
    """The endpoint functions and their input signatures, keyed by name."""
    image_spec = tf.TensorSpec([None, *model.image_shape], tf.float32, name="x")
    latent_specs = [tf.TensorSpec([None, d], tf.float32, name=f"z_{l + 1}")
                    for l, d in enumerate(model.latent_dims)]
    noise_specs = [tf.TensorSpec([None, d], tf.float32, name=f"noise_{l + 1}")
                   for l, d in enumerate(model.latent_dims)]

    def checked_images(x):
        support = f"x is outside the support of the likelihood: expected {model.observation.support}"
        checks = [
            tf.debugging.assert_positive(tf.shape(x)[0], message="x is an empty batch; "
                                         "expected at least one image"),
            tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(x)),
                                ["x contains NaN or Inf values; expected finite pixels"]),
            tf.debugging.Assert(model.observation.in_support(x), [support]),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(x)

    def checked_latents(values, name):
        checks = [tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(v)),
                                      [f"{name}_{l + 1} contains NaN or Inf values"])
                  for l, v in enumerate(values)]
        with tf.control_dependencies(checks):
            return [tf.identity(v) for v in values]

    def encode(x):
        x = checked_images(x)
        posteriors = model.infer(x, tf.constant([0, 0], tf.int32), use_mean=True).layers
        outputs = {}
        for l, layer in enumerate(posteriors):
            outputs[f"loc_{l + 1}"] = layer.posterior.loc
            outputs[f"scale_{l + 1}"] = layer.posterior.scale
        return outputs

    def decode(*z):
        return {"mean": model.decode(checked_latents(z, "z")).mean()}

    def generate(*noise):
        return {"mean": model.generate(checked_latents(noise, "noise")).mean()}

    def sample(num_samples, seed):
        checks = [
            tf.debugging.assert_positive(num_samples,
                                         message="num_samples must be a positive integer"),
            tf.debugging.assert_less_equal(
                num_samples, tf.constant(model.max_samples, tf.int32),
                message=f"num_samples must be at most {model.max_samples} per call"),
        ]
        with tf.control_dependencies(checks):
            num_samples = tf.identity(num_samples)
        return {"images": model.sample_from_seed(num_samples, tf.stack([seed, 0]))}

    def elbo(x):
        x = checked_images(x)
        terms = model.elbo_terms(x, seed=tf.constant([ELBO_SEED, 0], tf.int32))
        return terms._asdict()

    def serve(x):   # Keras' default endpoint (keras.layers.TFSMLayer): what model(x) returns
        return elbo(x)

    return {
        "serve": (serve, [image_spec]),
        "encode": (encode, [image_spec]),
        "decode": (decode, latent_specs),
        "generate": (generate, noise_specs),
        "sample": (sample, [tf.TensorSpec([], tf.int32, name="num_samples"),
                            tf.TensorSpec([], tf.int32, name="seed")]),
        "elbo": (elbo, [image_spec]),
    }


def export_saved_model(model, directory):
    """Writes `model` as a SavedModel with the endpoints of the module docstring.

    The SavedModel is written beside `directory` and renamed into place, so
    a crash never leaves a partial export; `directory` must not exist or be
    an empty folder.

    Returns:
      The export directory, as a string.

    Raises:
      ValueError: `directory` is a file or a folder that is not empty.
    """
    directory = pathlib.Path(directory)
    if directory.is_symlink() or directory.is_file() or (
            directory.is_dir() and any(directory.iterdir())):
        raise ValueError(f"directory {directory} exists and is not an empty folder; expected "
                         "a new or empty folder for the SavedModel.")
    model.build()
    archive = keras.export.ExportArchive()
    # No `archive.track(model)`: the endpoints capture the variables they use,
    # and tracking the model as well stores every variable twice.
    for name, (function, signature) in endpoint_functions(model).items():
        archive.add_endpoint(name=name, fn=function, input_signature=signature)
    # The tf.Variables themselves (not their Keras wrappers, which would be
    # saved a second time): the checkpoint stores each variable object once.
    archive.add_variable_collection(WEIGHTS_COLLECTION,
                                    [_tf_variable(v) for v in model.weights])
    archive.add_variable_collection(NAMES_COLLECTION, [tf.Variable(
        weight_names(model), trainable=False, name=NAMES_COLLECTION)])
    staged = fileio.staging_path(directory, "export")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        archive.write_out(str(staged), verbose=False)
        if directory.is_dir():
            directory.rmdir()
        os.rename(staged, directory)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return str(directory)


def weight_names(model):
    """`model.weights` as `"<path>:<shape>"` strings, the path without the
    `_<n>` suffixes Keras appends to automatic layer names (which differ
    between two builds of the same model in one process)."""
    def name(weight):
        path = "/".join(_AUTO_SUFFIX.sub("", part) for part in weight.path.split("/"))
        return f"{path}:{'x'.join(str(d) for d in weight.shape)}"
    return [name(w) for w in model.weights]


def has_weights(directory):
    """True when the SavedModel at `directory` holds the Keras weights
    collection (exports written before it do not)."""
    return _names_reader(directory) is not None


def _names_reader(directory):
    """The checkpoint reader of the export, or None without the collection."""
    try:
        reader = tf.train.load_checkpoint(_checkpoint_prefix(directory))
    except (tf.errors.NotFoundError, ValueError):
        return None
    return reader if reader.has_tensor(_NAMES_KEY) else None


def restore_weights(model, directory):
    """Restores `model`'s weights from the SavedModel export at `directory`.

    `model` is built first; its weights must match the stored ones in number,
    order, layer path and shape.

    Raises:
      ValueError: the export holds no Keras weights, or they belong to a
        different model.
    """
    model.build()
    reader = _names_reader(directory)
    if reader is None:
        raise ValueError(f"{directory}: this SavedModel holds no {WEIGHTS_COLLECTION!r} "
                         "collection (written by an older tfladder?); expected an export "
                         "of tfladder.export.export_saved_model.")
    stored = [n.decode() for n in reader.get_tensor(_NAMES_KEY).tolist()]
    expected = weight_names(model)
    if stored != expected:
        first = next((i for i, (a, b) in enumerate(zip(stored, expected)) if a != b),
                     min(len(stored), len(expected)))
        raise ValueError(
            f"{directory}: the stored weights do not fit this model: {len(stored)} stored, "
            f"{len(expected)} expected; first difference at weight {first}: stored "
            f"{stored[first] if first < len(stored) else None!r}, expected "
            f"{expected[first] if first < len(expected) else None!r}.")
    checkpoint = tf.train.Checkpoint(**{WEIGHTS_COLLECTION: [_tf_variable(v)
                                                               for v in model.weights]})
    status = checkpoint.read(_checkpoint_prefix(directory)).expect_partial()
    status.assert_existing_objects_matched()
    return model


def _checkpoint_prefix(directory):
    return str(pathlib.Path(directory) / "variables" / "variables")


def _tf_variable(weight):
    """The `tf.Variable` that holds a Keras weight (the TensorFlow backend)."""
    value = weight.value
    if not isinstance(value, tf.Variable):
        raise TypeError(f"weight {weight.path} is not backed by a tf.Variable; SavedModel "
                        "export needs the TensorFlow backend.")
    return value
