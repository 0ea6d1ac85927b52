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
"""
import os
import pathlib
import shutil

import keras
import tensorflow as tf

from tfladder import fileio

ELBO_SEED = 0


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
