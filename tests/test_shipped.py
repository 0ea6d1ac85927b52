"""Every variant shipped in zoo/: checksum-verified loading, a complete card,
and its SavedModel served by plain TensorFlow (fresh process, no tfladder)
matching the Keras model on every endpoint.

The inputs are synthetic (tests never read ../shared/): random binary images
for Bernoulli models, random 8-bit images for the logistic-mixture ones.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from tests.test_export import (SAMPLE_NUM, SAMPLE_SEED, endpoint_inputs,
                               serve_in_fresh_process)
from tfladder import zoo
from tfladder.export import ELBO_SEED

NUM_IMAGES = 3


def _shipped():
    names = []
    for name in zoo.available():
        try:
            zoo.artifact_dir(name)
        except FileNotFoundError:
            continue
        names.append(name)
    return names


SHIPPED = _shipped()


def test_the_zoo_ships_pretrained_variants_within_its_size_budget():
    assert SHIPPED, "no variant is shipped in zoo/"
    total = sum(f.stat().st_size for f in zoo.zoo_root().rglob("*") if f.is_file())
    assert total < 150e6, f"zoo/ is {total / 1e6:.1f} MB (budget 150 MB)"


def _synthetic_images(model, rng):
    shape = (NUM_IMAGES, *model.image_shape)
    if model.observation_spec == "bernoulli" or (
            isinstance(model.observation_spec, dict)
            and model.observation_spec.get("name") == "bernoulli"):
        return (rng.random(shape) < 0.2).astype(np.float32)
    return (rng.integers(0, 256, shape) / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Loads every shipped variant (checksums verified) and serves its SavedModel."""
    root = tmp_path_factory.mktemp("shipped")
    rng = np.random.default_rng(0)
    models, inputs, jobs = {}, {}, []
    for name in SHIPPED:
        model = zoo.load(name)
        arrays = endpoint_inputs(model, _synthetic_images(model, rng), rng, num_z=2, num_noise=2)
        np.savez(root / f"{name}_inputs.npz", **arrays)
        models[name], inputs[name] = model, arrays
        jobs.append([str(zoo.artifact_dir(name) / "saved_model"),
                     str(root / f"{name}_inputs.npz"), str(root / f"{name}_outputs.npz")])
    serve_in_fresh_process(jobs, root, timeout=900)
    return {name: (models[name], inputs[name], dict(np.load(job[2])))
            for name, job in zip(SHIPPED, jobs)}


@pytest.mark.parametrize("name", SHIPPED)
def test_card_has_measured_numbers_and_commands(name):
    folder = zoo.artifact_dir(name)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert np.isfinite(metrics["final_test_elbo"]) and metrics["final_test_elbo"] < 0
    assert metrics["train_command"].startswith("tfladder train")
    evaluation = metrics["evaluations"]["test"]
    assert evaluation["num_samples"] >= 1 and np.isfinite(evaluation["log_likelihood"])
    assert evaluation["command"].startswith("tfladder evaluate")
    assert len(evaluation["active_units"]) == len(evaluation["kl_per_layer"])
    card = (folder / "README.md").read_text()
    for text in ("samples.png", "traversal.png", "## Licence", evaluation["command"]):
        assert text in card, text
    for figure in ("samples.png", "traversal.png"):
        assert (folder / figure).is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_saved_model_matches_the_keras_model(name, served):
    model, inputs, outputs = served[name]
    layers = len(model.latent_dims)
    z = [tf.constant(inputs[f"z_{l + 1}"]) for l in range(layers)]
    noise = [tf.constant(inputs[f"noise_{l + 1}"]) for l in range(layers)]
    atol = 1e-4
    np.testing.assert_allclose(outputs["decode/mean"], model.decode(z).mean(), atol=atol)
    np.testing.assert_allclose(outputs["generate/mean"], model.generate(noise).mean(),
                               atol=atol)
    np.testing.assert_allclose(outputs["sample/images"],
                               model.sample(SAMPLE_NUM, seed=SAMPLE_SEED), atol=atol)
    for l, q in enumerate(model.encode(inputs["x"])):
        np.testing.assert_allclose(outputs[f"encode/loc_{l + 1}"], q.loc, atol=atol)
    terms = model.elbo_terms(inputs["x"], seed=ELBO_SEED)
    np.testing.assert_allclose(outputs["elbo/elbo"], terms.elbo, rtol=1e-4, atol=atol)
    assert np.all(np.isfinite(outputs["elbo/elbo"]))
